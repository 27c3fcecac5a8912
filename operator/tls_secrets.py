"""The TLS material the operator generates once and keeps: when the CA and the server certificate must be
(re)written. Pure: given what the Secrets hold, what to write; `secret_steps` does the I/O.

(Named so as not to shadow the standard library's `secrets`; the hash key is made by
`zot_registry.cluster.hashing.new_hash_key`.)
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from zot_registry.certs import KeyPair, make_ca, make_server_cert

RENEW_BEFORE = datetime.timedelta(days=30)
SERVER_DAYS = 365
CA_DAYS = 3650

__all__ = ["TLSMaterial", "needs_new_ca", "needs_new_server_cert", "plan_tls"]


@dataclass(frozen=True)
class TLSMaterial:
    ca: KeyPair
    server: KeyPair
    ca_changed: bool
    server_changed: bool


def _expires_soon(cert_pem: bytes, now: datetime.datetime) -> bool:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.not_valid_after_utc - now < RENEW_BEFORE


def needs_new_ca(ca: dict[str, bytes], now: datetime.datetime) -> bool:
    if "ca.crt" not in ca or "ca.key" not in ca:
        return True
    try:
        return _expires_soon(ca["ca.crt"], now)
    except ValueError:
        return True


def needs_new_server_cert(server: dict[str, bytes], ca_pem: bytes, hosts: list[str], now: datetime.datetime) -> bool:
    """Missing, expiring, issued by another CA, or not covering every host: write a new one."""
    if "tls.crt" not in server or "tls.key" not in server or server.get("ca.crt") != ca_pem:
        return True
    try:
        cert = x509.load_pem_x509_certificate(server["tls.crt"])
        issuer = x509.load_pem_x509_certificate(ca_pem)
    except ValueError:
        return True
    if cert.issuer != issuer.subject or _expires_soon(server["tls.crt"], now):
        return True
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return True
    names = set(sans.get_values_for_type(x509.DNSName)) | {str(a) for a in sans.get_values_for_type(x509.IPAddress)}
    return not set(hosts) <= names


def plan_tls(
    ca: dict[str, bytes], server: dict[str, bytes], hosts: list[str], now: datetime.datetime | None = None
) -> TLSMaterial:
    now = now or datetime.datetime.now(datetime.UTC)
    ca_changed = needs_new_ca(ca, now)
    ca_pair = make_ca("zot-operator cluster CA", days=CA_DAYS) if ca_changed else KeyPair(ca["ca.crt"], ca["ca.key"])
    server_changed = ca_changed or needs_new_server_cert(server, ca_pair.cert_pem, hosts, now)
    server_pair = (
        make_server_cert(ca_pair, hosts, days=SERVER_DAYS)
        if server_changed
        else KeyPair(server["tls.crt"], server["tls.key"])
    )
    return TLSMaterial(ca_pair, server_pair, ca_changed, server_changed)
