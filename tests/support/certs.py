"""Throwaway CA and server certificates for TLS tests, written to files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zot_registry.certs import make_ca, make_server_cert


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
