"""TLS material is generated once and renewed only when it must be."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from zot_operator.tls_secrets import plan_tls
from zot_registry.certs import make_ca, make_client_cert, make_server_cert

HOSTS = ["*.demo-members.default.svc.cluster.local", "demo.default.svc", "localhost", "127.0.0.1"]


def test_first_plan_creates_everything_and_second_keeps_it() -> None:
    first = plan_tls({}, {}, HOSTS)
    assert first.ca_changed and first.server_changed
    ca = {"ca.crt": first.ca.cert_pem, "ca.key": first.ca.key_pem}
    server = {"tls.crt": first.server.cert_pem, "tls.key": first.server.key_pem, "ca.crt": first.ca.cert_pem}
    second = plan_tls(ca, server, HOSTS)
    assert not second.ca_changed and not second.server_changed
    assert second.server.cert_pem == first.server.cert_pem


def test_renewal_when_expiring_or_not_covering_or_foreign() -> None:
    ca_pair = make_ca()
    ca = {"ca.crt": ca_pair.cert_pem, "ca.key": ca_pair.key_pem}
    server_pair = make_server_cert(ca_pair, HOSTS)
    server = {"tls.crt": server_pair.cert_pem, "tls.key": server_pair.key_pem, "ca.crt": ca_pair.cert_pem}
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=340)
    assert plan_tls(ca, server, HOSTS, now=later).server_changed
    assert not plan_tls(ca, server, HOSTS, now=later).ca_changed
    assert plan_tls(ca, server, [*HOSTS, "new.example"]).server_changed
    foreign = make_ca("someone else")
    assert plan_tls({"ca.crt": foreign.cert_pem, "ca.key": foreign.key_pem}, server, HOSTS).server_changed


def test_a_client_certificate_is_short_lived_signed_by_the_ca_and_for_clients_only() -> None:
    ca = make_ca()
    pair = make_client_cert(ca, "zot-operator", days=1)
    cert = x509.load_pem_x509_certificate(pair.cert_pem)
    issuer = x509.load_pem_x509_certificate(ca.cert_pem)
    cert.verify_directly_issued_by(issuer)
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= datetime.timedelta(days=1, minutes=5)
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
