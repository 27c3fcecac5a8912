"""zot's `http.auth.mtls` (pkg/api/config/config.go, v2.1.20: MTLSConfig): which part of a client
certificate names the user, once `http.tls.cacert` makes the registry ask for one.

zot tries `identityAttributes` in order (default: CommonName) and takes the first that the
certificate has; the names are case-insensitive, with zot's aliases (cn, dn, uri/url, dns,
rfc822name). zot only finds out at request time that a name is not one of them (every login then
fails); here that is a config error, as is a `uriSanPattern` that does not compile or has no
capture group (zot returns the first group: without one, every URI identity fails). As zot, a
SAN index (uriSanIndex, dnsSanIndex, emailSanIndex) is refused unless URI is an attribute.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from .base import _Model
from .messages import fail, show

# zot's extractIdentityFromCertificate: each accepted spelling (lower case) -> the attribute.
IDENTITY_ATTRIBUTES: dict[str, str] = {
    "commonname": "CommonName",
    "cn": "CommonName",
    "subject": "Subject",
    "dn": "Subject",
    "uri": "URI",
    "url": "URI",
    "dnsname": "DNSName",
    "dns": "DNSName",
    "email": "Email",
    "rfc822name": "Email",
}


class MTLSConfig(_Model):
    identity_attributes: list[str] = Field(default_factory=lambda: ["CommonName"], alias="identityAttributes")
    uri_san_pattern: str = Field("", alias="uriSanPattern")
    uri_san_index: int = Field(0, alias="uriSanIndex", ge=0)
    dns_san_index: int = Field(0, alias="dnsSanIndex", ge=0)
    email_san_index: int = Field(0, alias="emailSanIndex", ge=0)

    @field_validator("identity_attributes")
    @classmethod
    def _attributes(cls, names: list[str]) -> list[str]:
        if not names:
            return ["CommonName"]  # zot: an empty list is the default
        canonical = []
        for name in names:
            found = IDENTITY_ATTRIBUTES.get(name.strip().lower())
            if found is None:
                raise fail(
                    f"unknown identity attribute {show(name)}: "
                    "the attributes are CommonName, Subject, Email, URI and DNSName"
                )
            canonical.append(found)
        return canonical

    @field_validator("uri_san_pattern")
    @classmethod
    def _pattern(cls, pattern: str) -> str:
        if not pattern:
            return pattern
        try:
            compiled = re.compile(pattern)
        except re.error as err:
            raise fail(f"{show(pattern)} is not a regular expression: {err}") from None
        if compiled.groups < 1:
            raise fail(
                f"{show(pattern)} has no capture group: the identity is the first group's match, "
                'e.g. "spiffe://example.org/workload/(.*)"'
            )
        return pattern

    @model_validator(mode="after")
    def _indexes_need_uri(self) -> MTLSConfig:
        # zot's validateMTLS (pkg/cli/server/root.go): every SAN index needs URI among the
        # attributes, the DNS and email ones too; zot refuses to start otherwise, and so do we.
        if "URI" not in self.identity_attributes:
            for key, index in (
                ("uriSanIndex", self.uri_san_index),
                ("dnsSanIndex", self.dns_san_index),
                ("emailSanIndex", self.email_san_index),
            ):
                if index:
                    raise fail(
                        f"{key} is only supported with URI among identityAttributes (zot 2.1.20 refuses "
                        'it otherwise): add "URI", e.g. ["URI", "DNSName"]'
                    )
        return self

    def uri_identity(self, uri: str) -> str | None:
        """The identity in a URI SAN: the pattern's first group (unanchored, as Go's FindStringSubmatch), or the URI."""
        if not self.uri_san_pattern:
            return uri
        found = re.search(self.uri_san_pattern, uri)
        return found.group(1) if found is not None and found.group(1) else None

    @classmethod
    def default(cls) -> MTLSConfig:
        return cls.model_validate({})
