"""Throwaway CA and server certificates for TLS tests, written to files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from zot_registry.certs import KeyPair, issue_certificate, make_ca, make_server_cert


@dataclass
class CertFiles:
    ca: Path
    cert: Path
    key: Path


def make_certs(folder: Path, hosts: list[str], ca_name: str = "test CA") -> CertFiles:
    folder.mkdir(parents=True, exist_ok=True)
    ca = make_ca(ca_name)
    server = make_server_cert(ca, hosts)
    files = CertFiles(folder / "ca.crt", folder / "server.crt", folder / "server.key")
    files.ca.write_bytes(ca.cert_pem)
    files.cert.write_bytes(server.cert_pem)
    files.key.write_bytes(server.key_pem)
    return files


@dataclass
class ClientCert:
    cert: Path
    key: Path


def make_user_cert(
    folder: Path, ca: KeyPair, name: str, common_name: str | None = None, sans: list[x509.GeneralName] | None = None
) -> ClientCert:
    """A client certificate of `ca` (clientAuth) for a user, with CN `common_name` (`name` by default)
    and `sans`, written to folder/name.crt and name.key."""
    folder.mkdir(parents=True, exist_ok=True)
    made = issue_certificate(ca, common_name or name, 1, [ExtendedKeyUsageOID.CLIENT_AUTH], sans or [])
    files = ClientCert(folder / f"{name}.crt", folder / f"{name}.key")
    files.cert.write_bytes(made.cert_pem)
    files.key.write_bytes(made.key_pem)
    return files
