"""zot's JSON config file: loading, validation and user-facing error messages.

Users paste configs written for zot, so this module reads them the way zot does (keys are
case-insensitive, as viper and mapstructure make them) and explains every problem in terms of the
file: its name, the line and column, and the key path. Three kinds of keys exist:

- keys we implement: validated by the pydantic models below;
- keys zot knows that we do not implement yet (UNSUPPORTED_KEYS): a warning, then ignored;
- keys zot does not know either: an error, with a suggestion when one is close (zot rejects
  them too, through viper's UnmarshalExact).

Loading goes: read the file, parse JSON (trailing commas get their own message, because zot's
published redis examples carry one), map keys onto their canonical spelling, validate with pydantic,
and rewrite pydantic's errors into one line per problem.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

# --------------------------------------------------------------------------------------------
# Tables that later work fills in or shrinks
# --------------------------------------------------------------------------------------------

# Drivers zot accepts in storage.storageDriver.name / storage.cacheDriver.name.
ZOT_STORAGE_DRIVERS: frozenset[str] = frozenset({"s3", "gcs"})
ZOT_CACHE_DRIVERS: frozenset[str] = frozenset({"boltdb", "dynamodb", "redis"})
# Where the redis cache's URL comes from when the config has none (it may carry a password).
REDIS_URL_ENV = "ZOT_REDIS_URL"
# The ones this registry implements; an issue that adds a driver adds its name here.
SUPPORTED_STORAGE_DRIVERS: set[str] = {"s3"}
SUPPORTED_CACHE_DRIVERS: set[str] = {"redis", "dynamodb"}

_IGNORED = "not supported yet, ignored"

# Key paths that zot's config struct (pkg/api/config/config.go, pkg/extensions/config) knows and
# that we do not implement yet, with the warning to print. The names are the canonical spelling;
# matching is case-insensitive. Anything below one of these paths is not checked key by key.
# Remove an entry when its feature lands (and add the field to the models).
UNSUPPORTED_KEYS: dict[str, str] = {
    # Build information that zot fills in itself; harmless in a config dumped from zot.
    "goVersion": "build information, ignored",
    "commit": "build information, ignored",
    "releaseTag": "build information, ignored",
    "binaryType": "build information, ignored",
    "scheduler": _IGNORED,
    "storage.retention": _IGNORED,
    "storage.subPaths": _IGNORED,
    # Some zot versions keep the session store under storage, others under http.auth.
    "storage.remoteSessionCache": _IGNORED,
    "storage.sessionDriver": _IGNORED,
    "http.externalUrl": _IGNORED,
    "http.allowOrigin": _IGNORED,
    "http.accessControl": _IGNORED,
    "http.ratelimit": _IGNORED,
    "http.auth.ldap": _IGNORED,
    "http.auth.bearer": _IGNORED,
    "http.auth.openid": _IGNORED,
    "http.auth.apikey": _IGNORED,
    "http.auth.sessionKeysFile": _IGNORED,
    "http.auth.sessionDriver": _IGNORED,
    "http.auth.secureSession": _IGNORED,
    "log.audit": _IGNORED,
    # Every extension zot has. Their contents are kept in ZotConfig.extensions, unchecked.
    "extensions.search": _IGNORED,
    "extensions.sync": _IGNORED,
    "extensions.metrics": _IGNORED,
    "extensions.scrub": _IGNORED,
    "extensions.lint": _IGNORED,
    "extensions.ui": _IGNORED,
    "extensions.mgmt": _IGNORED,
    "extensions.apikey": _IGNORED,
    "extensions.trust": _IGNORED,
    "extensions.events": _IGNORED,
}

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


def _fail(reason: str, key: str | int | None = None) -> PydanticCustomError:
    """A validation error whose text is exactly `reason`. `key` extends the error's location when
    a model-level check is about one of its fields."""
    return PydanticCustomError("zot_config", "{reason}", {"reason": reason, "key": key})


def _show(value: Any) -> str:
    """A value as the user wrote it in JSON, for `got ...` in messages."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


# --------------------------------------------------------------------------------------------
# Go durations ("1h", "30m", "1h30m", "10s", "1.5h", "300ms")
# --------------------------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Parse a Go duration string (time.ParseDuration's syntax) into seconds."""
    rest, sign = text, 1.0
    if rest[:1] in ("+", "-"):
        sign = -1.0 if rest[0] == "-" else 1.0
        rest = rest[1:]
    if rest == "0":
        return 0.0
    total, pos = 0.0, 0
    while pos < len(rest):
        match = _DURATION_PART.match(rest, pos)
        if match is None:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not rest or pos != len(rest):
        raise ValueError(f"invalid duration {text!r}")
    return sign * total


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
LogLevel = Literal["debug", "info", "warn", "warning", "error", "fatal", "panic"]
_LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)

# --------------------------------------------------------------------------------------------
# The models (snake_case attributes, zot's camelCase keys as aliases)
# --------------------------------------------------------------------------------------------


class _Model(BaseModel):
    # extra="forbid" is a safety net: key checking happens before validation, with better words.
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")


class TLSConfig(_Model):
    cert: str | None = None
    key: str | None = None
    cacert: str | None = None

    @model_validator(mode="after")
    def _pair(self) -> TLSConfig:
        if bool(self.cert) != bool(self.key):
            missing = "key" if self.cert else "cert"
            raise _fail(f"{missing} is missing: cert and key must be given together")
        return self


class ClusterTLSConfig(TLSConfig):
    pass


class HTPasswdConfig(_Model):
    path: str


class AuthConfig(_Model):
    htpasswd: HTPasswdConfig | None = None
    fail_delay: int = Field(0, alias="failDelay", ge=0)


class HTTPConfig(_Model):
    address: str = "127.0.0.1"
    port: int = 8080
    tls: TLSConfig | None = None
    auth: AuthConfig | None = None
    realm: str | None = "zot"
    compat: list[str] | None = None

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
    output: str | None = None
    audit: str | None = None

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() in _LOG_LEVELS:
            return value.lower()
        raise _fail(f"must be one of {', '.join(_LOG_LEVELS)}; got {_show(value)}")


def _driver_name(settings: dict[str, Any], known: frozenset[str], kind: str, key: str, example: str) -> str:
    """The `name` of a storage or cache driver section, which must be one zot knows."""
    name = settings.get("name")
    if name is None:
        raise _fail(f'needs a "name", e.g. "{example}"', key)
    if name not in known:
        raise _fail(f"unsupported {kind} driver {_show(name)} (zot knows {', '.join(sorted(known))})", key)
    return str(name)


class StorageConfig(_Model):
    root_directory: str = Field(alias="rootDirectory")
    dedupe: bool = True
    gc: bool = True
    gc_delay: float = Field(DEFAULT_GC_DELAY, alias="gcDelay")
    gc_interval: float = Field(DEFAULT_GC_INTERVAL, alias="gcInterval")
    remote_cache: bool = Field(False, alias="remoteCache")
    storage_driver: dict[str, Any] | None = Field(None, alias="storageDriver")
    cache_driver: dict[str, Any] | None = Field(None, alias="cacheDriver")
    commit: bool = False

    @field_validator("gc_delay", "gc_interval", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> float:
        return _duration(value)

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

    @model_validator(mode="after")
    def _drivers(self) -> StorageConfig:
        self._check_storage_driver()
        self._check_cache_driver()
        return self

    def _check_storage_driver(self) -> None:
        if self.storage_driver is None:
            return
        name = _driver_name(self.storage_driver, ZOT_STORAGE_DRIVERS, "storage", "storageDriver", "s3")
        if name == "s3" and not self.storage_driver.get("bucket"):
            raise _fail('the s3 driver needs a "bucket"', "storageDriver")

    def _check_cache_driver(self) -> None:
        # The same rules as zot's validateCacheConfig, with its reasons spelled out.
        if self.cache_driver is None:
            if self.dedupe and self.storage_driver is not None and self.remote_cache:
                raise _fail("dedupe with a storageDriver keeps its index in a remote cache: set cacheDriver, "
                            "or set remoteCache to false, or dedupe to false", "cacheDriver")
            return
        if not self.remote_cache:
            return  # zot ignores the cacheDriver then (a warning says so)
        name = _driver_name(self.cache_driver, ZOT_CACHE_DRIVERS, "cache", "cacheDriver", "redis")
        if self.storage_driver is None and name != "redis":
            raise _fail(f"a {name} cache needs a remote storageDriver; with local storage only a redis "
                        "cache can be remote", "cacheDriver")
        if name == "redis" and not self.cache_driver.get("url") and not os.environ.get(REDIS_URL_ENV):
            raise _fail(f'the redis cache needs a "url", or the {REDIS_URL_ENV} environment variable '
                        "(the operator sets it from a Secret)", "cacheDriver")


class ClusterConfig(_Model):
    members: list[Member] = Field(default_factory=list)
    hash_key: str = Field("", alias="hashKey")
    tls: ClusterTLSConfig | None = None

    @model_validator(mode="after")
    def _zot_rules(self) -> ClusterConfig:
        # zot's messages, verbatim, so that users can search for them.
        if not self.members:
            raise _fail("cannot have 0 members in a scale out cluster", "members")
        size = len(self.hash_key_bytes)
        if size != 16:
            raise _fail("hashKey for scale out cluster must have 16 characters "
                        f"(exactly 16 bytes as UTF-8, got {size})", "hashKey")
        seen: set[str] = set()
        for index, member in enumerate(self.members):
            if member in seen:
                # Two entries for one member would give it two shares of the hash space.
                raise _fail(f"{_show(member)} is listed twice", f"members[{index}]")
            seen.add(member)
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
        text = source.read_text(encoding="utf-8-sig")  # -sig: tolerate a byte order mark
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, not a config file") from None
    except PermissionError:
        raise ConfigError(f"{source}: permission denied") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{source}: not UTF-8 text (byte {err.start}); zot configs are JSON") from None
    except OSError as err:
        raise ConfigError(f"{source}: cannot read: {err.strerror or err}") from None
    return parse_config(text, str(source))


def parse_config(text: str, source: str = "<config>") -> LoadedConfig:
    """Validate a zot config given as text; `source` names it in messages."""
    data = _parse_json(text, source)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the config must be a JSON object ({{...}}), not {_json_kind(data)}")
    keys = _KeyMapper(source, text)
    canonical = keys.map_object(data, ZotConfig, (), ())
    if keys.errors:
        raise ConfigError(keys.render(keys.errors))
    try:
        config = ZotConfig.model_validate(canonical)
    except ValidationError as err:
        raise ConfigError(keys.render(_validation_problems(err))) from None
    return LoadedConfig(config=config, warnings=keys.warnings + _warnings(config), path=Path(source))


def _warnings(config: ZotConfig) -> list[str]:
    """Things zot accepts that will not do what the user may expect here."""
    storage, found = config.storage, []
    if storage.storage_driver is not None:
        name = storage.storage_driver.get("name")
        if name not in SUPPORTED_STORAGE_DRIVERS:
            found.append(f"storage.storageDriver: the {name} driver is not supported yet")
    if storage.cache_driver is not None:
        name = storage.cache_driver.get("name")
        if not storage.remote_cache:
            found.append("storage.cacheDriver: ignored because storage.remoteCache is false "
                         "(a local cache is used, as in zot)")
        elif name not in SUPPORTED_CACHE_DRIVERS:
            found.append(f"storage.cacheDriver: the {name} cache driver is not supported yet")
    if not storage.gc and storage.gc_delay:
        found.append("storage.gcDelay: set while storage.gc is false, ignored")
    if not storage.gc and storage.gc_interval:
        found.append("storage.gcInterval: set while storage.gc is false, ignored")
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
    """`zot-registry verify CONFIG`: report on a config file; 0 when it can be used, 1 when not."""
    if load_and_report(path) is None:
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
            if isinstance(value, dict) and value.get("enable") is False:
                return value  # switched off: nothing is being ignored
        self.warnings.append(f"{_dotted(path)}: {UNSUPPORTED_KEYS[_dotted(path)]}")
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
