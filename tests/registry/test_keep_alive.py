"""Idle keep-alive connections: closed after the keep-alive timeout, never while in use, and at once
when the registry stops (registry/idle_timer.py)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.registry import RegistryProcess, registry_config

KEEP_ALIVE = 1.0
GET_BASE = b"GET /v2/ HTTP/1.1\r\nHost: registry\r\n\r\n"


def serve(tmp_path: Path, keep_alive: float) -> Iterator[RegistryProcess]:
    registry = RegistryProcess(
        tmp_path / "config.json",
        registry_config(tmp_path / "root", free_port()),
        tmp_path / "registry.log",
        workers=1,
        env={"ZOT_HTTP_KEEP_ALIVE_TIMEOUT": str(keep_alive)},
    )
    registry.start()
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture
def short_keep_alive(tmp_path: Path) -> Iterator[RegistryProcess]:
    yield from serve(tmp_path, KEEP_ALIVE)


@pytest.fixture
def long_keep_alive(tmp_path: Path) -> Iterator[RegistryProcess]:
    yield from serve(tmp_path, 300.0)


def ask(sock: socket.socket) -> bytes:
    """One GET /v2/ on an open connection; its whole answer (the body is `{}`, Content-Length 2)."""
    sock.sendall(GET_BASE)
    answer = b""
    while not answer.endswith(b"\r\n\r\n{}"):
        chunk = sock.recv(4096)
        assert chunk, f"the connection closed in the middle of an answer: {answer!r}"
        answer += chunk
    return answer


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(short_keep_alive: RegistryProcess) -> None:
    with socket.create_connection((short_keep_alive.host, short_keep_alive.port), timeout=10) as sock:
        assert ask(sock).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert closed_by_server(sock)
        assert KEEP_ALIVE * 0.9 <= time.monotonic() - started < 8


def test_a_connection_in_use_is_not_closed_however_long_it_lives(short_keep_alive: RegistryProcess) -> None:
    with socket.create_connection((short_keep_alive.host, short_keep_alive.port), timeout=10) as sock:
        for _ in range(8):  # 4 s on one connection, four times the keep-alive timeout, never idle that long
            assert ask(sock).startswith(b"HTTP/1.1 200")
            time.sleep(KEEP_ALIVE / 2)


def test_a_new_connection_that_sends_nothing_is_closed_after_the_keep_alive_timeout(
    short_keep_alive: RegistryProcess,
) -> None:
    with socket.create_connection((short_keep_alive.host, short_keep_alive.port), timeout=10) as sock:
        assert closed_by_server(sock)


def test_stopping_the_registry_closes_idle_connections_at_once(long_keep_alive: RegistryProcess) -> None:
    # Idle connections must not hold the stop for the keep-alive timeout (300 s here), nor for
    # hypercorn's graceful timeout (30 s).
    sock = socket.create_connection((long_keep_alive.host, long_keep_alive.port), timeout=10)
    with sock:
        assert ask(sock).startswith(b"HTTP/1.1 200")
        process = long_keep_alive.process
        assert process is not None
        started = time.monotonic()
        process.terminate()
        assert closed_by_server(sock)
        process.wait(timeout=25)
        assert time.monotonic() - started < 10, "the idle connection held the registry's stop"
