"""zot's `http.auth.ldap` (pkg/api/config/config.go, v2.1.20: LDAPConfig, LDAPCredentials; read by
updateLDAPConfig and validateLDAP in pkg/cli/server/root.go, used by pkg/api/authn.go and ldap.go)
as a typed model, with zot's own checks and ours. How logins are checked is registry/authn/ldap.py.

The model follows models.py: snake_case attributes, zot's camelCase keys as aliases, strict types.
What zot does with the settings, and what this model adds:

- `address`, `baseDN` and `userAttribute` are required (zot: "missing mandatory key"). `port` is
  required too: zot has no default and would dial port 0, failing every login at run time;
- the connection (authn.go: UseSSL = !insecure, SkipTLS = !startTLS; ldap.go Connect):
  `insecure: false` (the default) is LDAPS, TLS from the first byte, whatever `startTLS` says;
  `insecure: true` is plain LDAP, upgraded with StartTLS when `startTLS: true`. `skipVerify` turns
  off the server certificate's check, `caCert` (a PEM file) replaces the system's CAs. `warnings()`
  says when a setting does not do what its name suggests;
- the service account: zot 2.1.20 reads `bindDN` and `bindPassword` only from `credentialsFile`, a
  JSON file {"bindDN": ..., "bindPassword": ...} whose two keys are both required and the only ones
  allowed (readSecretFile with checkUnsetFields; keys case-insensitive, as viper reads them). The
  file is read when the config is loaded; its problems name the file, line and column. Inline
  `bindDN` / `bindPassword` are refused, as zot refuses them (unknown keys), with a message saying
  where they go. Without a credentials file the search runs after an anonymous bind (zot sends an
  unauthenticated bind as "anonym-user", which servers take as anonymous or refuse);
- a bind DN with an empty password (zot: an unauthenticated bind, RFC 4513 5.1.2, which is never a
  login) and a password without a bind DN are refused; both empty means anonymous, as in zot;
- the user is searched for with `(userAttribute=<name>)`, ANDed with `userFilter` when given, below
  `baseDN` (one level, or the whole subtree with `subtreeSearch: true`); `userFilter` may be written
  with or without its outer parentheses, as zot's parser takes both. The attribute names and the
  filter are checked here: a typo must not turn into a filter that matches other entries;
- `userGroupAttribute` names the attribute of the user's entry whose values are the user's groups
  (e.g. memberOf: each value a whole group DN, as zot takes it).
"""

from __future__ import annotations

import difflib
import re
import ssl
from typing import Any
from urllib.parse import urlsplit

from ldap3.core.exceptions import LDAPInvalidFilterError
from ldap3.operation.search import parse_filter
from ldap3.utils.conv import escape_filter_chars
from pydantic import Field, PrivateAttr, field_validator, model_validator

from .base import _Model
from .jsontext import key_offsets, line_col
from .messages import ConfigError, fail, show
from .textfile import read_json_object
from .values import OSText, parse_port

# A credentials file holds two strings; reading /dev/zero by mistake must not fill the memory.
MAX_CREDENTIALS_BYTES = 1 << 20
_CREDENTIALS_EXAMPLE = '{"bindDN": "cn=reader,dc=example,dc=org", "bindPassword": "..."}'
_CREDENTIALS_SHAPE = f"an LDAP credentials file is a JSON object like {_CREDENTIALS_EXAMPLE}"
_CREDENTIAL_KEYS = ("bindDN", "bindPassword")
# An attribute description (RFC 4512): a name or an OID, with options (";lang-en").
_ATTRIBUTE = re.compile(r"(?:[A-Za-z][A-Za-z0-9-]*|\d+(?:\.\d+)+)(?:;[A-Za-z0-9-]+)*")
# A host name, an IPv4 address or a bracketed IPv6 address, as zot joins it with ":port".
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")
LDAPS_PORT, LDAP_PORT = 636, 389


def load_ldap_credentials(path: str) -> tuple[str, str]:
    """zot's LDAP credentials file: (bindDN, bindPassword). Raises ConfigError naming the file, and
    the line and column of each problem."""
    text, data = read_json_object(path, MAX_CREDENTIALS_BYTES, _CREDENTIALS_SHAPE)
    offsets = key_offsets(text)
    canonical = {key.lower(): key for key in _CREDENTIAL_KEYS}
    problems: list[tuple[str | None, str]] = []
    values: dict[str, str] = {}
    seen: set[str] = set()
    implied: set[str] = set()  # keys a misspelled one already explains
    for name, value in data.items():
        key = canonical.get(name.lower())
        if key is None:
            close = difflib.get_close_matches(name.lower(), list(canonical), n=1, cutoff=0.6)
            implied.update(canonical[match] for match in close)
            hint = f'; did you mean "{canonical[close[0]]}"?' if close else ""
            problems.append((name, f"unknown key: an LDAP credentials file has a bindDN and a bindPassword{hint}"))
        elif key in seen:
            problems.append((name, "the same key twice (keys are case-insensitive): keep only one"))
        elif not isinstance(value, str):
            problems.append((name, f"must be a string, got {show(value)}"))
        else:
            values[key] = value
        if key is not None:
            seen.add(key)
    missing = [key for key in _CREDENTIAL_KEYS if key not in seen | implied]
    if missing:
        problems.append((None, f"needs a {' and a '.join(missing)} (zot requires both): {_CREDENTIALS_EXAMPLE}"))
    if not problems:
        bind_dn, bind_password = values["bindDN"], values["bindPassword"]
        if bind_dn and not bind_password:
            problems.append(
                (
                    _spelled(data, "bindPassword"),
                    "is empty: a bind DN without its password is an unauthenticated bind (RFC 4513), which "
                    "servers refuse or take as anonymous; give the password, or leave both empty for an "
                    "anonymous search",
                )
            )
        elif bind_password and not bind_dn:
            problems.append(
                (
                    _spelled(data, "bindDN"),
                    "is empty while bindPassword is not: give the service account's DN, "
                    'e.g. "cn=reader,dc=example,dc=org"',
                )
            )
    if problems:
        raise ConfigError([_located(path, text, offsets, name, message) for name, message in problems])
    return values["bindDN"], values["bindPassword"]


def _spelled(data: dict[str, Any], key: str) -> str:
    return next(name for name in data if name.lower() == key.lower())


def _located(path: str, text: str, offsets: dict[Any, int], name: str | None, message: str) -> str:
    offset = None if name is None else offsets.get((name,))
    place = path if offset is None else "{}:{}:{}".format(path, *line_col(text, offset))
    return f"{place}: {message}" if name is None else f"{place}: {show(name)}: {message}"


def _outer_parentheses(text: str) -> int:
    """How many pairs of parentheses enclose all of `text` ("((a=b))": 2, "(a=b)(c=d)": 0), or -1
    when they do not balance. Parentheses in filter values are escaped (\\28, \\29), never bare."""
    opened: list[int] = []
    closing: dict[int, int] = {}  # where each "(" is closed
    for index, char in enumerate(text):
        if char == "(":
            opened.append(index)
        elif char == ")":
            if not opened:
                return -1
            closing[opened.pop()] = index
    if opened:
        return -1
    pairs = 0
    while closing.get(pairs) == len(text) - 1 - pairs:
        pairs += 1
    return pairs


def user_filter(attribute: str, user: str, extra: str | None) -> str:
    """The search filter for `user`: zot's (&(attribute=<user, escaped>)(userFilter)). zot wraps the
    filter in parentheses of its own and its parser drops redundant ones; so it is normalised here
    to one pair, which the filter parser of ldap3 needs."""
    own = f"({attribute}={escape_filter_chars(user)})"
    if not extra:
        return own
    pairs = _outer_parentheses(extra)
    inner = extra[pairs:-pairs] if pairs > 0 else extra
    # "(a=b)(c=d)" (several filters) are ANDed with the user's; one filter gets its pair back.
    return f"(&{own}({inner}))" if not inner.startswith("(") else f"(&{own}{inner})"


def _attribute_problem(value: str, example: str) -> str | None:
    if not _ATTRIBUTE.fullmatch(value):
        return f"{show(value)} is not an LDAP attribute name (letters, digits and '-', or an OID), e.g. {show(example)}"
    return None


class LDAPConfig(_Model):
    """zot's http.auth.ldap (zot: LDAPConfig). After validation `bind_dn` and `bind_password` hold
    the credentials file's service account ("" and "": an anonymous search)."""

    credentials_file: OSText | None = Field(None, alias="credentialsFile")
    port: int
    insecure: bool = False
    start_tls: bool = Field(False, alias="startTLS")
    skip_verify: bool = Field(False, alias="skipVerify")
    subtree_search: bool = Field(False, alias="subtreeSearch")
    address: OSText
    user_group_attribute: str | None = Field(None, alias="userGroupAttribute")
    base_dn: str = Field(alias="baseDN")
    user_attribute: str = Field(alias="userAttribute")
    user_filter: str | None = Field(None, alias="userFilter")
    ca_cert: OSText | None = Field(None, alias="caCert")
    # Refused when given (zot 2.1.20 reads them only from credentialsFile); always None after validation.
    inline_bind_dn: Any = Field(None, alias="bindDN")
    inline_bind_password: Any = Field(None, alias="bindPassword")

    _bind_dn: str = PrivateAttr("")
    _bind_password: str = PrivateAttr("")

    @field_validator("credentials_file", "user_group_attribute", "user_filter", "ca_cert")
    @classmethod
    def _optional(cls, value: str | None) -> str | None:
        return value or None  # zot's default for a string is "": not set

    @field_validator("credentials_file")
    @classmethod
    def _credentials_file(cls, value: str | None) -> str | None:
        # Read here, so that its problems are reported with the others of the config; the model
        # validator reads it again to keep the account (a field validator has nowhere to put it).
        if value is not None:
            try:
                load_ldap_credentials(value)
            except ConfigError as err:
                raise fail(f"cannot use the credentials file: {'; '.join(err.messages)}") from None
        return value

    @field_validator("port", mode="before")
    @classmethod
    def _port(cls, value: Any) -> int:
        # A number, as zot's examples write it; a string of digits too (zot's viper converts it).
        hint = f": the LDAP server's is usually {LDAPS_PORT} for LDAPS, {LDAP_PORT} for StartTLS or plain LDAP"
        return parse_port(value, hint)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not value:
            raise fail('required: the LDAP server\'s host name, e.g. "ldap.example.org"')
        if "://" in value:
            try:
                bare = urlsplit(value).hostname or ""
            except ValueError:  # an unclosed [
                bare = ""
            bare = bare or value.split("://", 1)[1]
            raise fail(
                f"{show(value)}: write the host name only, as {show(bare)}: the port is `port`, and the "
                "protocol is chosen by `insecure` and `startTLS`"
            )
        if not _HOST.fullmatch(value):
            hint = " (the port goes in `port`)" if ":" in value and not value.startswith("[") else ""
            raise fail(
                f'{show(value)} is not a host name or an address{hint}, e.g. "ldap.example.org", '
                '"192.0.2.10" or "[2001:db8::10]"'
            )
        return value

    @field_validator("base_dn")
    @classmethod
    def _base_dn(cls, value: str) -> str:
        if "=" not in value or "\x00" in value:
            raise fail(
                f'must be the DN under which the users are, e.g. "ou=people,dc=example,dc=org", got {show(value)}'
            )
        return value

    @field_validator("user_attribute")
    @classmethod
    def _user_attribute(cls, value: str) -> str:
        reason = _attribute_problem(value, "uid")
        if reason is not None:
            raise fail(reason if value else 'required: the attribute that holds the user name, e.g. "uid"')
        return value

    @field_validator("user_group_attribute")
    @classmethod
    def _user_group_attribute(cls, value: str | None) -> str | None:
        reason = None if value is None else _attribute_problem(value, "memberOf")
        if reason is not None:
            raise fail(reason)
        return value

    @field_validator("user_filter")
    @classmethod
    def _user_filter(cls, value: str | None) -> str | None:
        if value is None:
            return value
        example = 'e.g. "(!(nsaccountlock=TRUE))" or "(objectClass=person)"'
        if _outer_parentheses(value) < 0:
            raise fail(f"{show(value)}: its parentheses do not balance; {example}")
        try:
            parse_filter(user_filter("uid", "someone", value), None, False, True, None, False)
        except LDAPInvalidFilterError as err:
            raise fail(f"{show(value)} is not a valid LDAP filter ({err}); {example}") from None
        return value

    @field_validator("inline_bind_dn", "inline_bind_password")
    @classmethod
    def _inline(cls, value: Any) -> None:
        if value is not None:
            raise fail(
                "zot 2.1.20 reads the service account only from credentialsFile (it refuses this key here): "
                f"write a JSON file like {_CREDENTIALS_EXAMPLE} and name it in credentialsFile"
            )
        return None

    @model_validator(mode="after")
    def _account(self) -> LDAPConfig:
        if self.credentials_file is not None:
            try:
                self._bind_dn, self._bind_password = load_ldap_credentials(self.credentials_file)
            except ConfigError as err:  # changed since the field's check
                raise fail(f"cannot use the credentials file: {'; '.join(err.messages)}", "credentialsFile") from None
        return self

    @property
    def bind_dn(self) -> str:
        """The service account that searches for users; "" for an anonymous search."""
        return self._bind_dn

    @property
    def bind_password(self) -> str:
        return self._bind_password

    @property
    def ldaps(self) -> bool:
        """TLS from the first byte (zot: UseSSL = !insecure)."""
        return not self.insecure

    @property
    def uses_start_tls(self) -> bool:
        """Plain LDAP upgraded with StartTLS (zot: only when insecure, and startTLS)."""
        return self.insecure and self.start_tls

    def warnings(self) -> list[str]:
        """What the settings do that their names do not say, for `verify` to print: each one
        "key: message", the key below http.auth.ldap."""
        found: list[str] = []
        if self.start_tls and not self.insecure:
            found.append(
                "startTLS: ignored unless insecure is true: zot 2.1.20 (and this registry) connects with LDAPS, "
                f"TLS from the first byte, to port {self.port}; for StartTLS set insecure to true"
            )
        if self.insecure and not self.start_tls:
            found.append("insecure: the users' passwords go to the LDAP server in clear text; set startTLS to true")
        if self.skip_verify and (self.ldaps or self.uses_start_tls):
            found.append(
                "skipVerify: the LDAP server's certificate is not checked: whoever is on the way can read the "
                "users' passwords; give the CA that issued it in caCert instead"
            )
        return found

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS settings of the connection (None for plain LDAP): the server's certificate checked
        against caCert, or the system's CAs (zot's default), for the name in `address`. Raises
        ConfigError naming caCert when it cannot be used (zot reads it even for plain LDAP)."""
        context = ssl.create_default_context()
        if self.ca_cert is not None:
            try:
                context = ssl.create_default_context(cafile=self.ca_cert)
            except FileNotFoundError:
                raise ConfigError(f"{self.ca_cert}: no such file (http.auth.ldap.caCert)") from None
            except (ssl.SSLError, OSError, ValueError) as err:
                raise ConfigError(
                    f"{self.ca_cert}: not a PEM file of CA certificates (http.auth.ldap.caCert): "
                    f"{getattr(err, 'strerror', None) or err}"
                ) from None
        if not (self.ldaps or self.uses_start_tls):
            return None
        if self.skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context
