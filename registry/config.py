"""zot's JSON config file: loading, validation and user-facing error messages.

Users paste configs written for zot, so this module reads them the way zot does (keys are
case-insensitive, as viper and mapstructure make them) and explains every problem in terms of the
file: its name, the line and column, and the key path. Four kinds of keys exist:

- keys we implement: validated by the pydantic models below;
- keys zot knows that we do not implement yet and that are harmless to ignore (UNSUPPORTED_KEYS):
  a warning that says what is ignored;
- keys zot knows that restrict who may do what, which we do not enforce (UNSUPPORTED_KEYS with
  refuse=True): an error, because ignoring them would fail open;
- keys zot does not know either: an error, with a suggestion when one is close (zot rejects
  them too, through viper's UnmarshalExact).

Loading goes: read the file, parse JSON (trailing commas get their own message, because zot's
published redis examples carry one), map keys onto their canonical spelling, validate with pydantic,
and rewrite pydantic's errors into one line per problem. Every problem of the file is reported in
one run, in file order. The files a config names (htpasswd, certificates, the log's directory)
are checked apart, in preflight.py, by `verify` and by `serve` before it starts: parsing a config
(zot's published examples, say) does not need them.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from .durations import parse_duration

# --------------------------------------------------------------------------------------------
# Tables that later work fills in or shrinks
# --------------------------------------------------------------------------------------------

# Drivers zot accepts in storage.storageDriver.name / storage.cacheDriver.name (azure since 2.1.18).
ZOT_STORAGE_DRIVERS: frozenset[str] = frozenset({"s3", "gcs", "azure"})
ZOT_CACHE_DRIVERS: frozenset[str] = frozenset({"boltdb", "dynamodb", "redis"})
# Where the redis cache's URL comes from when the config has none (it may carry a password).
REDIS_URL_ENV = "ZOT_REDIS_URL"
# The ones this registry implements; an issue that adds a driver adds its name here. A driver zot
# knows and we do not is refused: reading gcs or azure settings as S3 would talk to the wrong service.
SUPPORTED_STORAGE_DRIVERS: set[str] = {"s3"}
# zot itself accepts only these two as a remote cache (boltdb is its local one).
SUPPORTED_CACHE_DRIVERS: set[str] = {"redis", "dynamodb"}


def _in_use(value: Any) -> bool:
    """Whether a zot setting asks for something: null, false, "" and 0 ask for nothing, and neither
    does an object with "enable": false (zot's extensions; an absent "enable" means on, as in zot)."""
    if isinstance(value, dict):
        return next((item for key, item in value.items() if str(key).lower() == "enable"), None) is not False
    return value not in (None, False, "")


def _lint_in_use(value: Any) -> bool:
    # zot's linter refuses manifests only when it has mandatory annotations to look for.
    return _in_use(value) and isinstance(value, dict) and bool(value.get("mandatoryannotations"))


@dataclass(frozen=True)
class Unsupported:
    """A zot setting that this registry does not implement, and what ignoring it would mean.

    refuse: ignoring the setting would let someone do what it forbids (fail open), so a config that
    uses it is an error, in `verify` and in `serve`. Otherwise a warning says what is ignored."""

    why: str
    refuse: bool = False
    in_use: Callable[[Any], bool] = _in_use


_IGNORED = "not supported yet, ignored"
_ENFORCED = "which this registry does not enforce yet"
_IMPLEMENTED = "which this registry does not implement yet"
REFUSE_HINT = "remove it or run zot"

# Every key path that zot's config (pkg/api/config/config.go, pkg/extensions/config) knows and that
# we do not implement, in one table: the decision for each, and why. Names are the canonical
# spelling; matching is case-insensitive; anything below one of these paths is not checked key by
# key. Remove an entry when its feature lands (and add the field to the models).
UNSUPPORTED_KEYS: dict[str, Unsupported] = {
    # Build information that zot fills in itself; harmless in a config dumped from zot.
    "goVersion": Unsupported("build information, ignored"),
    "commit": Unsupported("build information, ignored"),
    "releaseTag": Unsupported("build information, ignored"),
    "binaryType": Unsupported("build information, ignored"),
    # zot's background task pool; we have no such tasks to size.
    "scheduler": Unsupported(_IGNORED),
    # Ignoring retention keeps every image (nothing is deleted that zot would have kept), so it can
    # neither expose nor lose data: a warning. The disk may grow where zot would have pruned.
    "storage.retention": Unsupported(f"{_IGNORED}: no image is deleted by retention policies, "
                                     "every image is kept until it is deleted through the API"),
    # Ignoring subPaths would read and write those repositories under rootDirectory: images already
    # stored under a subpath would look deleted, and new ones would land on the wrong disk.
    "storage.subPaths": Unsupported(f"stores repositories in other directories, {_IMPLEMENTED}: they would "
                                    "be read from and written to rootDirectory instead", refuse=True),
    # A quota on repositories (zot 2.1.16): ignoring it lets users create what zot would refuse.
    "storage.maxRepos": Unsupported(f"limits the number of repositories, {_ENFORCED}", refuse=True),
    # Blobs are then served through the registry, as without the setting (zot 2.1.18).
    "storage.redirectBlobURL": Unsupported(f"{_IGNORED}: blobs are served by this registry, not redirected"),
    # A startup shortcut of zot's metadata database (zot 2.1.18); we have no such walk to skip.
    "storage.fastRestart": Unsupported(_IGNORED),
    # Some zot versions keep the session store under storage, others under http.auth.
    "storage.remoteSessionCache": Unsupported(_IGNORED),
    "storage.sessionDriver": Unsupported(_IGNORED),
    "http.externalUrl": Unsupported(_IGNORED),
    # Without it no CORS header is sent, so browsers refuse cross-origin reads: stricter, not looser.
    "http.allowOrigin": Unsupported(f"{_IGNORED}: no CORS headers are sent"),
    # Who may do what: ignoring any of these would accept anonymous or over-privileged requests.
    "http.accessControl": Unsupported(f"restricts access, {_ENFORCED}", refuse=True),
    "http.auth.ldap": Unsupported(f"requires LDAP logins, {_IMPLEMENTED}", refuse=True),
    "http.auth.bearer": Unsupported(f"requires bearer tokens, {_IMPLEMENTED}", refuse=True),
    "http.auth.openid": Unsupported(f"requires OpenID logins, {_IMPLEMENTED}", refuse=True),
    "http.auth.apikey": Unsupported(f"requires API keys, {_IMPLEMENTED}", refuse=True),
    "http.auth.mtls": Unsupported(f"identifies users by client certificates (mTLS), {_IMPLEMENTED}",
                                  refuse=True),
    # zot requires a client certificate signed by this CA (mTLS); serving without would let anyone in.
    "http.tls.cacert": Unsupported(f"requires client certificates (mTLS), {_IMPLEMENTED}", refuse=True),
    # A rate limit bounds load, not who may do what: nobody gains access by its absence, so a
    # warning, which says plainly that nothing is limited.
    "http.ratelimit": Unsupported(f"{_IGNORED}: requests are not rate limited "
                                  "(put a rate-limiting proxy in front if you rely on it)"),
    # Cookies of zot's web UI and OpenID sessions, which we do not serve.
    "http.auth.sessionKeysFile": Unsupported(_IGNORED),
    "http.auth.sessionDriver": Unsupported(_IGNORED),
    "http.auth.secureSession": Unsupported(_IGNORED),
    "log.audit": Unsupported(f"{_IGNORED}: no audit log is written"),
    # Every extension zot has. Their contents are kept in ZotConfig.extensions, unchecked. Missing
    # features (search, UI, sync, ...) answer 404; none of them restricts access, except these:
    "extensions.lint": Unsupported(f"refuses manifests without the mandatory annotations, {_ENFORCED}",
                                   refuse=True, in_use=_lint_in_use),
    "extensions.apikey": Unsupported(f"requires API keys, {_IMPLEMENTED}", refuse=True),
    "extensions.search": Unsupported(_IGNORED),
    "extensions.sync": Unsupported(_IGNORED),
    "extensions.metrics": Unsupported(_IGNORED),
    "extensions.scrub": Unsupported(_IGNORED),
    "extensions.ui": Unsupported(_IGNORED),
    "extensions.mgmt": Unsupported(_IGNORED),
    # zot's trust extension verifies signatures and reports them through search; it blocks nothing.
    "extensions.trust": Unsupported(_IGNORED),
    "extensions.events": Unsupported(_IGNORED),
}

# A config is a few KiB; reading /dev/zero by mistake must not fill the memory.
MAX_CONFIG_BYTES = 4 << 20

# zot's own defaults (pkg/storage/constants: DefaultGCDelay and DefaultGCInterval are both 1h).
DEFAULT_GC_DELAY = 3600.0
DEFAULT_GC_INTERVAL = 3600.0

# Dict-valued fields whose keys are not ours to check; zot's viper lower-cases them all.
_FREE_FORM = "free-form"
# The one free-form field whose top-level keys are still checked (extension names).
_EXTENSIONS = "extensions"

# --------------------------------------------------------------------------------------------
# Errors and results
# --------------------------------------------------------------------------------------------


class ConfigError(Exception):
    """A config that cannot be used. str(err) is the complete message for the user, one line per
    problem, each starting with the file name (and line:column when known)."""

    def __init__(self, messages: str | list[str]) -> None:
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("\n".join(self.messages))


@dataclass
class LoadedConfig:
    config: ZotConfig
    warnings: list[str]
    path: Path
    # Locates problems found later (preflight's file checks) in the text, as parse errors are.
    render: Callable[[list[Problem]], list[str]] | None = None

    def describe(self, problems: list[Problem]) -> list[str]:
        """One line per problem, in file order: FILE:LINE:COL: key.path: message."""
        if self.render is not None:
            return self.render(problems)
        return [f"{self.path}: {_dotted(path)}: {message}" for path, message in problems]


def _fail(reason: str, key: str | int | None = None) -> PydanticCustomError:
    """A validation error whose text is exactly `reason`. `key` extends the error's location when
    a model-level check is about one of its fields."""
    return PydanticCustomError("zot_config", "{reason}", {"reason": reason, "key": key})


ModelProblem = tuple[str | int | None, str]  # (key within the model or None, reason)


def _raise_all(model: str, problems: list[ModelProblem]) -> None:
    """Raise every problem a model-level check found, at once: a validator that raised the first
    would hide the others until the user had fixed it."""
    if problems:
        raise ValidationError.from_exception_data(
            model, [InitErrorDetails(type=_fail(reason, key), loc=(), input=None) for key, reason in problems])


def _show(value: Any) -> str:
    """A value as the user wrote it in JSON, for `got ...` in messages."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


# --------------------------------------------------------------------------------------------
# Go durations ("1h", "30m", "1h30m", "10s", "1.5h", "300ms")
# --------------------------------------------------------------------------------------------

def _duration(value: Any) -> float:
    # Only strings: zot (mapstructure) would read a bare JSON number as nanoseconds, which is
    # never what a user who writes 3600 means, so it is better refused than guessed.
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise _fail(f'must be a duration like "1h", "30m", "1h30m" or "10s", got {_show(value)}') from None
    else:
        raise _fail(f'must be a duration string like "1h", "30m" or "10s", got {_show(value)} '
                    "(zot would read a bare number as nanoseconds)")
    if seconds < 0:
        raise _fail(f"must not be negative, got {_show(value)}")
    return seconds


def _timeout(value: Any) -> float:
    """http.readTimeout / writeTimeout: a Go duration; zero or negative means no timeout, as in zot."""
    if isinstance(value, str) and value.startswith("-"):
        try:
            parse_duration(value)
        except ValueError:
            pass  # _duration words the error
        else:
            return 0.0
    return _duration(value)


_TIME_OF_DAY = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


def parse_time_window(text: str) -> tuple[int, int] | None:
    """zot's storage.gcTimeWindow, "HH:MM-HH:MM" in UTC, as minutes since midnight (start, end);
    None for "", which means no restriction. The window may wrap past midnight. Raises ValueError."""
    if text == "":
        return None
    start, sep, end = text.partition("-")
    if not sep:
        raise ValueError('expected "HH:MM-HH:MM" (UTC), e.g. "01:00-08:00"')
    minutes = []
    for part in (start.strip(), end.strip()):
        match = _TIME_OF_DAY.fullmatch(part)
        if match is None:
            raise ValueError(f'{_show(part)} is not a 24h time "HH:MM"; expected "HH:MM-HH:MM" (UTC)')
        minutes.append(int(match.group(1)) * 60 + int(match.group(2)))
    if minutes[0] == minutes[1]:
        raise ValueError("the start and the end of the window cannot be equal")
    return minutes[0], minutes[1]


# --------------------------------------------------------------------------------------------
# Cluster members ("host:port")
# --------------------------------------------------------------------------------------------


def split_member(member: str) -> tuple[str, int]:
    """Split a cluster member "host:port" (or "[v6addr]:port") into host and port.
    Raises ValueError with a message for the user."""
    if "://" in member:
        raise ValueError(f"{_show(member)} must be host:port, without a scheme")
    if member.startswith("["):
        host, sep, port = member[1:].partition("]:")
        if not sep:
            raise ValueError(f'{_show(member)} must be "[address]:port" for an IPv6 address')
    else:
        host, sep, port = member.rpartition(":")
        if not sep:
            raise ValueError(f"{_show(member)} has no port: write it as host:port, e.g. {_show(member + ':5000')}")
        if ":" in host:
            raise ValueError(f'{_show(member)}: an IPv6 address needs brackets, as in "[::1]:5000"')
    if not host:
        raise ValueError(f"{_show(member)} has no host: write it as host:port")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{_show(member)} must end with a port number 1-65535")
    return host, int(port)


def _member(value: str) -> str:
    try:
        split_member(value)
    except ValueError as err:
        raise _fail(str(err)) from None
    return value


Member = Annotated[str, AfterValidator(_member)]


def _no_nul(value: str) -> str:
    # JSON allows "\u0000"; no file name or address does, and the OS calls would raise on it.
    if "\x00" in value:
        raise _fail(f"must not contain a NUL character (\\u0000), got {_show(value)}")
    return value


# A file or directory name, or an address: text the operating system gets.
OSText = Annotated[str, AfterValidator(_no_nul)]
LogLevel = Literal["debug", "info", "warn", "warning", "error", "fatal", "panic"]
_LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)

# --------------------------------------------------------------------------------------------
# The models (snake_case attributes, zot's camelCase keys as aliases)
# --------------------------------------------------------------------------------------------


class _Model(BaseModel):
    # extra="forbid" is a safety net: key checking happens before validation, with better words.
    # strict: "yes" is not true and "5" is not 5 (zot's mapstructure would refuse both, and a
    # typo must not turn into a setting); the few fields that take strings on purpose (the port,
    # durations) convert them in their own validators.
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid", strict=True)


class TLSConfig(_Model):
    cert: OSText | None = None
    key: OSText | None = None
    cacert: OSText | None = None

    @model_validator(mode="after")
    def _pair(self) -> TLSConfig:
        if bool(self.cert) != bool(self.key):
            missing = "key" if self.cert else "cert"
            raise _fail(f"{missing} is missing: cert and key must be given together")
        return self


class ClusterTLSConfig(TLSConfig):
    pass


class HTPasswdConfig(_Model):
    path: OSText


class AuthConfig(_Model):
    htpasswd: HTPasswdConfig | None = None
    fail_delay: int = Field(0, alias="failDelay", ge=0)


class HTTPConfig(_Model):
    address: OSText = "127.0.0.1"
    port: int = 8080
    tls: TLSConfig | None = None
    auth: AuthConfig | None = None
    realm: str | None = "zot"
    compat: list[str] | None = None
    # zot 2.1.17. None: not set (no timeout here; zot then uses 60s); 0: explicitly none. What they
    # bound here, and how that differs from Go's http.Server, is in timeouts.py.
    read_timeout: float | None = Field(None, alias="readTimeout")
    write_timeout: float | None = Field(None, alias="writeTimeout")

    @field_validator("read_timeout", "write_timeout", mode="before")
    @classmethod
    def _timeouts(cls, value: Any) -> float:
        return _timeout(value)

    @field_validator("port", mode="before")
    @classmethod
    def _port(cls, value: Any) -> int:
        # zot writes the port as a JSON string ("8080"); a number is accepted too.
        if isinstance(value, int) and not isinstance(value, bool):
            port = value
        elif isinstance(value, str) and value.isascii() and value.isdigit():
            port = int(value)
        else:
            port = -1
        if not 1 <= port <= 65535:
            raise _fail(f"must be a port number 1-65535, got {_show(value)}")
        return port


class LogConfig(_Model):
    level: LogLevel = "info"
    output: OSText | None = None
    audit: OSText | None = None

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() in _LOG_LEVELS:
            return value.lower()
        raise _fail(f"must be one of {', '.join(_LOG_LEVELS)}; got {_show(value)}")


def _driver_name(settings: dict[str, Any], kind: str, key: str | None, example: str,
                 problems: list[ModelProblem]) -> str | None:
    """The `name` of a storage or cache driver section, which must be one zot knows and one we
    implement; None (and a problem) when it is not."""
    known, supported = ((ZOT_STORAGE_DRIVERS, SUPPORTED_STORAGE_DRIVERS) if kind == "storage"
                        else (ZOT_CACHE_DRIVERS, SUPPORTED_CACHE_DRIVERS))
    name = settings.get("name")
    if name is None:
        problems.append((key, f'needs a "name", e.g. "{example}"'))
    elif not isinstance(name, str):
        problems.append((key, f'the "name" must be a string, e.g. "{example}"; got {_show(name)}'))
    elif name not in known:
        problems.append((key, f"unsupported {kind} driver {_show(name)} (zot knows {', '.join(sorted(known))})"))
    elif name not in supported:
        # Refused, not reinterpreted: another driver's settings read as S3 would reach the wrong service.
        where = "as a remote cache" if kind == "cache" else "yet"
        problems.append((key, f"the {name} {kind} driver is not supported by this registry {where} "
                              f"(it supports {', '.join(sorted(supported))}); run zot for {name}"))
    else:
        return str(name)
    return None


class StorageConfig(_Model):
    root_directory: OSText = Field(alias="rootDirectory")
    dedupe: bool = True
    gc: bool = True
    gc_delay: float = Field(DEFAULT_GC_DELAY, alias="gcDelay")
    gc_interval: float = Field(DEFAULT_GC_INTERVAL, alias="gcInterval")
    remote_cache: bool = Field(False, alias="remoteCache")
    storage_driver: dict[str, Any] | None = Field(None, alias="storageDriver")
    cache_driver: dict[str, Any] | None = Field(None, alias="cacheDriver")
    commit: bool = False
    # zot 2.1.19: periodic gc starts only inside this daily UTC window, (start, end) in minutes
    # since midnight. Validated like zot, not enforced yet (a warning says so): gc only changes
    # when blobs go, never which ones, so running it at any hour exposes and loses nothing.
    gc_time_window: tuple[int, int] | None = Field(None, alias="gcTimeWindow")

    @field_validator("gc_delay", "gc_interval", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> float:
        return _duration(value)

    @field_validator("gc_time_window", mode="before")
    @classmethod
    def _time_window(cls, value: Any) -> tuple[int, int] | None:
        if isinstance(value, tuple):
            return value
        if not isinstance(value, str):
            raise _fail(f'must be a time window like "01:00-08:00" (UTC), got {_show(value)}')
        try:
            return parse_time_window(value)
        except ValueError as err:
            raise _fail(f"{_show(value)}: {err}") from None

    @field_validator("root_directory")
    @classmethod
    def _root(cls, value: str) -> str:
        if not value:
            raise _fail("must not be empty")
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
        _raise_all("storageDriver", problems)
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
                problems.append((None, f"a {name} cache needs a remote storageDriver; with local storage "
                                       "only a redis cache can be remote"))
            if name == "redis" and not driver.get("url") and not os.environ.get(REDIS_URL_ENV):
                problems.append((None, f'the redis cache needs a "url", or the {REDIS_URL_ENV} environment '
                                       "variable (the operator sets it from a Secret)"))
        _raise_all("cacheDriver", problems)
        return driver

    @model_validator(mode="after")
    def _needs_cache(self) -> StorageConfig:
        if self.cache_driver is None and self.dedupe and self.storage_driver is not None and self.remote_cache:
            raise _fail("dedupe with a storageDriver keeps its index in a remote cache: set cacheDriver, "
                        "or set remoteCache to false, or dedupe to false", "cacheDriver")
        return self


class ClusterConfig(_Model):
    members: list[Member] = Field(default_factory=list)
    hash_key: str = Field("", alias="hashKey")
    tls: ClusterTLSConfig | None = None

    @model_validator(mode="after")
    def _zot_rules(self) -> ClusterConfig:
        # zot's messages, verbatim, so that users can search for them.
        problems: list[ModelProblem] = []
        if not self.members:
            problems.append(("members", "cannot have 0 members in a scale out cluster"))
        size = len(self.hash_key_bytes)
        if size != 16:
            problems.append(("hashKey", "hashKey for scale out cluster must have 16 characters "
                                        f"(exactly 16 bytes as UTF-8, got {size})"))
        seen: set[str] = set()
        for index, member in enumerate(self.members):
            if member in seen:
                # Two entries for one member would give it two shares of the hash space.
                problems.append((f"members[{index}]", f"{_show(member)} is listed twice"))
            seen.add(member)
        _raise_all("ClusterConfig", problems)
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
    extensions: dict[str, Any] | None = None

    @property
    def is_clustered(self) -> bool:
        return self.cluster is not None and self.cluster.is_clustered


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str]) -> LoadedConfig:
    """Read and validate a zot config file. Raises ConfigError with a message for the user."""
    source = Path(path)
    try:
        with open(source, "rb") as handle:  # a pipe (/dev/stdin) works too
            data = handle.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{source}: more than {MAX_CONFIG_BYTES >> 20} MiB, too large for a config file")
        text = data.decode("utf-8-sig")  # -sig: tolerate a byte order mark
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, not a config file") from None
    except PermissionError:
        raise ConfigError(f"{source}: permission denied") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{source}: not UTF-8 text (byte {err.start}); zot configs are JSON") from None
    except (OSError, ValueError) as err:  # ValueError: a NUL in the name
        raise ConfigError(f"{source}: cannot read: {getattr(err, 'strerror', None) or err}") from None
    return parse_config(text, str(source))


def parse_config(text: str, source: str = "<config>") -> LoadedConfig:
    """Validate a zot config given as text; `source` names it in messages."""
    try:
        return _parse(text, source)
    except RecursionError:
        # json.loads and the key scanner recurse per level; no zot config is nested this deep.
        raise ConfigError(f"{source}: the JSON is nested too deeply to be a zot config") from None


def _parse(text: str, source: str) -> LoadedConfig:
    data = _parse_json(text, source)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the config must be a JSON object ({{...}}), not {_json_kind(data)}")
    keys = _KeyMapper(source, text)
    canonical = keys.map_object(data, ZotConfig, (), ())
    # Validation runs even when keys were wrong (they are left out), so that one run reports every
    # problem of the file.
    problems = list(keys.errors)
    try:
        config: ZotConfig | None = ZotConfig.model_validate(canonical)
    except ValidationError as err:
        config = None
        problems += [problem for problem in _validation_problems(err) if problem not in keys.implied]
    if problems or config is None:
        raise ConfigError(keys.render(problems))
    return LoadedConfig(config=config, warnings=keys.warnings + _warnings(config), path=Path(source),
                        render=keys.render)


def _warnings(config: ZotConfig) -> list[str]:
    """Things zot accepts that will not do what the user may expect here."""
    storage, found = config.storage, []
    if storage.cache_driver is not None and not storage.remote_cache:
        found.append("storage.cacheDriver: ignored because storage.remoteCache is false "
                     "(a local cache is used, as in zot)")
    if not storage.gc and storage.gc_delay:
        found.append("storage.gcDelay: set while storage.gc is false, ignored")
    if not storage.gc and storage.gc_interval:
        found.append("storage.gcInterval: set while storage.gc is false, ignored")
    if storage.gc_time_window is not None:
        found.append("storage.gcTimeWindow: set while storage.gc is false, ignored" if not storage.gc else
                     "storage.gcTimeWindow: not supported yet, ignored: garbage collection may run at any "
                     "time of day (it deletes the same blobs as inside the window, those unused for gcDelay)")
    return found


def load_and_report(path: str) -> LoadedConfig | None:
    """Load a config, printing its warnings and errors to stderr; None when it cannot be used."""
    try:
        loaded = load_config(path)
    except ConfigError as err:
        for message in err.messages:
            print(f"error: {message}", file=sys.stderr)
        return None
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return loaded


def verify_main(path: str) -> int:
    """`zot-registry verify CONFIG`: report on a config file and the files it names (the checks
    `serve` runs before it starts); 0 when it can be used, 1 when not."""
    from .preflight import load_and_check  # preflight imports this module

    if load_and_check(path) is None:
        return 1
    print(f"{path}: ok")
    return 0


# --------------------------------------------------------------------------------------------
# JSON parsing with messages that say what to fix
# --------------------------------------------------------------------------------------------


def _parse_json(text: str, source: str) -> Any:
    if not text.strip():
        raise ConfigError(f"{source}: the file is empty; a zot config is a JSON object")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        raise ConfigError(_describe_json_error(err, text, source)) from None
    except _NotJSON as err:
        line, col = _line_col(text, text.find(err.token))
        raise ConfigError(f"{source}:{line}:{col}: {err.token} is not valid JSON; write a number or null") from None


class _NotJSON(ValueError):
    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.token = token


def _reject_constant(token: str) -> Any:
    # Python's json reads NaN and Infinity; Go's (and so zot) does not.
    raise _NotJSON(token)


def _describe_json_error(err: json.JSONDecodeError, text: str, source: str) -> str:
    where = f"{source}:{err.lineno}:{err.colno}"
    comma = _trailing_comma(text, err.pos)
    if comma is not None:
        what = "member of an object" if text[err.pos] == "}" else "element of an array"
        line, col = _line_col(text, comma)
        return f"{where}: trailing comma after the last {what}: remove the ',' at line {line}, column {col}"
    char = text[err.pos] if err.pos < len(text) else ""
    if char == "/":
        hint = "comments are not allowed in JSON"
    elif char == "'":
        hint = "JSON strings and keys need double quotes, not single quotes"
    elif err.pos >= len(text.rstrip()):
        hint = "the file ends before the JSON document does (a missing '}' or ']'?)"
    elif err.msg == "Extra data":
        hint = "unexpected text after the end of the JSON document"
    else:
        hint = f"invalid JSON: {err.msg}"
    suffix = Path(source).suffix.lower()
    if suffix in (".yaml", ".yml", ".toml", ".hcl", ".ini", ".properties"):
        hint += f" (zot also reads {suffix[1:]} configs; this registry reads JSON only)"
    return f"{where}: {hint}"


def _trailing_comma(text: str, pos: int) -> int | None:
    """The offset of a ',' that directly precedes the closing bracket at `pos`, if that is the error."""
    if pos >= len(text) or text[pos] not in "}]":
        return None
    before = len(text[:pos].rstrip())
    if before and text[before - 1] == ",":
        return before - 1
    return None


def _line_col(text: str, pos: int) -> tuple[int, int]:
    """1-based line and column of an offset, the way json.JSONDecodeError counts them."""
    line = text.count("\n", 0, pos) + 1
    return line, pos - text.rfind("\n", 0, pos)


def _json_kind(value: Any) -> str:
    kinds = {list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------------------------
# Key positions in the text (json.loads does not report them)
# --------------------------------------------------------------------------------------------

PathKey = tuple[str | int, ...]


def _key_offsets(text: str) -> dict[PathKey, int]:
    """Offset of every key (and list element) of an already valid JSON document, by path."""
    offsets: dict[PathKey, int] = {}
    _scan_value(text, _skip_ws(text, 0), (), offsets)
    return offsets


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _scan_string(text: str, pos: int) -> tuple[str, int]:
    end = pos + 1
    while text[end] != '"':
        end += 2 if text[end] == "\\" else 1
    return json.loads(text[pos : end + 1]), end + 1


def _scan_value(text: str, pos: int, path: PathKey, offsets: dict[PathKey, int]) -> int:
    """Scan the value at `pos`, recording offsets below `path`; return the offset after it."""
    char = text[pos]
    if char == '"':
        return _scan_string(text, pos)[1]
    if char in "{[":
        closing, index = ("}" if char == "{" else "]"), 0
        pos = _skip_ws(text, pos + 1)
        while text[pos] != closing:
            if char == "{":
                start = pos
                key, pos = _scan_string(text, pos)
                offsets.setdefault((*path, key), start)
                pos = _skip_ws(text, _skip_ws(text, pos) + 1)  # past the ':'
                pos = _scan_value(text, pos, (*path, key), offsets)
            else:
                offsets.setdefault((*path, index), pos)
                pos = _scan_value(text, pos, (*path, index), offsets)
                index += 1
            pos = _skip_ws(text, pos)
            if text[pos] == ",":
                pos = _skip_ws(text, pos + 1)
        return pos + 1
    while pos < len(text) and text[pos] not in ",]} \t\r\n":
        pos += 1
    return pos


# --------------------------------------------------------------------------------------------
# Canonical keys: zot's case-insensitive matching, unknown and unsupported keys
# --------------------------------------------------------------------------------------------

Problem = tuple[PathKey, str]  # (canonical path, message)


def _dotted(path: PathKey) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _unsupported_children(parent: PathKey) -> dict[str, str]:
    """Known-but-unsupported child keys of `parent`: lower-case name -> canonical name."""
    prefix = _dotted(parent)
    children = {}
    for dotted in UNSUPPORTED_KEYS:
        head, _, name = dotted.rpartition(".")
        if head == prefix:
            children[name.lower()] = name
    return children


def _field_kind(annotation: Any) -> type[BaseModel] | str | None:
    """What a field holds: a nested model, a free-form dict, or a plain value."""
    options = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    for option in options:
        if isinstance(option, type) and issubclass(option, BaseModel):
            return option
        if get_origin(option) is dict:
            return _FREE_FORM
    return None


def _model_fields(model: type[BaseModel]) -> dict[str, tuple[str, type[BaseModel] | str | None]]:
    """lower-case key -> (canonical key, kind) for the fields of a model."""
    fields = {}
    for name, info in model.model_fields.items():
        alias = info.alias or name
        kind = _EXTENSIONS if model is ZotConfig and name == "extensions" else _field_kind(info.annotation)
        fields[alias.lower()] = (alias, kind)
    return fields


def _lower_keys(value: Any) -> Any:
    """Free-form dicts as zot sees them: viper lower-cases every key, at every depth."""
    if isinstance(value, dict):
        return {str(key).lower(): _lower_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_lower_keys(item) for item in value]
    return value


@dataclass
class _KeyMapper:
    """Rewrites a parsed config onto canonical keys, collecting errors and warnings, and keeps
    enough of the original spelling to point at the right place in the file."""

    source: str
    text: str
    errors: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # canonical path -> the path as spelled in the file
    origin: dict[PathKey, PathKey] = field(default_factory=dict)
    # "required" problems that a misspelled key already explains ("rootDirectry": did you mean...)
    implied: set[Problem] = field(default_factory=set)

    def map_object(self, obj: Any, model: type[BaseModel] | str, path: PathKey, spelled: PathKey) -> Any:
        if not isinstance(obj, dict):
            return obj  # validation reports the wrong type
        fields = _model_fields(model) if isinstance(model, type) else {}
        unsupported = _unsupported_children(path)
        out: dict[str, Any] = {}
        for key, value in obj.items():
            canonical = self._canonical(key, fields, unsupported, path, spelled)
            if canonical is None:
                continue
            if canonical in out:
                self._duplicate(key, obj, canonical, path, spelled)
                continue
            here, spelled_here = (*path, canonical), (*spelled, key)
            self.origin[here] = spelled_here
            if canonical.lower() in unsupported:
                value = self._unsupported(here, value)
                if canonical.lower() not in fields and model != _EXTENSIONS:
                    continue  # no model field holds it: drop it
            out[canonical] = self._map_value(value, fields.get(canonical.lower(), (canonical, None))[1],
                                             here, spelled_here)
        return out

    def _map_value(self, value: Any, kind: type[BaseModel] | str | None, path: PathKey, spelled: PathKey) -> Any:
        if isinstance(kind, type):
            return self.map_object(value, kind, path, spelled)
        if kind == _EXTENSIONS:
            return self.map_object(value, _EXTENSIONS, path, spelled)
        if kind == _FREE_FORM or path[:1] == (_EXTENSIONS,):
            return _lower_keys(value)
        return value

    def _canonical(self, key: str, fields: dict[str, tuple[str, Any]], unsupported: dict[str, str],
                   path: PathKey, spelled: PathKey) -> str | None:
        lower = key.lower()
        if lower in fields:
            return fields[lower][0]
        if lower in unsupported:
            return unsupported[lower]
        choices = {name.lower(): name for name, _ in fields.values()} | unsupported
        close = difflib.get_close_matches(lower, list(choices), n=1, cutoff=0.6)
        hint = f'; did you mean "{choices[close[0]]}"?' if close else ""
        if close:
            self.implied.add(((*path, choices[close[0]]), "required"))
        where = f"in {_dotted(path)}" if path else "at the top level"
        self.origin[(*path, key)] = (*spelled, key)
        self.errors.append(((*path, key), f"unknown key, zot has no such setting {where}{hint}"))
        return None

    def _duplicate(self, key: str, obj: dict[str, Any], canonical: str, path: PathKey, spelled: PathKey) -> None:
        first = next(k for k in obj if k.lower() == canonical.lower())
        self.origin[(*path, key)] = (*spelled, key)
        self.errors.append(((*path, key), f'same key as "{first}" (keys are case-insensitive): keep only one'))

    def _unsupported(self, path: PathKey, value: Any) -> Any:
        if path[:1] == (_EXTENSIONS,):
            value = _lower_keys(value)
        entry = UNSUPPORTED_KEYS[_dotted(path)]
        if not entry.in_use(_lower_keys(value)):
            return value  # null, false or switched off: nothing is being ignored
        if entry.refuse:
            self.errors.append((path, f"{entry.why}; {REFUSE_HINT}"))
        else:
            self.warnings.append(f"{_dotted(path)}: {entry.why}")
        return value

    def render(self, problems: list[Problem]) -> list[str]:
        """One line per problem, in file order: FILE:LINE:COL: key.path: message."""
        offsets = _key_offsets(self.text)
        located = [(self._offset(path, offsets), path, message) for path, message in problems]
        located.sort(key=lambda item: (item[0] is None, item[0] or 0))
        lines = []
        for offset, path, message in located:
            where = self.source
            if offset is not None:
                line, col = _line_col(self.text, offset)
                where = f"{where}:{line}:{col}"
            lines.append(f"{where}: {_dotted(path)}: {message}" if path else f"{where}: {message}")
        return lines

    def _offset(self, path: PathKey, offsets: dict[PathKey, int]) -> int | None:
        """Where `path` is in the file; for a missing key, where its closest parent is."""
        for end in range(len(path), 0, -1):
            spelled = self._spelled(path[:end])
            if spelled in offsets:
                return offsets[spelled]
        return None

    def _spelled(self, path: PathKey) -> PathKey:
        for end in range(len(path), 0, -1):
            if path[:end] in self.origin:
                return self.origin[path[:end]] + path[end:]
        return path


# --------------------------------------------------------------------------------------------
# pydantic errors -> user messages
# --------------------------------------------------------------------------------------------

_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "an object ({...})",
    "model_type": "an object ({...})",
    "model_attributes_type": "an object ({...})",
}


def _validation_problems(err: ValidationError) -> list[Problem]:
    return [_problem(detail) for detail in err.errors(include_url=False)]


def _problem(detail: Any) -> Problem:
    path: PathKey = tuple(detail["loc"])
    kind, ctx = detail["type"], detail.get("ctx") or {}
    if kind == "zot_config":
        if ctx.get("key") is not None:
            path = (*path, *_split_key(ctx["key"]))
        return path, str(ctx["reason"])
    if kind == "missing":
        return path, "required"
    if kind in _TYPE_WORDS:
        return path, f"must be {_TYPE_WORDS[kind]}, got {_show(detail.get('input'))}"
    if kind == "greater_than_equal":
        return path, f"must be at least {ctx.get('ge')}, got {_show(detail.get('input'))}"
    message = str(detail["msg"])
    return path, message[:1].lower() + message[1:]


def _split_key(key: str | int) -> Iterator[str | int]:
    """"members[2]" -> "members", 2; so that a model-level check can point at a list element."""
    if isinstance(key, int):
        yield key
        return
    name, _, rest = key.partition("[")
    yield name
    if rest:
        yield int(rest.rstrip("]"))
