"""zot's `extensions.sync` stanza (pkg/extensions/config/sync/config.go, v2.1.20) as typed models,
and zot's sync credentials file (`load_credentials`).

The models follow models.py: snake_case attributes, zot's camelCase keys as aliases, strict types,
and zot's own checks (validateSync in pkg/cli/server/root.go) next to ours, each with a message that
says what to fix. What is refused, and why (fail closed):

- `onlySigned: true`: this registry does not verify signatures, so it would sync unsigned images the
  user asked to leave out;
- `credentialHelper` / `oauth2CredentialHelper`: not implemented, so the upstream would be contacted
  without the credentials the user configured.

`preserveDigest: false` (zot's default) is accepted although this registry always keeps the
upstream's bytes (zot converts Docker manifests to OCI unless preserveDigest is set). The checks
that need the rest of the config (preserveDigest and http.compat, downloadDir with remote storage)
are ZotConfig's (models.py). The files the stanza names are checked here, when the config is loaded
(so `verify` and the preflight report them) and unless sync is switched off: `credentialsFile` must
be a valid credentials file (load_credentials) and each `certDir` a directory.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator

from .base import _Model
from .jsontext import key_offsets, line_col
from .messages import ConfigError, ModelProblem, fail, raise_all, show
from .tables import REFUSE_HINT
from .textfile import read_json_object
from .values import Duration, OSText

# A credentials file holds a few entries; reading /dev/zero by mistake must not fill the memory.
MAX_CREDENTIALS_BYTES = 1 << 20

_CREDENTIALS_EXAMPLE = '{"registry.example.com:5000": {"username": "...", "password": "..."}}'

# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


def valid_glob(pattern: str) -> bool:
    """Whether `pattern` is a glob zot accepts in a content prefix: doublestar's ValidatePattern
    (`*`, `**`, `?`, `[...]` classes, `{a,b}` alternatives, `\\` escapes; `/` separates)."""
    depth, index, size = 0, 0, len(pattern)
    while index < size:
        char = pattern[index]
        if char == "\\":
            index += 1
            if index >= size:
                return False  # nothing left to escape
        elif char == "[":
            index += 1
            if index < size and pattern[index] in "^!":
                index += 1
            if index >= size or pattern[index] == "]":
                return False  # an empty class, or one that does not end
            while index < size and pattern[index] != "]":
                index += 2 if pattern[index] == "\\" else 1
            if index >= size:
                return False  # the class does not end
        elif char == "{":
            depth += 1
        elif char == "}":
            if depth == 0:
                return False  # an alternative that does not start
            depth -= 1
        index += 1
    return depth == 0


def _optional_path(value: str | None) -> str | None:
    # zot's default for a path is "": not set.
    return value or None


# --------------------------------------------------------------------------------------------
# The models
# --------------------------------------------------------------------------------------------


class SyncTags(_Model):
    """Which tags periodic sync takes from a repository (zot: Tags)."""

    regex: str | None = None
    exclude_regex: str | None = Field(None, alias="excludeRegex")
    semver: bool = False

    @field_validator("regex", "exclude_regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        # Python's re, which sync matches tags with; zot compiles Go's RE2 (the common syntax is the same).
        if value is not None:
            try:
                re.compile(value)
            except re.error as err:
                raise fail(f"{show(value)} is not a valid regular expression: {err}") from None
        return value


class SyncContent(_Model):
    """Which upstream repositories are synced, and under which local name (zot: Content)."""

    prefix: str
    tags: SyncTags | None = None
    destination: str | None = None
    strip_prefix: bool = Field(False, alias="stripPrefix")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value:
            raise fail('must not be empty: name the repositories to sync, e.g. "library/**" or "**" for all')
        if not valid_glob(value):
            raise fail(
                f"{show(value)} is not a valid glob (an unclosed [ or {{, an empty [], or a trailing \\); "
                'e.g. "team/*" or "team/**"'
            )
        return value

    @model_validator(mode="after")
    def _zot_rules(self) -> SyncContent:
        if self.strip_prefix and "/*" not in self.prefix and self.destination == "/":
            # zot's message, verbatim, and what to do about it.
            raise fail(
                "can not use stripPrefix true and destination '/' without using glob patterns in prefix: "
                'end the prefix with "/*" or "/**", or set another destination',
                "stripPrefix",
            )
        return self


class SyncRegistry(_Model):
    """One upstream registry (zot: RegistryConfig). Durations are seconds; None: not set."""

    urls: list[str]
    on_demand: bool = Field(False, alias="onDemand")
    # None or 0: no periodic sync.
    poll_interval: Duration | None = Field(None, alias="pollInterval")
    tls_verify: bool = Field(True, alias="tlsVerify")
    cert_dir: OSText | None = Field(None, alias="certDir")
    max_retries: int | None = Field(None, alias="maxRetries", ge=0)
    retry_delay: Duration | None = Field(None, alias="retryDelay")
    max_retry_delay: Duration | None = Field(None, alias="maxRetryDelay")
    only_signed: bool = Field(False, alias="onlySigned")
    sync_legacy_cosign_tags: bool = Field(True, alias="syncLegacyCosignTags")
    preserve_digest: bool = Field(False, alias="preserveDigest")
    sync_timeout: Duration | None = Field(None, alias="syncTimeout")
    content: list[SyncContent] = Field(default_factory=list)
    # Refused when set (not implemented); always None after validation.
    credential_helper: str | None = Field(None, alias="credentialHelper")
    oauth2_credential_helper: dict[str, Any] | None = Field(None, alias="oauth2CredentialHelper")

    @field_validator("urls")
    @classmethod
    def _urls(cls, urls: list[str]) -> list[str]:
        if not urls:
            raise fail('needs at least one URL of the upstream registry, e.g. ["https://registry.example.com"]')
        problems: list[ModelProblem] = []
        for index, url in enumerate(urls):
            reason = _url_problem(url)
            if reason is not None:
                problems.append((index, reason))
        raise_all("SyncRegistry", problems)
        return urls

    @field_validator("cert_dir")
    @classmethod
    def _cert_dir(cls, value: str | None) -> str | None:
        return _optional_path(value)  # checked on disk by SyncConfig, when sync is on

    @field_validator("only_signed")
    @classmethod
    def _only_signed(cls, value: bool) -> bool:
        if value:
            raise fail(
                "syncs only signed images, and this registry does not verify signatures: it would sync "
                f"unsigned images too; {REFUSE_HINT}"
            )
        return value

    @field_validator("credential_helper")
    @classmethod
    def _credential_helper(cls, value: str | None) -> None:
        if value:
            raise fail(
                f"gets the upstream's credentials from the {show(value)} credential helper, which this "
                "registry does not implement yet: it would contact the upstream without them "
                f"(credentialsFile is supported); {REFUSE_HINT}"
            )
        return None

    @field_validator("oauth2_credential_helper")
    @classmethod
    def _oauth2_credential_helper(cls, value: dict[str, Any] | None) -> None:
        if value:
            raise fail(
                "gets the upstream's credentials from an OAuth2 token endpoint, which this registry does "
                "not implement yet: it would contact the upstream without them (credentialsFile is supported); "
                f"{REFUSE_HINT}"
            )
        return None

    @model_validator(mode="after")
    def _zot_rules(self) -> SyncRegistry:
        # zot's messages, verbatim, so that users can search for them.
        problems: list[ModelProblem] = []
        if self.max_retries is not None and self.retry_delay is None:
            problems.append(("maxRetries", 'retryDelay is required when using maxRetries: add e.g. "retryDelay": "5m"'))
        if self.max_retry_delay is not None and self.retry_delay is None:
            problems.append(
                ("maxRetryDelay", 'retryDelay is required when using maxRetryDelay: add e.g. "retryDelay": "5m"')
            )
        elif (
            self.max_retry_delay is not None
            and self.retry_delay is not None
            and self.max_retry_delay < self.retry_delay
        ):
            problems.append(("maxRetryDelay", "maxRetryDelay must be greater than or equal to retryDelay"))
        raise_all("SyncRegistry", problems)
        return self


def _url_problem(url: str) -> str | None:
    """What is wrong with an upstream URL, or None: zot needs the scheme, and a host to contact."""
    example = "https://registry.example.com"
    if "\x00" in url or any(char.isspace() for char in url):
        return f"{show(url)} must not contain spaces or control characters"
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        if "://" not in url:
            return f"{show(url)} needs its scheme: write it as {show('https://' + url)} (or http://)"
        return f"{show(url)} must be an http:// or https:// URL, e.g. {show(example)}"
    if not parts.hostname:
        return f"{show(url)} has no host, e.g. {show(example)}"
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number 0-65535
    except ValueError:
        return f"{show(url)} has an invalid port: write it as {show(f'{parts.scheme}://{parts.hostname}:5000')}"
    return None


class SyncConfig(_Model):
    """zot's extensions.sync (zot: Config)."""

    enable: bool | None = None
    # Before the files, so that their checks know whether sync is on: the files of a stanza that is
    # switched off are not read (zot does not read them either).
    registries: list[SyncRegistry] = Field(default_factory=list)
    credentials_file: OSText | None = Field(None, alias="credentialsFile")
    download_dir: OSText | None = Field(None, alias="downloadDir")

    @field_validator("registries")
    @classmethod
    def _cert_dirs(cls, registries: list[SyncRegistry], info: ValidationInfo) -> list[SyncRegistry]:
        if info.data.get("enable") is False:
            return registries
        problems: list[ModelProblem] = []
        for index, registry in enumerate(registries):
            path = registry.cert_dir
            if path is not None and not os.path.isdir(path):
                what = "is not a directory" if os.path.exists(path) else "no such directory"
                problems.append(
                    (f"[{index}].certDir", f"{show(path)}: {what} (certDir holds ca.crt, client.cert and client.key)")
                )
        raise_all("SyncConfig", problems)
        return registries

    @field_validator("credentials_file")
    @classmethod
    def _credentials_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        value = _optional_path(value)
        # Registries that did not validate count as given: the user means to sync.
        switched_off = info.data.get("enable") is False or info.data.get("registries") == []
        if value is not None and not switched_off:
            try:
                load_credentials(value)
            except ConfigError as err:
                raise fail(f"cannot use the credentials file: {'; '.join(err.messages)}") from None
        return value

    @field_validator("download_dir")
    @classmethod
    def _download_dir(cls, value: str | None) -> str | None:
        return _optional_path(value)

    @property
    def enabled(self) -> bool:
        """Whether sync runs: unless switched off, as soon as registries are given (as in zot)."""
        return self.enable is not False and bool(self.registries)


# --------------------------------------------------------------------------------------------
# The credentials file
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """The username and password for one upstream registry."""

    username: str
    password: str = field(repr=False)


_CREDENTIAL_FIELDS = ("username", "password")


def load_credentials(path: str) -> dict[str, Credentials]:
    """zot's sync credentials file: a JSON object {"host:port": {"username": ..., "password": ...}}.

    The registry keys are lower-cased (host names are case-insensitive): look them up with the URL's
    host and port lower-cased, as urlsplit's `hostname` gives them. The field names are matched
    case-insensitively, as zot's JSON decoder does. Raises ConfigError naming the file, and the line
    and column of each problem."""
    text, data = read_json_object(
        path, MAX_CREDENTIALS_BYTES, f"a credentials file is a JSON object like {_CREDENTIALS_EXAMPLE}"
    )
    offsets = key_offsets(text)
    problems: list[tuple[tuple[str, ...], str]] = []
    found: dict[str, Credentials] = {}
    for key, entry in data.items():
        host = key.lower()
        if not key.strip():
            problems.append(((key,), f"an empty registry name: write it as host:port, e.g. {show('registry:5000')}"))
        elif "://" in key:
            bare = key.split("://", 1)[1].rstrip("/")
            problems.append(((key,), f"write the registry without its scheme, as {show(bare)}"))
        elif host in found:
            problems.append(((key,), "the same registry twice (registry names are case-insensitive): keep only one"))
        if not isinstance(entry, dict):
            problems.append(((key,), f'must be an object {{"username": ..., "password": ...}}, got {show(entry)}'))
            continue
        values: dict[str, str] = {}
        implied: set[str] = set()  # fields a misspelled key already explains
        for name, value in entry.items():
            canonical = name.lower()
            if canonical not in _CREDENTIAL_FIELDS:
                close = difflib.get_close_matches(canonical, _CREDENTIAL_FIELDS, n=1, cutoff=0.6)
                hint = f'; did you mean "{close[0]}"?' if close else ""
                implied.update(close)
                problems.append(((key, name), f"unknown key: a credentials entry has a username and a password{hint}"))
            elif canonical in values:
                problems.append(((key, name), "the same key twice (keys are case-insensitive): keep only one"))
            elif not isinstance(value, str):
                problems.append(((key, name), f"must be a string, got {show(value)}"))
            else:
                values[canonical] = value
        missing = [name for name in _CREDENTIAL_FIELDS if name not in _given(entry) | implied]
        if missing:
            problems.append(((key,), f"needs a {' and a '.join(missing)}"))
        if len(values) == len(_CREDENTIAL_FIELDS) and host not in found:
            found[host] = Credentials(username=values["username"], password=values["password"])
    if problems:
        raise ConfigError([_located(path, text, offsets, where, message) for where, message in problems])
    return found


def _given(entry: dict[str, Any]) -> set[str]:
    return {str(name).lower() for name in entry}


def _located(path: str, text: str, offsets: dict[Any, int], where: tuple[str, ...], message: str) -> str:
    offset = offsets.get(where)
    place = path if offset is None else "{}:{}:{}".format(path, *line_col(text, offset))
    return f"{place}: {'.'.join(show(part) for part in where)}: {message}"
