"""The storage tests' peers (versitygw, SeaweedFS, dynalite, redis-server): where they listen, their
credentials, and each one run as a process until it answers (bounded), then stopped.

Installed by hack/install-storage-peers.sh (versitygw, dynalite) and hack/install-apt.sh (redis-server).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

# Credentials of the S3 gateway's root user; versitygw checks SigV4 signatures with them.
S3_ACCESS_KEY = "zot-test-access"
S3_SECRET_KEY = "zot-test-secret-key"
STARTUP_SECONDS = 20.0
# weed mini runs master, volume, filer, S3, WebDAV and admin servers, each with an HTTP and a gRPC port.
SEAWEEDFS_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port.grpc",
    "s3.port.iceberg",
    "webdav.port",
    "admin.port",
    "admin.port.grpc",
)


@dataclass(frozen=True)
class Peer:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def wait_listening(proc: subprocess.Popen[bytes], host: str, port: int, log: Path) -> None:
    """Polls until the port accepts connections; fails with the peer's log if it dies or never does."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args!r} exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(
        f"{proc.args!r} not listening on {host}:{port} after {STARTUP_SECONDS}s:\n{log.read_text(errors='replace')}"
    )


def _run(
    args: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def answers_s3(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Waits until the gateway refuses an unsigned request (403): listening and checking signatures."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args!r} exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(url, timeout=1).status_code == 403:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"no S3 answer at {url} after {STARTUP_SECONDS}s:\n{log.read_text(errors='replace')[-3000:]}")


@contextlib.contextmanager
def serving(
    args: list[str],
    log: Path,
    ready: Callable[[subprocess.Popen[bytes]], None],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """`args` running (output in `log`) once `ready(process)` returned; stopped when the block ends."""
    proc = _run(args, log, env=env, cwd=cwd)
    try:
        ready(proc)
        yield proc
    finally:
        _stop(proc)


def serving_on(
    peer: Peer, args: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """`serving` until `peer` accepts connections."""
    return serving(args, log, lambda proc: wait_listening(proc, peer.host, peer.port, log), env=env, cwd=cwd)
