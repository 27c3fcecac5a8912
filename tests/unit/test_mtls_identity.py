"""Which user a client certificate names (registry/authn/certificates.py), as zot's
extractMTLSIdentity does for http.auth.mtls, with zot's published mTLS examples; and the config's
rules for http.tls.cacert and http.auth.mtls."""

from __future__ import annotations

import datetime
import ipaddress
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from zot_registry.authn.certificates import certificate_identity, issued_directly_by
from zot_registry.certs import issue_certificate, make_ca
from zot_registry.config import load_config
from zot_registry.config.mtls import MTLSConfig
from zot_registry.preflight import check_files

from tests.support.certs import make_certs
from tests.support.config_cases import error_of, with_
from tests.support.paths import ZOT_EXAMPLES

CA = make_ca("users CA")


def certificate(common_name: str, *sans: x509.GeneralName) -> x509.Certificate:
    made = issue_certificate(CA, common_name, 1, [ExtendedKeyUsageOID.CLIENT_AUTH], list(sans))
    return x509.load_pem_x509_certificate(made.cert_pem)


def mtls(**settings: object) -> MTLSConfig:
    return MTLSConfig.model_validate(settings)


SPIFFE = x509.UniformResourceIdentifier("spiffe://example.org/workload/builder")
OTHER_URI = x509.UniformResourceIdentifier("https://example.org/ci")
DNS = [x509.DNSName("first.example.org"), x509.DNSName("second.example.org")]
EMAIL = x509.RFC822Name("carol@example.org")


def test_the_common_name_by_default() -> None:
    assert certificate_identity(certificate("alice"), MTLSConfig.default()) == "alice"


@pytest.mark.parametrize(
    ("settings", "sans", "identity"),
    [
        ({"identityAttributes": ["Subject"]}, [], "CN=alice"),
        ({"identityAttributes": ["dn"]}, [], "CN=alice"),
        ({"identityAttributes": ["URI"]}, [SPIFFE], "spiffe://example.org/workload/builder"),
        (
            {"identityAttributes": ["uri"], "uriSanPattern": "spiffe://example.org/workload/(.*)"},
            [SPIFFE],
            "builder",
        ),
        ({"identityAttributes": ["URI"], "uriSanIndex": 1}, [SPIFFE, OTHER_URI], "https://example.org/ci"),
        # zot allows SAN indexes only with URI among the attributes; URI first, DNS the fallback.
        ({"identityAttributes": ["URI", "DNSName"], "dnsSanIndex": 1}, DNS, "second.example.org"),
        ({"identityAttributes": ["DNSName"]}, DNS, "first.example.org"),
        ({"identityAttributes": ["Email"]}, [EMAIL], "carol@example.org"),
        # The first attribute the certificate has wins; the rest are the fallbacks.
        ({"identityAttributes": ["Email", "CommonName"]}, [], "alice"),
        ({"identityAttributes": ["URI", "CommonName"], "uriSanPattern": "spiffe://other.org/(.*)"}, [SPIFFE], "alice"),
        # Nothing to go by: no identity (a 401), never an empty user name.
        ({"identityAttributes": ["Email"]}, [], None),
        ({"identityAttributes": ["uri", "DNSName"], "dnsSanIndex": 2}, DNS, None),
        ({"identityAttributes": ["URI"]}, [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))], None),
    ],
)
def test_identity_attributes(settings: dict[str, object], sans: list[x509.GeneralName], identity: str | None) -> None:
    assert certificate_identity(certificate("alice", *sans), mtls(**settings)) == identity


def test_a_subject_reads_as_gos_pkix_name_string() -> None:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example, Inc."),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, "42"),
            x509.NameAttribute(NameOID.COMMON_NAME, "build bot"),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@b.c"),
        ]
    )
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    built = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    # Go's pkix.Name.String(): its fields in its own order (C, ST, L, STREET, POSTALCODE, O, OU, CN,
    # SERIALNUMBER) reversed, commas escaped, and what it does not parse (emailAddress) last, as the
    # OID and the hex of a UTF8String.
    expected = "SERIALNUMBER=42,CN=build bot,O=Example\\, Inc.,C=DE,1.2.840.113549.1.9.1=#0c056140622e63"
    assert certificate_identity(built, mtls(identityAttributes=["Subject"])) == expected


def test_zots_published_mtls_examples_mean_the_same(tmp_path: Path) -> None:
    plain = load_config(ZOT_EXAMPLES / "config-mtls.json").config
    spiffe = load_config(ZOT_EXAMPLES / "config-mtls-spiffe.json").config
    assert plain.http.tls is not None and plain.http.tls.cacert == "test/data/ca.crt"
    assert plain.http.auth is not None and plain.http.auth.mtls is not None
    assert spiffe.http.auth is not None and spiffe.http.auth.mtls is not None
    workload = certificate("testuser-cn", x509.UniformResourceIdentifier("spiffe://example.org/workload/testuser"))
    assert certificate_identity(workload, plain.http.auth.mtls) == "testuser-cn"
    assert certificate_identity(workload, spiffe.http.auth.mtls) == "testuser"
    # The spiffe example falls back to the CN of a certificate without a SPIFFE ID.
    assert certificate_identity(certificate("clientuser"), spiffe.http.auth.mtls) == "clientuser"


def test_issued_directly_by_tells_the_cluster_ca_from_another() -> None:
    other = make_ca("users CA")  # the same name, another key
    ours = certificate("member-0")
    assert issued_directly_by(ours, x509.load_pem_x509_certificates(CA.cert_pem))
    assert not issued_directly_by(ours, x509.load_pem_x509_certificates(other.cert_pem))


@pytest.mark.parametrize(
    ("mtls_settings", "message"),
    [
        ({"identityAttributes": ["CN", "Fingerprint"]}, 'unknown identity attribute "Fingerprint"'),
        ({"uriSanPattern": "spiffe://(unclosed"}, "is not a regular expression"),
        ({"uriSanPattern": "spiffe://example.org/.*"}, "has no capture group"),
        ({"dnsSanIndex": -1}, "dnsSanIndex"),
        ({"identityAttributes": ["DNSName"], "dnsSanIndex": 1}, "dnsSanIndex is only supported with URI"),
        ({"identityAttributes": ["Email"], "emailSanIndex": 1}, "emailSanIndex is only supported with URI"),
    ],
)
def test_bad_mtls_settings_are_errors(mtls_settings: dict[str, object], message: str) -> None:
    tls = {"cert": "/c", "key": "/k", "cacert": "/ca"}
    assert message in error_of(with_(http={"tls": tls, "auth": {"mtls": mtls_settings}}))


def test_access_control_with_only_client_certificates_has_a_login_method() -> None:
    tls = {"cert": "/c", "key": "/k", "cacert": "/ca"}
    policies = {"repositories": {"**": {"policies": [{"users": ["alice"], "actions": ["read"]}]}}}
    assert "access control needs" not in error_of(with_(http={"tls": tls, "accessControl": policies, "port": "0"}))


def test_users_certificates_may_not_come_from_the_cluster_ca(tmp_path: Path) -> None:
    # A member believes a certificate of the cluster CA vouching for a user: were users' certificates
    # issued by it too, any user could vouch for any name.
    certs = make_certs(tmp_path / "tls", ["127.0.0.1"], ca_name="zot cluster CA")
    users = tmp_path / "users-ca.crt"
    users.write_bytes(make_ca("users CA").cert_pem)
    tls = {"cert": str(certs.cert), "key": str(certs.key)}
    cluster = {"members": ["127.0.0.1:5000"], "hashKey": "loremipsumdolors", "tls": {"cacert": str(certs.ca)}}

    def problems(cacert: Path) -> list[str]:
        config = {"storage": {"rootDirectory": str(tmp_path / "root")}, "cluster": cluster}
        config["http"] = {"address": "127.0.0.1", "port": "5000", "tls": {**tls, "cacert": str(cacert)}}
        path = tmp_path / "config.json"
        path.write_text(json.dumps(config))
        return [message for _, message in check_files(load_config(path)).errors]

    assert problems(users) == []
    assert problems(certs.ca) == [
        f"{certs.ca}: holds the cluster CA (CN=zot cluster CA), which issues the members' certificates: "
        "users' client certificates need a CA of their own"
    ]
