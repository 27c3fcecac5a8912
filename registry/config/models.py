"""The pydantic models of a zot config (TLS, HTTP, auth, log, storage, cluster, ZotConfig; the sync
extension's are in sync.py): snake_case attributes, zot's camelCase keys as aliases, and the rules
zot checks, each with a message that says what to fix.

They see the config after key mapping (keymap.py): keys are already canonical, and unknown ones
already reported.
"""

from __future__ import annotations

import os
from typing import Any, Literal, get_args

from pydantic import AliasPath, Field, ValidationInfo, field_validator, model_validator

from . import tables
from .access import NEEDS_LOGINS, AccessControlConfig
from .base import _Model
from .ldap import LDAPConfig
from .messages import ModelProblem, fail, raise_all, show
from .mtls import MTLSConfig
from .sync import SyncConfig
from .tables import REDIS_URL_ENV
from .values import Duration, Member, OSText, Timeout, parse_port, parse_time_window, split_member

# zot's own defaults (pkg/storage/constants: DefaultGCDelay and DefaultGCInterval are both 1h).
DEFAULT_GC_DELAY = 3600.0
DEFAULT_GC_INTERVAL = 3600.0

LogLevel = Literal["debug", "info", "warn", "warning", "error", "fatal", "panic"]
_LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)


class TLSConfig(_Model):
    cert: OSText | None = None
    key: OSText | None = None
    cacert: OSText | None = None

    @model_validator(mode="after")
    def _pair(self) -> TLSConfig:
        if bool(self.cert) != bool(self.key):
            missing = "key" if self.cert else "cert"
            raise fail(f"{missing} is missing: cert and key must be given together")
        return self


class ClusterTLSConfig(TLSConfig):
    pass


class HTPasswdConfig(_Model):
    path: OSText


class AuthConfig(_Model):
    htpasswd: HTPasswdConfig | None = None
    fail_delay: int = Field(0, alias="failDelay", ge=0)
    # Which part of a client certificate names the user; client certificates are asked for by http.tls.cacert.
    mtls: MTLSConfig | None = None
    # Logins checked against an LDAP directory, after htpasswd (ldap.py; registry/authn/ldap.py).
    ldap: LDAPConfig | None = None


class HTTPConfig(_Model):
    address: OSText = "127.0.0.1"
    port: int = 8080
    tls: TLSConfig | None = None
    auth: AuthConfig | None = None
    realm: str | None = "zot"
    compat: list[str] | None = None
    # zot 2.1.17. None: not set (no timeout here; zot then uses 60s); 0: explicitly none. What they
    # bound here, and how that differs from Go's http.Server, is in hypercorn_patches.py.
    read_timeout: Timeout = Field(None, alias="readTimeout")
    write_timeout: Timeout = Field(None, alias="writeTimeout")
    # Who may do what (access.py; enforced by registry/access/). None: everyone who authenticates
    # (or anyone, without auth) may do everything, as in zot.
    access_control: AccessControlConfig | None = Field(None, alias="accessControl")

    @field_validator("port", mode="before")
    @classmethod
    def _port(cls, value: Any) -> int:
        return parse_port(value)

    # A field validator, not a model validator, so that it reports even when another http field is
    # wrong (the port, say); it sees `auth`, declared before it.
    @field_validator("access_control")
    @classmethod
    def _access_needs_logins(
        cls, access: AccessControlConfig | None, info: ValidationInfo
    ) -> AccessControlConfig | None:
        """zot's validateAuthzPolicies: policies that name users, or give every authenticated user
        something, need a way to authenticate them; only anonymous policies do without."""
        if access is None or "auth" not in info.data:
            return access  # no access control, or auth is wrong already (reported)
        auth, tls = info.data["auth"], info.data.get("tls")
        passwords = auth is not None and (auth.htpasswd is not None or auth.ldap is not None)
        mtls = tls is not None and bool(tls.cacert)
        if passwords or mtls or access.only_anonymous_policies() or access.only_anonymous_metrics():
            return access
        raise fail(NEEDS_LOGINS)

    @model_validator(mode="after")
    def _mtls_needs_client_certificates(self) -> HTTPConfig:
        if self.tls is not None and self.tls.cacert and not self.tls.cert:
            raise fail(
                "asks clients for certificates, which needs TLS: add http.tls.cert and http.tls.key",
                ("tls", "cacert"),
            )
        if self.auth is not None and self.auth.mtls is not None and (self.tls is None or not self.tls.cacert):
            raise fail(
                "says how client certificates name users, but none are asked for: "
                "add http.tls.cacert (the CA that issues them), or remove http.auth.mtls",
                ("auth", "mtls"),
            )
        return self


class LogConfig(_Model):
    level: LogLevel = "info"
    output: OSText | None = None
    audit: OSText | None = None

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() in _LOG_LEVELS:
            return value.lower()
        raise fail(f"must be one of {', '.join(_LOG_LEVELS)}; got {show(value)}")


def _driver_name(
    settings: dict[str, Any], kind: str, key: str | None, example: str, problems: list[ModelProblem]
) -> str | None:
    """The `name` of a storage or cache driver section, which must be one zot knows and one we
    implement; None (and a problem) when it is not."""
    # Looked up in the tables module at each call, so that a test can swap a table.
    known, supported = (
        (tables.ZOT_STORAGE_DRIVERS, tables.SUPPORTED_STORAGE_DRIVERS)
        if kind == "storage"
        else (tables.ZOT_CACHE_DRIVERS, tables.SUPPORTED_CACHE_DRIVERS)
    )
    name = settings.get("name")
    if name is None:
        problems.append((key, f'needs a "name", e.g. "{example}"'))
    elif not isinstance(name, str):
        problems.append((key, f'the "name" must be a string, e.g. "{example}"; got {show(name)}'))
    elif name not in known:
        problems.append((key, f"unsupported {kind} driver {show(name)} (zot knows {', '.join(sorted(known))})"))
    elif name not in supported:
        # Refused, not reinterpreted: another driver's settings read as S3 would reach the wrong service.
        where = "as a remote cache" if kind == "cache" else "yet"
        problems.append(
            (
                key,
                f"the {name} {kind} driver is not supported by this registry {where} "
                f"(it supports {', '.join(sorted(supported))}); run zot for {name}",
            )
        )
    else:
        return str(name)
    return None


class StorageConfig(_Model):
    root_directory: OSText = Field(alias="rootDirectory")
    dedupe: bool = True
    gc: bool = True
    gc_delay: Duration = Field(DEFAULT_GC_DELAY, alias="gcDelay")
    gc_interval: Duration = Field(DEFAULT_GC_INTERVAL, alias="gcInterval")
    remote_cache: bool = Field(False, alias="remoteCache")
    storage_driver: dict[str, Any] | None = Field(None, alias="storageDriver")
    cache_driver: dict[str, Any] | None = Field(None, alias="cacheDriver")
    commit: bool = False
    # zot 2.1.19: periodic gc starts only inside this daily UTC window, (start, end) in minutes
    # since midnight. Validated like zot, not enforced yet (a warning says so): gc only changes
    # when blobs go, never which ones, so running it at any hour exposes and loses nothing.
    gc_time_window: tuple[int, int] | None = Field(None, alias="gcTimeWindow")

    @field_validator("gc_time_window", mode="before")
    @classmethod
    def _time_window(cls, value: Any) -> tuple[int, int] | None:
        if isinstance(value, tuple):
            return value
        if not isinstance(value, str):
            raise fail(f'must be a time window like "01:00-08:00" (UTC), got {show(value)}')
        try:
            return parse_time_window(value)
        except ValueError as err:
            raise fail(f"{show(value)}: {err}") from None

    @field_validator("root_directory")
    @classmethod
    def _root(cls, value: str) -> str:
        if not value:
            raise fail("must not be empty")
        return value

    @model_validator(mode="before")
    @classmethod
    def _zot_defaults(cls, data: Any) -> Any:
        """Defaults that depend on other keys, as zot's applyDefaultValues sets them."""
        if not isinstance(data, dict):
            return data
        data = dict(data)

        def given(alias: str, name: str) -> bool:
            return alias in data or name in data

        if data.get("gc", True) is False:
            # Without gc, zot zeroes the delay and interval the user did not set.
            for alias, name in (("gcDelay", "gc_delay"), ("gcInterval", "gc_interval")):
                if not given(alias, name):
                    data[alias] = "0"
        driver = data.get("storageDriver", data.get("storage_driver"))
        if driver is not None and data.get("dedupe", True) is not False and not given("remoteCache", "remote_cache"):
            # zot: remote storage with dedupe caches in a remote database unless told otherwise.
            data["remoteCache"] = True
        return data

    # The driver checks are field validators, not a model validator, so that they run (and report)
    # even when another storage field is wrong; the cache's see the fields declared before it.
    @field_validator("storage_driver")
    @classmethod
    def _storage_driver(cls, driver: dict[str, Any] | None) -> dict[str, Any] | None:
        if driver is None:
            return driver
        problems: list[ModelProblem] = []
        name = _driver_name(driver, "storage", None, "s3", problems)
        if name == "s3" and not driver.get("bucket"):
            problems.append((None, 'the s3 driver needs a "bucket"'))
        raise_all("storageDriver", problems)
        return driver

    @field_validator("cache_driver")
    @classmethod
    def _cache_driver(cls, driver: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        # The same rules as zot's validateCacheConfig, with its reasons spelled out.
        if driver is None or not info.data.get("remote_cache"):
            return driver  # without remoteCache zot ignores the cacheDriver (a warning says so)
        problems: list[ModelProblem] = []
        name = _driver_name(driver, "cache", None, "redis", problems)
        if name is not None and "storage_driver" in info.data:
            if info.data["storage_driver"] is None and name != "redis":
                problems.append(
                    (
                        None,
                        f"a {name} cache needs a remote storageDriver; with local storage "
                        "only a redis cache can be remote",
                    )
                )
            if name == "redis" and not driver.get("url") and not os.environ.get(REDIS_URL_ENV):
                problems.append(
                    (
                        None,
                        f'the redis cache needs a "url", or the {REDIS_URL_ENV} environment '
                        "variable (the operator sets it from a Secret)",
                    )
                )
        raise_all("cacheDriver", problems)
        return driver

    @model_validator(mode="after")
    def _needs_cache(self) -> StorageConfig:
        if self.cache_driver is None and self.dedupe and self.storage_driver is not None and self.remote_cache:
            raise fail(
                "dedupe with a storageDriver keeps its index in a remote cache: set cacheDriver, "
                "or set remoteCache to false, or dedupe to false",
                "cacheDriver",
            )
        return self


class ClusterConfig(_Model):
    members: list[Member] = Field(default_factory=list)
    hash_key: str = Field("", alias="hashKey")
    tls: ClusterTLSConfig | None = None
    # Not zot's: "rendezvous" moves about 1/(N+1) of the repositories on a resize instead of most; only
    # for clusters whose members are all ours (zot refuses the key, and would route differently).
    routing: Literal["modulo", "rendezvous"] = "modulo"

    @model_validator(mode="after")
    def _zot_rules(self) -> ClusterConfig:
        # zot's messages, verbatim, so that users can search for them.
        problems: list[ModelProblem] = []
        if not self.members:
            problems.append(("members", "cannot have 0 members in a scale out cluster"))
        size = len(self.hash_key_bytes)
        if size != 16:
            problems.append(
                (
                    "hashKey",
                    f"hashKey for scale out cluster must have 16 characters (exactly 16 bytes as UTF-8, got {size})",
                )
            )
        seen: set[str] = set()
        for index, member in enumerate(self.members):
            if member in seen:
                # Two entries for one member would give it two shares of the hash space.
                problems.append((f"members[{index}]", f"{show(member)} is listed twice"))
            seen.add(member)
        raise_all("ClusterConfig", problems)
        return self

    @property
    def is_clustered(self) -> bool:
        """zot's IsClustered: with a single member nothing is proxied."""
        return len(self.members) > 1

    @property
    def hash_key_bytes(self) -> bytes:
        """The 16 bytes of the SipHash key."""
        return self.hash_key.encode("utf-8")

    @property
    def member_addresses(self) -> list[tuple[str, int]]:
        """Each member as (host, port), in the configured order."""
        return [split_member(member) for member in self.members]


class ZotConfig(_Model):
    dist_spec_version: str = Field("1.1.1", alias="distSpecVersion")
    storage: StorageConfig
    http: HTTPConfig = Field(default_factory=HTTPConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    cluster: ClusterConfig | None = None
    # Every extension's settings as written (keys lower-cased, as zot's viper makes them; those of
    # the typed extensions below on their canonical spelling), for the extensions not implemented.
    extensions: dict[str, Any] | None = None
    # The extensions this registry implements, typed and validated, read from "extensions.<name>"
    # (keymap.py checks their keys there); left out of dumps, where `extensions` holds them.
    sync: SyncConfig | None = Field(None, validation_alias=AliasPath("extensions", "sync"), exclude=True)

    @model_validator(mode="after")
    def _sync_rules(self) -> ZotConfig:
        """zot's checks of the sync stanza that need the rest of the config (validateSync,
        validateStorageConfigSection), with zot's messages and what to do about them."""
        if self.sync is None:
            return self
        problems: list[ModelProblem] = []
        for index, registry in enumerate(self.sync.registries):
            if registry.preserve_digest and not self.http.compat:
                problems.append(
                    (
                        f"extensions.sync.registries[{index}].preserveDigest",
                        'can not use PreserveDigest option without enabling http.Compat: add "compat": '
                        '["docker2s2"] to http, or remove preserveDigest (this registry keeps the '
                        "upstream's manifests as they are either way)",
                    )
                )
        if self.sync.enabled and self.storage.storage_driver is not None and not self.sync.download_dir:
            problems.append(
                (
                    "extensions.sync.downloadDir",
                    "using both sync and remote storage features needs config.Extensions.Sync.DownloadDir "
                    'to be specified: add a local directory, e.g. "downloadDir": "/var/lib/zot-sync"',
                )
            )
        raise_all("ZotConfig", problems)
        return self

    @property
    def is_clustered(self) -> bool:
        return self.cluster is not None and self.cluster.is_clustered

    @property
    def is_member(self) -> bool:
        """Listed in a cluster, even alone: it serves the control API and can take a new list in place."""
        return self.cluster is not None and bool(self.cluster.members)
