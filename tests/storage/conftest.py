"""Shared-storage test peers (issue 6), started on 127.0.0.1 free ports in tmp dirs.

Installed by hack/install-storage-peers.sh (versitygw, dynalite) and hack/install-apt.sh
(redis-server). Each fixture waits (bounded) until its peer accepts connections and
stops it afterwards, so a test never races a peer that is still starting.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import free_port, tool

# Credentials of the S3 gateway's root user; versitygw checks SigV4 signatures with them.
S3_ACCESS_KEY = "zot-test-access"
S3_SECRET_KEY = "zot-test-secret-key"
STARTUP_SECONDS = 20.0


@dataclass(frozen=True)
class Peer:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _wait_listening(proc: subprocess.Popen[bytes], host: str, port: int, log: Path) -> None:
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
    pytest.fail(f"{proc.args!r} not listening on {host}:{port} after {STARTUP_SECONDS}s:\n"
                f"{log.read_text(errors='replace')}")


def _run(args: list[str], log: Path, env: dict[str, str] | None = None,
         cwd: Path | None = None) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def s3_server(tmp_path: Path) -> Iterator[Peer]:
    """versitygw serving a posix directory as S3 (buckets are directories under data/)."""
    data, meta = tmp_path / "s3-data", tmp_path / "s3-meta"
    data.mkdir()
    meta.mkdir()
    peer = Peer("127.0.0.1", free_port())
    env = dict(os.environ, ROOT_ACCESS_KEY_ID=S3_ACCESS_KEY, ROOT_SECRET_ACCESS_KEY=S3_SECRET_KEY)
    log = tmp_path / "versitygw.log"
    proc = _run([tool("versitygw"), "--port", f"{peer.host}:{peer.port}", "posix", "--sidecar", str(meta),
                 str(data)], log, env=env)
    try:
        _wait_listening(proc, peer.host, peer.port, log)
        yield peer
    finally:
        _stop(proc)


# weed mini runs master, volume, filer, S3, WebDAV and admin servers, each with an HTTP and a gRPC port.
SEAWEEDFS_PORT_FLAGS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
                        "filer.port.grpc", "s3.port.grpc", "s3.port.iceberg", "webdav.port", "admin.port",
                        "admin.port.grpc")


def _answers_s3(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
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


@pytest.fixture
def seaweedfs_server(tmp_path: Path) -> Iterator[Peer]:
    """SeaweedFS (`weed mini`: every component in one process) serving S3, with the same credentials."""
    data = tmp_path / "seaweedfs"
    data.mkdir()
    identities = {"identities": [{"name": "zot", "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                                  "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}]}]}
    (tmp_path / "seaweedfs-s3.json").write_text(json.dumps(identities))
    peer = Peer("127.0.0.1", free_port())
    ports = [f"-{flag}={free_port()}" for flag in SEAWEEDFS_PORT_FLAGS]
    log = tmp_path / "seaweedfs.log"
    proc = _run([tool("weed"), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.port={peer.port}",
                 f"-s3.config={tmp_path / 'seaweedfs-s3.json'}", *ports], log)
    try:
        _answers_s3(peer.url + "/", proc, log)
        yield peer
    finally:
        _stop(proc)


@pytest.fixture
def dynamodb_server(tmp_path: Path) -> Iterator[Peer]:
    """dynalite (DynamoDB API) keeping its tables in memory for the test's lifetime."""
    peer = Peer("127.0.0.1", free_port())
    log = tmp_path / "dynalite.log"
    proc = _run([tool("dynalite"), "--host", peer.host, "--port", str(peer.port)], log)
    try:
        _wait_listening(proc, peer.host, peer.port, log)
        yield peer
    finally:
        _stop(proc)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Peer]:
    """redis-server without persistence, bound to loopback, with its files in tmp_path."""
    peer = Peer("127.0.0.1", free_port())
    log = tmp_path / "redis.log"
    proc = _run([tool("redis-server"), "--bind", peer.host, "--port", str(peer.port), "--save", "",
                 "--appendonly", "no", "--dir", str(tmp_path)], log, cwd=tmp_path)
    try:
        _wait_listening(proc, peer.host, peer.port, log)
        yield peer
    finally:
        _stop(proc)


@pytest.fixture
def s3_redis_cluster(tmp_path: Path, s3_server: Peer, redis_server: Peer) -> Iterator[Any]:
    """zot's cluster-s3-redis.json as 3 running members on 127.0.0.1-3 (TLS), `dedupe: true`.

    Yields a tests.storage.shared_cluster.SharedCluster; `cluster.start(n)` / `cluster.without(i)`
    rewrite the member list and restart every member. Imported here, not at the top: that module
    imports this one (Peer).
    """
    from tests.storage.shared_cluster import shared_cluster

    cluster = shared_cluster(tmp_path / "s3-redis-cluster", "cluster-s3-redis.json", s3_server, redis_server,
                             dedupe=True)
    try:
        yield cluster.start(3)
    finally:
        cluster.stop()
