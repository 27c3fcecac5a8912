"""LDAP logins as zot 2.1.20 checks them (pkg/api/ldap.go, LDAPClient.Authenticate), with ldap3.

One check, for a user name and a password:

1. an empty password fails at once: a bind with a DN and no password is an unauthenticated bind
   (RFC 4513 5.1.2), which many servers answer with success; an empty name fails too (it finds nobody);
2. connect: LDAPS unless `insecure`; plain LDAP upgraded with StartTLS when `insecure` and `startTLS`;
   plain LDAP only when `insecure` alone (LDAPConfig.tls_context says which, and which CAs);
3. bind as the credentials file's service account (anonymously without one);
4. search `baseDN` (one level, or the subtree with `subtreeSearch`) for
   (&(userAttribute=<name, escaped>)(userFilter)): exactly one entry must match, else the login fails;
5. bind as that entry's DN with the password (sent as its UTF-8 bytes, as zot sends it: no SASLprep);
6. the groups are the values of `userGroupAttribute` on that entry, whole (memberOf: group DNs), as zot
   takes them.

Like htpasswd, checks run as checks.py runs them (ldap3 is synchronous): in a small thread pool,
at most MAX_PENDING waiting (429 beyond), identical checks shared, a success remembered with its
groups for a minute (a changed password or group takes up to that long), failures not remembered.

Where we differ from zot, on purpose:

- a server that cannot be reached, does not answer within ZOT_LDAP_TIMEOUT seconds (each operation;
  ZOT_LDAP_CONNECT_TIMEOUT to connect), refuses the service account or the search, is
  503 UNAVAILABLE with Retry-After (LdapUnavailable), at once; zot retries for up to half a minute,
  then answers 401 as for a wrong password;
- the certificate of a StartTLS server is checked against `address` (zot sets no server name for
  StartTLS, so there it only works with skipVerify);
- without a credentials file the search follows an anonymous bind (zot's is an unauthenticated bind
  as "anonym-user", which servers take as anonymous or refuse);
- a connection per check, closed after it: zot shares one behind a lock.

The failed login's delay (http.auth.failDelay) is the caller's, as for htpasswd.
"""

from __future__ import annotations

import contextlib
import logging
import math
import ssl
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPException

from ..config.ldap import LDAPConfig, user_filter
from ..errors import _error
from ..tuning import env_int, env_seconds
from .checks import PasswordChecks

log = logging.getLogger("zot_registry.ldap")

LdapUnavailable = _error("LdapUnavailable", "UNAVAILABLE", 503, "the LDAP server is unavailable")

# Each check waits at most this long to connect, and this long for each answer (StartTLS, two binds,
# the search): a server that is down or silent fails a login in seconds, never holds it.
CONNECT_TIMEOUT = env_seconds("ZOT_LDAP_CONNECT_TIMEOUT", 3.0)
# Whole seconds, at least 1: ldap3 also sets it as SO_RCVTIMEO, packed as an integer.
TIMEOUT = max(math.ceil(env_seconds("ZOT_LDAP_TIMEOUT", 5.0)), 1)
# Threads per worker that talk to the LDAP server; each check holds one for a few round trips.
THREADS = max(env_int("ZOT_LDAP_THREADS", 4), 1)
# Checks that may wait for those threads; beyond this a request gets 429 at once.
MAX_PENDING = max(env_int("ZOT_LDAP_MAX_PENDING", 32), 1)
# Seconds a client is told to wait when the server is unavailable: a restart, a failover.
_RETRY_AFTER = "5"
# Result codes of the user's bind that say the server, not the password, is the problem.
_BUSY, _UNAVAILABLE = 51, 52
_SUCCESS, _SIZE_LIMIT_EXCEEDED = 0, 4


class _Unavailable(Exception):
    """Raised in the pool's threads: the check could not be made (why, for the log)."""


class _Tls(ldap3.Tls):
    """ldap3's TLS with Python's own checks of the certificate and of the host name (ldap3's own
    host name check uses ssl.match_hostname, which Python 3.12 removed). ldap3 calls wrap_socket for
    LDAPS and for StartTLS, after it set the receive timeout: the handshake is bounded too."""

    def __init__(self, context: ssl.SSLContext, host: str) -> None:
        super().__init__()  # validate=CERT_NONE: ldap3 leaves the checks to the context
        self._context = context
        self._host = host

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        connection.socket = self._context.wrap_socket(
            connection.socket, server_hostname=self._host, do_handshake_on_connect=do_handshake
        )


class LdapAuth:
    def __init__(self, config: LDAPConfig, threads: int = THREADS, max_pending: int = MAX_PENDING) -> None:
        self.config = config
        # Raises ConfigError naming caCert when it cannot be used: at start, not at the first login.
        context = config.tls_context()
        host = config.address.strip("[]")  # a bracketed IPv6 address, as zot joins it with the port
        self._tls = None if context is None else _Tls(context, host)
        self._host = host
        self._checks: PasswordChecks[frozenset[str]] = PasswordChecks(self._check, "LDAP", threads, max_pending)

    async def verify(self, user: str, password: str) -> frozenset[str] | None:
        """The user's LDAP groups when the password is right; None for a wrong password, an unknown
        user or one that several entries match. Raises LdapUnavailable (503) when the server cannot
        be asked, TooManyRequests (429) when too many checks wait."""
        if not password or not user:
            return None
        try:
            return await self._checks.run(user, password)
        except _Unavailable:
            raise LdapUnavailable(headers={"Retry-After": _RETRY_AFTER}) from None

    def close(self) -> None:
        self._checks.close()

    # ------------------------------------------------------------------------------------------
    # In the pool's threads
    # ------------------------------------------------------------------------------------------

    def _connection(self) -> Any:
        config = self.config
        server = ldap3.Server(
            self._host,
            port=config.port,
            use_ssl=config.ldaps,
            tls=self._tls,
            get_info=ldap3.NONE,  # no schema or root DSE reads: one round trip less per check
            connect_timeout=CONNECT_TIMEOUT,
        )
        anonymous = not config.bind_password
        return ldap3.Connection(
            server,
            user=None if anonymous else config.bind_dn,
            # Bytes: sent as they are. A str would go through SASLprep, which zot does not apply.
            password=None if anonymous else config.bind_password.encode(),
            authentication=ldap3.ANONYMOUS if anonymous else ldap3.SIMPLE,
            read_only=True,
            receive_timeout=TIMEOUT,
            raise_exceptions=False,  # failed operations return False; network failures still raise
            auto_referrals=False,  # zot follows none; another server would need its own timeouts
            check_names=False,  # DNs and attribute names sent as written (no schema is read)
            auto_escape=False,  # user_filter escapes the name itself
        )

    def _check(self, user: str, password: str) -> frozenset[str] | None:
        connection = None
        try:
            connection = self._connection()
            return self._authenticate(connection, user, password)
        except (LDAPException, OSError) as err:
            log.warning("ldap: %s:%d: %s", self._host, self.config.port, err)
            raise _Unavailable(str(err)) from err
        except _Unavailable as err:
            log.warning("ldap: %s:%d: %s", self._host, self.config.port, err)
            raise
        finally:
            if connection is not None:
                with contextlib.suppress(LDAPException, OSError):
                    connection.unbind()

    def _authenticate(self, connection: Any, user: str, password: str) -> frozenset[str] | None:
        config = self.config
        connection.open(read_server_info=False)
        if config.uses_start_tls:
            connection.start_tls(read_server_info=False)  # raises when refused: never falls back to plain
        if not connection.bind(read_server_info=False):
            raise _Unavailable(f"the service account's bind failed: {_result(connection)}")
        group_attribute = config.user_group_attribute
        connection.search(
            search_base=config.base_dn,
            search_filter=user_filter(config.user_attribute, user, config.user_filter),
            search_scope=ldap3.SUBTREE if config.subtree_search else ldap3.LEVEL,
            dereference_aliases=ldap3.DEREF_NEVER,
            attributes=[group_attribute] if group_attribute else ldap3.NO_ATTRIBUTES,
            size_limit=2,  # two are enough to know that the name is ambiguous
            time_limit=TIMEOUT,
        )
        # Success, or more than two entries: anything else (a time limit, say) may have left one out.
        if connection.result["result"] not in (_SUCCESS, _SIZE_LIMIT_EXCEEDED):
            raise _Unavailable(f"the search below {config.base_dn!r} failed: {_result(connection)}")
        entries = [item for item in connection.response or () if item.get("type") == "searchResEntry"]
        if len(entries) != 1 or not entries[0].get("dn"):
            return None  # unknown, or several entries: zot's ErrBadUser, ErrEntriesExceeded
        entry = entries[0]
        if not connection.rebind(
            user=entry["dn"], password=password.encode(), authentication=ldap3.SIMPLE, read_server_info=False
        ):
            if connection.result["result"] in (_BUSY, _UNAVAILABLE):
                raise _Unavailable(f"the user's bind failed: {_result(connection)}")
            return None
        # zot takes every value of every attribute returned, which is the one asked for.
        groups: set[str] = set()
        for values in (entry.get("raw_attributes") or {}).values():
            for value in values:
                with contextlib.suppress(UnicodeDecodeError):  # not text: no policy can name it
                    groups.add(value.decode() if isinstance(value, bytes) else str(value))
        return frozenset(groups)


def _result(connection: Any) -> str:
    result = connection.result or {}
    message = result.get("message")
    return f"{result.get('description')}" + (f" ({message})" if message else "")
