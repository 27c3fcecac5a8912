"""The members' complete config: the ConfigMap's, plus the values that only Secrets may hold.

zot reads everything from its config file: a redis cache's password is in `storage.cacheDriver.url`,
and no environment variable stands in for it. The ConfigMap must never hold a Secret's value, so
each member pod has an init container that runs

    zot-operator materialize-config /etc/zot/template/config.json /etc/zot/runtime/config.json \\
        --from-env storage.cacheDriver.url=ZOT_REDIS_URL

with ZOT_REDIS_URL from the Secret (a secretKeyRef), and writes the complete config (mode 0600, the
members' user) into an in-memory emptyDir that the registry container reads. Our registry and an
upstream zot image then read the same file. The values never appear in the pod spec, the
ConfigMap, the command line or the output: only the names of the variables do.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zot_registry.config import REDIS_URL_ENV

from .models import SecretKeyRef, ZotClusterSpec


@dataclass(frozen=True)
class SecretValue:
    """One value of the config that comes from a Secret."""

    path: tuple[str, ...]  # where in the config, e.g. ("storage", "cacheDriver", "url")
    env: str  # the init container's environment variable that carries it
    secret: SecretKeyRef
    spec_field: str  # the ZotCluster field that names the Secret

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


def secret_values(spec: ZotClusterSpec) -> list[SecretValue]:
    """The config values a ZotCluster takes from Secrets (empty: the ConfigMap's config is complete)."""
    redis = spec.cache.redis if spec.storage.mode == "s3" and spec.cache else None
    if redis and redis.url_secret:
        return [
            SecretValue(
                ("storage", "cacheDriver", "url"), REDIS_URL_ENV, redis.url_secret, "spec.cache.redis.urlSecret"
            )
        ]
    return []


class MaterializeError(Exception):
    """What the init container says when it cannot write the config; never holds a value."""


def fill(config: dict[str, Any], values: Mapping[tuple[str, ...], str]) -> dict[str, Any]:
    """A copy of `config` with each value set at its path."""
    complete: dict[str, Any] = json.loads(json.dumps(config))
    for path, value in values.items():
        node = complete
        for depth, key in enumerate(path[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise MaterializeError(f"{'.'.join(path[: depth + 1])} is not an object in the config")
            node = child
        node[path[-1]] = value
    return complete


def write_private(path: Path, text: str) -> None:
    """Atomically (a temporary file in the same folder, then a rename), readable by the owner only."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask, and whatever an earlier file had
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def parse_assignment(text: str) -> tuple[tuple[str, ...], str]:
    """`storage.cacheDriver.url=ZOT_REDIS_URL` -> (("storage", "cacheDriver", "url"), "ZOT_REDIS_URL")."""
    dotted, sep, env = text.partition("=")
    path = tuple(dotted.split("."))
    if not sep or not env or not all(path):
        raise MaterializeError(
            f"--from-env {text!r}: expected CONFIG.PATH=VARIABLE, e.g. storage.cacheDriver.url={REDIS_URL_ENV}"
        )
    return path, env


def materialize(source: Path, target: Path, assignments: list[str], environ: Mapping[str, str]) -> list[str]:
    """Write `source` with the values of the variables named by `assignments` into `target`;
    returns what was filled in (paths and variable names, no values)."""
    wanted = [parse_assignment(a) for a in assignments]
    try:
        config = json.loads(source.read_text(encoding="utf-8"))
    except OSError as err:
        raise MaterializeError(f"cannot read {source}: {err.strerror or err}") from None
    except ValueError as err:
        raise MaterializeError(f"{source} is not JSON: {err}") from None
    if not isinstance(config, dict):
        raise MaterializeError(f"{source} is not a JSON object")
    values: dict[tuple[str, ...], str] = {}
    for path, env in wanted:
        value = environ.get(env, "")
        if not value:
            raise MaterializeError(
                f"the environment variable {env} (for {'.'.join(path)}) is unset or empty: "
                "check the Secret key the ZotCluster names"
            )
        values[path] = value
    try:
        write_private(target, json.dumps(fill(config, values), indent=2) + "\n")
    except OSError as err:
        raise MaterializeError(f"cannot write {target}: {err.strerror or err}") from None
    return [f"{'.'.join(path)} from {env}" for path, env in wanted]


def main(source: str, target: str, assignments: list[str]) -> int:
    try:
        filled = materialize(Path(source), Path(target), assignments, os.environ)
    except MaterializeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {target}" + (f" with {', '.join(filled)}" if filled else ""))
    return 0
