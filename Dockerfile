# One image for both programs: the registry members run `zot-registry serve /etc/zot/config.json`
# (the operator sets only the args, like zot's image), the operator runs `zot-operator run`.
#
#   make image    (docker build -t ghcr.io/zot-operator/zot-operator:<registry/version.py> .)

# The base of both stages; hack/build-image.sh builds without Docker from a Debian bookworm base.
ARG BASE_IMAGE=python:3.11-slim

# Build stage: the wheel of this repository and its dependencies, compiled where needed.
FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY registry registry
COPY operator operator
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Runtime stage: a virtualenv with the wheels, no compilers, no pip cache, not root.
FROM ${BASE_IMAGE}
RUN python -m venv /opt/zot \
 && useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin zot
COPY --from=build /wheels /wheels
RUN /opt/zot/bin/pip install --no-cache-dir --no-index --find-links /wheels zot-operator \
 && rm -rf /wheels
ENV PATH=/opt/zot/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 5000
ENTRYPOINT ["zot-registry"]
CMD ["serve", "/etc/zot/config.json"]
