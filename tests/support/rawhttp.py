"""HTTP/1.1 over a raw socket, for requests no client library sends (both Transfer-Encoding and
Content-Length, obs-fold, non-ASCII numbers) and for answers read while the socket is watched."""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
    # Whatever came after the first answer before the server closed (a smuggled second answer).
    extra: bytes = b""
    closed: bool = False
    elapsed: float = 0.0
    raw_head: bytes = field(default=b"", repr=False)

    def code(self) -> str:
        return oci_code(self.as_httpx("GET", "http://x/"))

    def as_httpx(self, method: str, url: str) -> httpx.Response:
        return httpx.Response(
            self.status, headers=list(self.headers.items()), content=self.body, request=httpx.Request(method, url)
        )


def oci_code(response: httpx.Response) -> str:
    try:
        return str(response.json()["errors"][0]["code"])
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


def connect(
    host: str, port: int, tls: ssl.SSLContext | None = None, timeout: float = 10.0, source: str | None = None
) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout, source_address=(source, 0) if source else None)
    if tls is not None:
        return tls.wrap_socket(sock, server_hostname=host)
    return sock


def read_answer(sock: socket.socket, timeout: float = 10.0, until_close: bool = False) -> RawAnswer:
    """One response (head and a Content-Length body); with until_close, also what follows until EOF."""
    started = time.monotonic()
    deadline = started + timeout
    data = b""
    closed = False

    def more() -> bool:
        nonlocal data, closed
        remaining = deadline - time.monotonic()
        if remaining <= 0 or closed:
            return False
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return False
        except (ConnectionError, ssl.SSLError, OSError):
            closed = True
            return False
        if not chunk:
            closed = True
            return False
        data += chunk
        return True

    while b"\r\n\r\n" not in data:
        if not more():
            raise AssertionError(f"no complete answer within {timeout}s: {data[:300]!r}")
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        key = key.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        if not more():
            break
        rest = data.partition(b"\r\n\r\n")[2]
    body, extra = rest[:length], rest[length:]
    if until_close:
        while more():
            pass
        extra = data.partition(b"\r\n\r\n")[2][length:]
    return RawAnswer(status, headers, body, extra, closed, time.monotonic() - started, head)


def exchange(
    host: str,
    port: int,
    data: bytes,
    tls: ssl.SSLContext | None = None,
    timeout: float = 10.0,
    until_close: bool = False,
) -> RawAnswer:
    with connect(host, port, tls, timeout) as sock:
        sock.sendall(data)
        return read_answer(sock, timeout, until_close)


def request_bytes(
    method: str, target: str, headers: list[tuple[str, str]] | None = None, body: bytes = b"", host: str = "registry"
) -> bytes:
    """A request exactly as written: no header is added but Host (and none is fixed)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers or [])]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body
