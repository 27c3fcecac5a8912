#!/usr/bin/env bash
# Builds the project image from the Dockerfile without Docker (hack/README.md, "Project image
# without Docker"):
#   1. a base equivalent to python:3.11-slim: debootstrap of Debian bookworm (minbase) with
#      python3, python3-venv, python3-pip, python-is-python3, ca-certificates, passwd, the
#      security updates applied, docs/man pages/locales left out as in the slim images;
#      cached as .tools/images/base-<suite>-<variant>-<key>.rootfs.tar
#   2. `buildah bud --isolation chroot --storage-driver vfs` of the Dockerfile on that base
#      (storage in .tools/buildah), with the host's CA bundle over the build's for pip
#   3. the result as an OCI archive, .tools/images/zot-operator-<version>.tar, named
#      ghcr.io/zot-operator/zot-operator:<version> (`ctr -n k8s.io images import` takes it).
# Rebuilds only when its inputs change (stamps keyed by hashes of them); a warm run takes
# well under a second. Needs root (debootstrap, chroot). Run it through `bash hack/tools.sh image`,
# which holds the .tools lock.
set -euo pipefail

# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SUITE=bookworm
VARIANT=minbase
MIRROR="${IMAGE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${IMAGE_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
# What the Dockerfile's RUN lines need of python:3.11-slim: `python` (python-is-python3) with
# venv and ensurepip (python3-venv), `pip wheel` (python3-pip), `useradd` (passwd), TLS roots.
BASE_PACKAGES=(python3 python3-venv python3-pip python-is-python3 ca-certificates passwd)
# Raise when the base recipe below changes in a way the variables above do not show.
BASE_RECIPE=2

VERSION="$(sed -n 's/^VERSION = "\(.*\)"/\1/p' "${REPO_ROOT}/registry/version.py")"
[[ -n "${VERSION}" ]] || die "no VERSION in registry/version.py"
IMAGE_NAME="ghcr.io/zot-operator/zot-operator:${VERSION}"
IMAGES_DIR="${TOOLS_DIR}/images"
ARCHIVE="${IMAGES_DIR}/zot-operator-${VERSION}.tar"
BUILDAH_ROOT="${TOOLS_DIR}/buildah"
WORK="${TOOLS_TMP}/image"

sha() { sha256sum | cut -c1-16; }

BASE_KEY="$(printf '%s\n' "${SUITE}" "${VARIANT}" "${BASE_PACKAGES[*]}" "${BASE_RECIPE}" | sha)"
BASE_VERSION="${SUITE}-${VARIANT}-${BASE_KEY}"
BASE_TAR="${IMAGES_DIR}/base-${BASE_VERSION}.rootfs.tar"
BASE_REF="localhost/zot-operator-base:${BASE_VERSION}"

# Everything the build reads: the Dockerfile, the context it COPYs (less .dockerignore's
# __pycache__ and egg-info), this script, and the base.
inputs_key() {
	{
		cd "${REPO_ROOT}"
		find Dockerfile .dockerignore pyproject.toml README.md registry operator hack/build-image.sh \
			-type f ! -name '*.pyc' ! -path '*/__pycache__/*' ! -path '*.egg-info/*' -print0 |
			LC_ALL=C sort -z | xargs -0 sha256sum
		printf '%s\n' "${BASE_VERSION}"
	} | sha
}
IMAGE_VERSION="${VERSION}-$(inputs_key)"

if [[ -e "${TOOLS_STAMPS}/image-zot-operator-${IMAGE_VERSION}" && -f "${ARCHIVE}" ]]; then
	log image "${IMAGE_VERSION}" "present (${ARCHIVE#"${REPO_ROOT}"/})"
	exit 0
fi

[[ ${EUID} -eq 0 ]] || die "building the image needs root (debootstrap, chroot): run as root"
for tool in debootstrap buildah; do
	if ! command -v "${tool}" >/dev/null 2>&1; then
		[[ "${TOOLS_SKIP_APT:-0}" != 1 ]] || die "${tool} missing and TOOLS_SKIP_APT=1: apt-get install ${tool}"
		bash "${HACK_DIR}/install-apt.sh"
		break
	fi
done

mkdir -p "${IMAGES_DIR}"
# buildah copies blobs through TMPDIR (default /var/tmp): keep them with the rest.
BUILDAH=(env TMPDIR="${WORK}/tmp" buildah --root "${BUILDAH_ROOT}/root" --runroot "${BUILDAH_ROOT}/run"
	--storage-driver vfs)
# Commands in the new root get a clean environment, not this one (TMPDIR, PIP_*, ...).
IN_ROOT=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 chroot)
rm -rf -- "${WORK}"
mkdir -p "${WORK}/tmp"
trap 'rm -rf -- "${WORK}"' EXIT

# run_logged LOG CMD...: CMD's output to LOG, its last lines on failure.
run_logged() {
	local logfile="$1"
	shift
	if ! "$@" >"${logfile}" 2>&1; then
		tail -n 40 "${logfile}" >&2
		die "failed: $* (log above)"
	fi
}

build_base_rootfs() {
	local start="${SECONDS}" rootfs="${WORK}/rootfs" include
	include="$(
		IFS=,
		printf '%s' "${BASE_PACKAGES[*]}"
	)"
	log image-base "${BASE_VERSION}" "debootstrap ${SUITE} --variant=${VARIANT} --include=${include} ..."
	run_logged "${WORK}/debootstrap.log" \
		debootstrap --variant="${VARIANT}" --include="${include}" "${SUITE}" "${rootfs}" "${MIRROR}"
	# As debian:<suite>-slim (under python:3.11-slim): no docs but copyrights, no man pages, no locales.
	cat >"${rootfs}/etc/dpkg/dpkg.cfg.d/zot-slim" <<-'EOF'
		path-exclude /usr/share/doc/*
		path-include /usr/share/doc/*/copyright
		path-exclude /usr/share/man/*
		path-exclude /usr/share/groff/*
		path-exclude /usr/share/info/*
		path-exclude /usr/share/locale/*
		path-exclude /usr/share/lintian/*
		path-exclude /usr/share/linda/*
	EOF
	cat >"${rootfs}/etc/apt/sources.list" <<-EOF
		deb ${MIRROR} ${SUITE} main
		deb ${MIRROR} ${SUITE}-updates main
		deb ${SECURITY_MIRROR} ${SUITE}-security main
	EOF
	log image-base "${BASE_VERSION}" "security and point-release updates ..."
	run_logged "${WORK}/upgrade.log" "${IN_ROOT[@]}" "${rootfs}" sh -c \
		'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -y -qq upgrade && apt-get clean'
	find "${rootfs}/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
	find "${rootfs}/usr/share/doc" -mindepth 1 -type d -empty -delete
	rm -rf "${rootfs}"/usr/share/{man,groff,info,locale,lintian,linda}/* \
		"${rootfs}"/var/lib/apt/lists/* "${rootfs}"/var/cache/apt/*.bin \
		"${rootfs}"/var/cache/debconf/*-old "${rootfs}"/var/lib/dpkg/*-old \
		"${rootfs}"/var/log/apt/* "${rootfs}"/var/log/{alternatives,bootstrap,dpkg}.log "${rootfs}"/tmp/*
	# debootstrap copied the host's resolv.conf and hostname: empty, the runtime mounts its own
	# over them, as over /etc/hosts. All three exist, so that buildah's RUN mounts leave no empty
	# mount point in a layer.
	: >"${rootfs}/etc/resolv.conf"
	: >"${rootfs}/etc/hostname"
	printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"${rootfs}/etc/hosts"
	"${IN_ROOT[@]}" "${rootfs}" python -c 'import ensurepip, venv, sys; assert sys.version_info[:2] == (3, 11), sys.version'
	"${IN_ROOT[@]}" "${rootfs}" sh -c 'command -v useradd pip >/dev/null'
	tar -C "${rootfs}" --numeric-owner --xattrs -cf "${BASE_TAR}.tmp" .
	mv -f -- "${BASE_TAR}.tmp" "${BASE_TAR}"
	rm -rf -- "${rootfs}"
	for old in "${IMAGES_DIR}"/base-*.rootfs.tar; do
		[[ "${old}" == "${BASE_TAR}" ]] || rm -f -- "${old}"
	done
	stamp_write image-base "${BASE_VERSION}"
	log image-base "${BASE_VERSION}" "built in $(elapsed "${start}"), $(du -h "${BASE_TAR}" | cut -f1)"
}

# The rootfs as an image in buildah's storage, with python:3.11-slim's config (less its
# PYTHON_VERSION and GPG_KEY, which describe its own CPython build).
import_base() {
	local ctr ref
	for ref in $("${BUILDAH[@]}" images --noheading --format '{{.Name}}:{{.Tag}}' 2>/dev/null); do
		[[ "${ref}" == localhost/zot-operator-base:* && "${ref}" != "${BASE_REF}" ]] || continue
		"${BUILDAH[@]}" rmi "${ref}" >/dev/null
	done
	"${BUILDAH[@]}" inspect --type image "${BASE_REF}" >/dev/null 2>&1 && return 0
	ctr="$("${BUILDAH[@]}" from --quiet scratch)"
	"${BUILDAH[@]}" add --quiet "${ctr}" "${BASE_TAR}" /
	"${BUILDAH[@]}" config --os linux --arch amd64 \
		--env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
		--cmd '["python3"]' "${ctr}"
	run_logged "${WORK}/base-commit.log" "${BUILDAH[@]}" commit --rm "${ctr}" "${BASE_REF}"
}

if ! [[ -e "${TOOLS_STAMPS}/image-base-${BASE_VERSION}" && -f "${BASE_TAR}" ]]; then
	build_base_rootfs
fi

start="${SECONDS}"
log image "${IMAGE_VERSION}" "buildah bud ${IMAGE_NAME} ..."
import_base

# pip in the build stage downloads from the index: it runs Debian's pip, which reads the system
# bundle /etc/ssl/certs/ca-certificates.crt, so the host's bundle (PIP_CERT, else SSL_CERT_FILE,
# else the system one: extra CAs of a proxy included) is mounted over it for the RUN steps only.
# A mirror (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_TRUSTED_HOST) goes in through /etc/pip.conf,
# only when set: a mount point that did not exist stays in the layers as an empty file.
ca="${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
[[ -f "${ca}" ]] || die "no CA bundle at ${ca} (PIP_CERT / SSL_CERT_FILE)"
mounts=(--volume "${ca}:/etc/ssl/certs/ca-certificates.crt:ro")
if [[ -n "${PIP_INDEX_URL:-}${PIP_EXTRA_INDEX_URL:-}${PIP_TRUSTED_HOST:-}" ]]; then
	{
		printf '[global]\n'
		[[ -z "${PIP_INDEX_URL:-}" ]] || printf 'index-url = %s\n' "${PIP_INDEX_URL}"
		[[ -z "${PIP_EXTRA_INDEX_URL:-}" ]] || printf 'extra-index-url = %s\n' "${PIP_EXTRA_INDEX_URL}"
		[[ -z "${PIP_TRUSTED_HOST:-}" ]] || printf 'trusted-host = %s\n' "${PIP_TRUSTED_HOST}"
		[[ -z "${PIP_DEFAULT_TIMEOUT:-}" ]] || printf 'timeout = %s\n' "${PIP_DEFAULT_TIMEOUT}"
	} >"${WORK}/pip.conf"
	mounts+=(--volume "${WORK}/pip.conf:/etc/pip.conf:ro")
fi

run_logged "${WORK}/bud.log" "${BUILDAH[@]}" bud --isolation chroot --pull-never \
	--build-arg BASE_IMAGE="${BASE_REF}" "${mounts[@]}" \
	--file "${REPO_ROOT}/Dockerfile" --tag "${IMAGE_NAME}" "${REPO_ROOT}"
# Uncompressed layers: containerd imports them in a quarter of the time gzip takes.
rm -f -- "${ARCHIVE}.tmp"
run_logged "${WORK}/push.log" "${BUILDAH[@]}" push --disable-compression \
	"${IMAGE_NAME}" "oci-archive:${ARCHIVE}.tmp:${IMAGE_NAME}"
# The archive is the product: only the base stays in the storage.
"${BUILDAH[@]}" rmi "${IMAGE_NAME}" >/dev/null
"${BUILDAH[@]}" rmi --prune >/dev/null 2>&1 || true
tar -xOf "${ARCHIVE}.tmp" index.json | grep -qF "\"org.opencontainers.image.ref.name\":\"${IMAGE_NAME}\"" ||
	die "the archive is not named ${IMAGE_NAME}"
mv -f -- "${ARCHIVE}.tmp" "${ARCHIVE}"
for old in "${IMAGES_DIR}"/zot-operator-*.tar; do
	[[ "${old}" == "${ARCHIVE}" ]] || rm -f -- "${old}"
done
stamp_write image-zot-operator "${IMAGE_VERSION}"
log image "${IMAGE_VERSION}" "built in $(elapsed "${start}"): ${ARCHIVE#"${REPO_ROOT}"/} ($(du -h "${ARCHIVE}" | cut -f1))"
