"""The zot config of one member, built from typed settings instead of a hand-written JSON dict.

`member_config` writes the sections zot reads (storage, http, log, cluster) in zot's own spelling,
and only the keys that are set: a setting left at None is absent from the document, as in a config
a user writes. Used by `write_cluster`, the tests and the benchmarks. (The operator renders its
configs from operator/templates/config.json.j2.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DIST_SPEC_VERSION = "1.1.1"


@dataclass(frozen=True)
class TlsFiles:
    """A member's serving certificate and key (`http.tls`)."""

    cert: Path
    key: Path

    def as_dict(self) -> dict[str, str]:
        return {"cert": str(self.cert), "key": str(self.key)}


@dataclass(frozen=True)
class S3Storage:
    """`storage.storageDriver` for an S3 bucket; `endpoint` is host:port, `root_directory` the key prefix."""

    endpoint: str
    bucket: str
    root_directory: str
    region: str = "us-east-1"
    secure: bool = False
    skip_verify: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        driver: dict[str, Any] = {
            "name": "s3",
            "rootdirectory": self.root_directory,
            "region": self.region,
            "regionendpoint": self.endpoint,
            "bucket": self.bucket,
            "secure": self.secure,
        }
        if self.skip_verify is not None:
            driver["skipverify"] = self.skip_verify
        return driver


@dataclass(frozen=True)
class RedisCache:
    """`storage.cacheDriver` for redis (the shared dedupe cache of S3 storage)."""

    url: str
    key_prefix: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": "redis", "url": self.url, "keyprefix": self.key_prefix}


@dataclass(frozen=True)
class ClusterSettings:
    """`cluster`: the member list (host:port, in list order), the hash key and the CA members trust."""

    members: list[str]
    hash_key: str
    ca: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        cluster: dict[str, Any] = {"members": list(self.members), "hashKey": self.hash_key}
        if self.ca is not None:
            cluster["tls"] = {"cacert": str(self.ca)}
        return cluster


def member_config(
    root: Path,
    port: int,
    address: str = "127.0.0.1",
    *,
    dedupe: bool | None = True,
    gc: bool | None = False,
    s3: S3Storage | None = None,
    cache: RedisCache | dict[str, Any] | None = None,
    storage: dict[str, Any] | None = None,
    tls: TlsFiles | None = None,
    htpasswd: Path | None = None,
    http: dict[str, Any] | None = None,
    log_level: str = "warn",
    log_output: Path | None = None,
    cluster: ClusterSettings | None = None,
) -> dict[str, Any]:
    """The config document of a member storing in `root` (or in `s3`) and listening on `address:port`.

    `cache` is the S3 mode's shared cache (remoteCache on); `storage` and `http` add keys to their
    sections as they are (after the ones built here); `htpasswd` turns on basic auth.
    """
    storage_section: dict[str, Any] = {"rootDirectory": str(root)}
    if dedupe is not None:
        storage_section["dedupe"] = dedupe
    if gc is not None:
        storage_section["gc"] = gc
    if cache is not None:
        storage_section["remoteCache"] = True
    if s3 is not None:
        storage_section["storageDriver"] = s3.as_dict()
    if cache is not None:
        storage_section["cacheDriver"] = cache.as_dict() if isinstance(cache, RedisCache) else dict(cache)
    storage_section.update(storage or {})
    http_section: dict[str, Any] = {"address": address, "port": str(port)}
    if tls is not None:
        http_section["tls"] = tls.as_dict()
    if htpasswd is not None:
        http_section["auth"] = {"htpasswd": {"path": str(htpasswd)}}
    http_section.update(http or {})
    log: dict[str, Any] = {"level": log_level}
    if log_output is not None:
        log["output"] = str(log_output)
    config: dict[str, Any] = {
        "distSpecVersion": DIST_SPEC_VERSION,
        "storage": storage_section,
        "http": http_section,
        "log": log,
    }
    if cluster is not None:
        config["cluster"] = cluster.as_dict()
    return config


def write_config(path: Path, config: dict[str, Any], indent: int | None = 2, newline: bool = True) -> Path:
    """`config` as JSON in `path` (`indent` as json.dumps takes it); returns `path`."""
    path.write_text(json.dumps(config, indent=indent) + ("\n" if newline else ""))
    return path
