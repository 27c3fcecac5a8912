"""Who sent a request, in zot's order (pkg/api/authn.go v2.1.20, tryAuthnHandlers and basicAuthn):

1. more than one Authorization header: refused (401);
2. from a member of the cluster (a client certificate the cluster CA issued) with IDENTITY_HEADER:
   the identity that member took from its client's certificate (current.py says why and how);
3. an Authorization header, with a Basic login method configured: htpasswd first, then LDAP
   (the user's LDAP groups join those of accessControl.groups); neither accepts: 401 after
   http.auth.failDelay. `Basic Og==` (empty user and password, which some clients send) counts
   as no header (zot's isAuthorizationHeaderEmpty);
4. a client certificate, with mTLS configured (http.tls.cacert; the handshake verified it): the
   name http.auth.mtls says (certificates.py); none in it: 401. A member's certificate is not a
   user's: a member's request without IDENTITY_HEADER goes on to 5 as the client's did;
5. no login method at all: everyone, as anonymous (zot lets every request in);
6. anonymous, where that is allowed (some repository has an anonymousPolicy; /metrics with its
   own); else 401 with the Basic challenge.

The result is an Identity (access/policy.py): a name and groups, or anonymous.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from cryptography import x509

from ..access.policy import ANONYMOUS, Identity
from ..config import ZotConfig
from ..config.mtls import MTLSConfig
from ..errors import RegistryError, Unauthorized
from ..hypercorn_patches import peer_certificate
from .certificates import certificate_identity, issued_directly_by, load_authorities
from .current import IDENTITY_HEADER, vouched_name
from .htpasswd import HtpasswdAuth, parse_basic

# zot's isAuthorizationHeaderEmpty: Basic with an empty user and password is no credentials.
_EMPTY_BASIC = "basic og=="

MakeIdentity = Callable[[str, Iterable[str]], Identity]


class PasswordChecker(Protocol):
    """A Basic login method after htpasswd (ldap.LdapAuth): the user's groups, or None."""

    async def verify(self, user: str, password: str) -> frozenset[str] | None: ...


def _authorization(headers: Any) -> list[str]:
    """Every Authorization header: a multidict's (the /v2/ requests) or werkzeug's (Quart's)."""
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return list(getall("Authorization", []))
    return list(headers.getlist("Authorization"))


def _plain_identity(name: str, groups: Iterable[str]) -> Identity:
    return Identity(name, frozenset(groups))


class Authenticator:
    def __init__(
        self,
        realm: str,
        fail_delay: float,
        htpasswd: HtpasswdAuth | None = None,
        ldap: PasswordChecker | None = None,
        mtls: MTLSConfig | None = None,
        cluster_authorities: list[x509.Certificate] | None = None,
        make_identity: MakeIdentity = _plain_identity,
    ) -> None:
        self.realm = realm
        self.fail_delay = fail_delay
        self.htpasswd = htpasswd
        self.ldap = ldap
        self.mtls = mtls
        self.cluster_authorities = cluster_authorities or []
        self.make_identity = make_identity

    @classmethod
    def from_config(
        cls, config: ZotConfig, htpasswd: HtpasswdAuth | None, ldap: PasswordChecker | None
    ) -> Authenticator:
        auth, tls = config.http.auth, config.http.tls
        mtls = None
        if tls is not None and tls.cacert:
            mtls = (auth.mtls if auth is not None else None) or MTLSConfig.default()
        cluster_tls = config.cluster.tls if config.cluster is not None else None
        # Only a member vouches for identities, and only with the CA that issued the members' certificates.
        authorities = load_authorities(cluster_tls.cacert) if cluster_tls is not None and cluster_tls.cacert else []
        fail_delay = float(auth.fail_delay) if auth is not None else 0.0
        return cls(config.http.realm or "zot", fail_delay, htpasswd, ldap, mtls, authorities)

    @property
    def basic(self) -> bool:
        """Whether Basic credentials can log in (zot's CanAuthenticateWithBasicCredentials)."""
        return self.htpasswd is not None or self.ldap is not None

    @property
    def enabled(self) -> bool:
        """Whether any login method is configured; without, every request is let in as anonymous."""
        return self.basic or self.mtls is not None

    def challenge(self) -> dict[str, str]:
        return {"WWW-Authenticate": f'Basic realm="{self.realm}"'}

    async def fail(self, message: str = "authentication required") -> RegistryError:
        if self.fail_delay > 0:
            await asyncio.sleep(self.fail_delay)
        return Unauthorized(message, headers=self.challenge())

    async def identify(self, headers: Any, anonymous: bool) -> Identity:
        """The identity of a request; `anonymous`: whether one without credentials is let in."""
        values = _authorization(headers)
        if len(values) > 1:
            raise Unauthorized("more than one Authorization header", headers=self.challenge())
        header = values[0].strip() if values else ""
        if header.lower() == _EMPTY_BASIC:
            header = ""
        der = peer_certificate()
        certificate = x509.load_der_x509_certificate(der) if der is not None else None
        from_member = certificate is not None and issued_directly_by(certificate, self.cluster_authorities)
        vouched = headers.get(IDENTITY_HEADER) if from_member else None
        if vouched:
            return self._vouched(vouched)
        if header and self.basic:
            return await self._basic(header)
        if self.mtls is not None and certificate is not None and not from_member:
            name = certificate_identity(certificate, self.mtls)
            if name is None:
                raise await self.fail("the client certificate names no user (http.auth.mtls identityAttributes)")
            return self._certificate(name)
        if not self.enabled or anonymous:
            return ANONYMOUS
        raise await self.fail()

    def _vouched(self, value: str) -> Identity:
        try:
            name = vouched_name(value)
        except UnicodeDecodeError:
            name = ""
        if not name:
            # Only a member sends it, so this is a bug or a member of another version: refuse, never widen.
            raise Unauthorized(f"the cluster member sent an invalid {IDENTITY_HEADER}", headers=self.challenge())
        return self._certificate(name)

    def _certificate(self, name: str) -> Identity:
        identity = self.make_identity(name, ())
        return Identity(identity.name, identity.groups, certificate=True)

    async def _basic(self, header: str) -> Identity:
        user, password = parse_basic(header, self.challenge())
        if self.htpasswd is not None and await self.htpasswd.verify(user, password):
            return self.make_identity(user, ())
        if self.ldap is not None and password:
            groups = await self.ldap.verify(user, password)
            if groups is not None:
                return self.make_identity(user, groups)
        raise await self.fail("invalid username or password")

    def close(self) -> None:
        if self.htpasswd is not None:
            self.htpasswd.close()
        close = getattr(self.ldap, "close", None)
        if close is not None:
            close()
