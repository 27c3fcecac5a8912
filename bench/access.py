"""How the benchmark's clients reach a registry in each mode: plain HTTP, TLS, or TLS with htpasswd
(what the operator deploys). One certificate authority and one user per run directory; every
client (curl, wrk, httpx) is given the same trust and credentials.

The htpasswd entry is bcrypt at cost 5, what `htpasswd -B` writes by default: each registry checks it
as it would a user's file (zot and distribution hash every request's password; ours caches a
verified credential).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import bcrypt
from zot_registry.certs import make_ca, make_server_cert

Mode = Literal["plain", "tls", "tls-htpasswd"]
MODES: tuple[Mode, ...] = ("plain", "tls", "tls-htpasswd")
MODE_TITLES = {"plain": "plain HTTP", "tls": "TLS", "tls-htpasswd": "TLS + htpasswd"}
USER, PASSWORD = "bench", "bench-password"
BCRYPT_COST = 5


@dataclass(frozen=True)
class Access:
    mode: Mode
    ca: Path | None = None  # the CA that signed the server's certificate (TLS modes)
    cert: Path | None = None
    key: Path | None = None
    htpasswd: Path | None = None

    @property
    def scheme(self) -> str:
        return "http" if self.mode == "plain" else "https"

    @property
    def credentials(self) -> tuple[str, str] | None:
        return (USER, PASSWORD) if self.htpasswd is not None else None

    def headers(self) -> dict[str, str]:
        """Request headers every client sends (Basic credentials, sent up front as clients do)."""
        if self.credentials is None:
            return {}
        token = base64.b64encode(":".join(self.credentials).encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def curl_args(self) -> list[str]:
        args = ["--cacert", str(self.ca)] if self.ca is not None else []
        if self.credentials is not None:
            args += ["-u", ":".join(self.credentials)]
        return args

    def httpx_args(self) -> dict[str, Any]:
        return {"verify": str(self.ca) if self.ca is not None else True, "auth": self.credentials}


PLAIN = Access("plain")


def prepare(mode: Mode, folder: Path) -> Access:
    """The files `mode` needs, written to `folder`: a CA and a certificate for 127.0.0.1, an htpasswd."""
    if mode == "plain":
        return PLAIN
    folder.mkdir(parents=True, exist_ok=True)
    ca = make_ca("zot-bench CA")
    server = make_server_cert(ca, ["127.0.0.1"])
    paths = {name: folder / name for name in ("ca.crt", "server.crt", "server.key")}
    paths["ca.crt"].write_bytes(ca.cert_pem)
    paths["server.crt"].write_bytes(server.cert_pem)
    paths["server.key"].write_bytes(server.key_pem)
    htpasswd = None
    if mode == "tls-htpasswd":
        htpasswd = folder / "htpasswd"
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=BCRYPT_COST)).decode()
        htpasswd.write_text(f"{USER}:{hashed}\n")
    return Access(mode, paths["ca.crt"], paths["server.crt"], paths["server.key"], htpasswd)
