"""Client certificates: the user a certificate names (zot's extractMTLSIdentity, pkg/api/authn.go
v2.1.20) and whether a certificate was issued by the cluster's CA.

The TLS handshake has verified the chain already (hypercorn's trust store, server.py); what is
left is reading the name. The attributes, tried in order, the first present wins:

- CommonName: the subject's CN;
- Subject: the whole subject as Go's pkix.Name.String() writes it (go_subject below), so that a
  policy names the same subject here as for zot (`CN=alice,O=Example,C=DE`);
- URI, DNSName, Email: the SAN of that kind at the configured index, a URI through uriSanPattern.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from ..config.mtls import MTLSConfig

# Go's pkix: the attributes it parses into fields, in the order ToRDNSequence writes them, with
# their names in String(); every other attribute is written as its OID and the hex of its DER.
_GO_FIELDS: tuple[tuple[x509.ObjectIdentifier, str], ...] = (
    (NameOID.COUNTRY_NAME, "C"),
    (NameOID.STATE_OR_PROVINCE_NAME, "ST"),
    (NameOID.LOCALITY_NAME, "L"),
    (NameOID.STREET_ADDRESS, "STREET"),
    (NameOID.POSTAL_CODE, "POSTALCODE"),
    (NameOID.ORGANIZATION_NAME, "O"),
    (NameOID.ORGANIZATIONAL_UNIT_NAME, "OU"),
    (NameOID.COMMON_NAME, "CN"),
    (NameOID.SERIAL_NUMBER, "SERIALNUMBER"),
)
_SINGLE = {NameOID.COMMON_NAME, NameOID.SERIAL_NUMBER}  # Go keeps one value of these: the last
_PRINTABLE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?")


def _go_escape(value: str) -> str:
    """Go's RDNSequence.String escaping (RFC 4514-like)."""
    out = []
    for index, char in enumerate(value):
        escape = char in ',+"\\<>;' or (char == " " and index in (0, len(value) - 1)) or (char == "#" and index == 0)
        out.append("\\" + char if escape else char)
    return "".join(out)


def _go_der_hex(value: str) -> str:
    """`#` and the hex of Go's asn1.Marshal of a string: PrintableString when it can be, else UTF8String."""
    tag = 0x13 if set(value) <= _PRINTABLE else 0x0C
    body = value.encode()
    size = len(body)
    octets = (size.bit_length() + 7) // 8
    length = bytes([size]) if size < 0x80 else bytes([0x80 | octets]) + size.to_bytes(octets, "big")
    return "#" + (bytes([tag]) + length + body).hex()


def go_subject(name: x509.Name) -> str:
    """`name` as Go's pkix.Name.String() (crypto/x509/pkix, FillFromRDNSequence then String): the
    attributes Go does not parse first (so last in the text), then its fields in its own order (one
    RDN per type, several values joined by `+`), all reversed."""
    fields: dict[x509.ObjectIdentifier, list[str]] = {oid: [] for oid, _ in _GO_FIELDS}
    others: list[str] = []
    for attribute in name:
        value = attribute.value if isinstance(attribute.value, str) else attribute.value.decode("latin-1")
        if attribute.oid in fields:
            fields[attribute.oid] = [value] if attribute.oid in _SINGLE else [*fields[attribute.oid], value]
        else:
            others.append(f"{attribute.oid.dotted_string}={_go_der_hex(value)}")
    rdns = list(others)
    for oid, label in _GO_FIELDS:
        if fields[oid]:
            rdns.append("+".join(f"{label}={_go_escape(value)}" for value in fields[oid]))
    return ",".join(reversed(rdns))


def load_authorities(path: str | Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(Path(path).read_bytes())


def issued_directly_by(certificate: x509.Certificate, authorities: Iterable[x509.Certificate]) -> bool:
    """Whether one of `authorities` signed `certificate` itself (not through an intermediate)."""
    for authority in authorities:
        try:
            certificate.verify_directly_issued_by(authority)
            return True
        except (ValueError, TypeError, InvalidSignature):
            continue
    return False


_SanKind = type[x509.DNSName] | type[x509.UniformResourceIdentifier] | type[x509.RFC822Name]


def _san(certificate: x509.Certificate, kind: _SanKind, index: int) -> str | None:
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    values = names.get_values_for_type(kind)
    return str(values[index]) if index < len(values) else None


def _attribute(certificate: x509.Certificate, attribute: str, mtls: MTLSConfig) -> str | None:
    if attribute == "CommonName":
        names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value) if names and names[0].value else None
    if attribute == "Subject":
        return go_subject(certificate.subject)
    if attribute == "URI":
        uri = _san(certificate, x509.UniformResourceIdentifier, mtls.uri_san_index)
        return mtls.uri_identity(uri) if uri is not None else None
    if attribute == "DNSName":
        return _san(certificate, x509.DNSName, mtls.dns_san_index)
    return _san(certificate, x509.RFC822Name, mtls.email_san_index)  # Email


def certificate_identity(certificate: x509.Certificate, mtls: MTLSConfig) -> str | None:
    """The user `certificate` names by the first of mtls.identityAttributes it has; None: none of them."""
    for attribute in mtls.identity_attributes:
        identity = _attribute(certificate, attribute, mtls)
        if identity:
            return identity
    return None
