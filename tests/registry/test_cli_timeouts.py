"""`zot-registry serve` with http.readTimeout and http.writeTimeout: progress bounds, not deadlines."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.images import sha256
from tests.support.ports import free_port
from tests.support.registry import RegistryProcess, registry_config

# ---------------------------------------------------------------------------------------------
# http.readTimeout and http.writeTimeout: progress bounds, not deadlines (see registry/hypercorn_patches.py)
# ---------------------------------------------------------------------------------------------

BIG = 16 << 20  # more than the socket buffers of both ends hold, so the server must wait for the client


def serve_with(tmp_path: Path, name: str, **http: Any) -> Iterator[RegistryProcess]:
    folder = tmp_path / name
    folder.mkdir()
    registry = RegistryProcess(
        folder / "config.json",
        registry_config(folder / "root", free_port(), **http),
        folder / "registry.log",
        workers=1,
    )
    registry.start()
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture
def read_bounded(tmp_path: Path) -> Iterator[RegistryProcess]:
    yield from serve_with(tmp_path, "read", readTimeout="1s")


@pytest.fixture
def write_bounded(tmp_path: Path) -> Iterator[RegistryProcess]:
    yield from serve_with(tmp_path, "write", writeTimeout="1s")


def connect(registry: RegistryProcess, receive_buffer: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(15)
    sock.connect((registry.host, registry.port))
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def upload_head(blob: bytes) -> bytes:
    return (
        f"POST /v2/slow/blobs/uploads/?digest={sha256(blob)} HTTP/1.1\r\nHost: registry\r\n"
        f"Content-Length: {len(blob)}\r\nConnection: close\r\n\r\n"
    ).encode()


def push_big_blob(registry: RegistryProcess) -> bytes:
    blob = os.urandom(BIG)
    with httpx.Client(base_url=registry.url, timeout=60) as client:
        response = client.post("/v2/big/blobs/uploads/", params={"digest": sha256(blob)}, content=blob)
        assert response.status_code == 201, response.text
    return blob


def test_read_timeout_cuts_a_stalled_upload(read_bounded: RegistryProcess) -> None:
    blob = os.urandom(1000)
    with connect(read_bounded) as sock:
        sock.sendall(upload_head(blob) + blob[:10])
        started = time.monotonic()
        read_all(sock)  # the server closes the connection
        assert time.monotonic() - started < 8
    with httpx.Client(base_url=read_bounded.url) as client:
        assert client.head(f"/v2/slow/blobs/{sha256(blob)}").status_code == 404


def test_read_timeout_lets_a_slow_but_steady_upload_through(read_bounded: RegistryProcess) -> None:
    blob = os.urandom(1000)
    with connect(read_bounded) as sock:
        sock.sendall(upload_head(blob))
        for offset in range(0, len(blob), 100):  # 3 s in all, longer than readTimeout, never idle for it
            time.sleep(0.3)
            sock.sendall(blob[offset : offset + 100])
        assert read_all(sock).startswith(b"HTTP/1.1 201")


def test_read_timeout_does_not_cut_a_long_download(read_bounded: RegistryProcess) -> None:
    # The client sends nothing while it downloads; hypercorn's own read_timeout closed the
    # connection after that long, in the middle of the answer.
    blob = push_big_blob(read_bounded)
    with connect(read_bounded, receive_buffer=64 << 10) as sock:
        sock.sendall(f"GET /v2/big/blobs/{sha256(blob)} HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n".encode())
        time.sleep(2.5)
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer.endswith(blob)


def test_write_timeout_cuts_a_client_that_stops_reading(write_bounded: RegistryProcess) -> None:
    blob = push_big_blob(write_bounded)
    with connect(write_bounded, receive_buffer=64 << 10) as sock:
        sock.sendall(f"GET /v2/big/blobs/{sha256(blob)} HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n".encode())
        time.sleep(4)
        try:
            answer = read_all(sock)
        except ConnectionResetError:
            answer = b""
    assert len(answer) < len(blob)
    with httpx.Client(base_url=write_bounded.url, timeout=60) as client:  # a reading client gets it all
        assert client.get(f"/v2/big/blobs/{sha256(blob)}").content == blob
