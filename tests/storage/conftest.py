"""Shared-storage test peers (issue 6), started on 127.0.0.1 free ports in tmp dirs.

Each fixture waits (bounded) until its peer answers and stops it afterwards, so a test never races
a peer that is still starting (tests/support/peers.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paths import tool
from tests.support.peers import (
    S3_ACCESS_KEY,
    S3_SECRET_KEY,
    SEAWEEDFS_PORT_FLAGS,
    Peer,
    answers_s3,
    serving,
    serving_on,
)
from tests.support.ports import free_port, free_ports
from tests.support.shared_cluster import SharedCluster, shared_cluster


@pytest.fixture
def s3_server(tmp_path: Path) -> Iterator[Peer]:
    """versitygw serving a posix directory as S3 (buckets are directories under data/)."""
    data, meta = tmp_path / "s3-data", tmp_path / "s3-meta"
    data.mkdir()
    meta.mkdir()
    peer = Peer("127.0.0.1", free_port())
    env = dict(os.environ, ROOT_ACCESS_KEY_ID=S3_ACCESS_KEY, ROOT_SECRET_ACCESS_KEY=S3_SECRET_KEY)
    with serving_on(
        peer,
        [tool("versitygw"), "--port", f"{peer.host}:{peer.port}", "posix", "--sidecar", str(meta), str(data)],
        tmp_path / "versitygw.log",
        env=env,
    ):
        yield peer


@pytest.fixture
def seaweedfs_server(tmp_path: Path) -> Iterator[Peer]:
    """SeaweedFS (`weed mini`: every component in one process) serving S3, with the same credentials."""
    data = tmp_path / "seaweedfs"
    data.mkdir()
    identities = {
        "identities": [
            {
                "name": "zot",
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
            }
        ]
    }
    (tmp_path / "seaweedfs-s3.json").write_text(json.dumps(identities))
    # Its S3 port and every other port of weed mini, distinct from each other.
    s3_port, *others = free_ports(1 + len(SEAWEEDFS_PORT_FLAGS))
    peer = Peer("127.0.0.1", s3_port)
    ports = [f"-{flag}={port}" for flag, port in zip(SEAWEEDFS_PORT_FLAGS, others, strict=True)]
    log = tmp_path / "seaweedfs.log"
    with serving(
        [
            tool("weed"),
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={peer.port}",
            f"-s3.config={tmp_path / 'seaweedfs-s3.json'}",
            *ports,
        ],
        log,
        lambda proc: answers_s3(proc, peer.url + "/", log),
    ):
        yield peer


@pytest.fixture
def dynamodb_server(tmp_path: Path) -> Iterator[Peer]:
    """dynalite (DynamoDB API) keeping its tables in memory for the test's lifetime."""
    peer = Peer("127.0.0.1", free_port())
    with serving_on(peer, [tool("dynalite"), "--host", peer.host, "--port", str(peer.port)], tmp_path / "dynalite.log"):
        yield peer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Peer]:
    """redis-server without persistence, bound to loopback, with its files in tmp_path."""
    peer = Peer("127.0.0.1", free_port())
    with serving_on(
        peer,
        [
            tool("redis-server"),
            "--bind",
            peer.host,
            "--port",
            str(peer.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        tmp_path / "redis.log",
        cwd=tmp_path,
    ):
        yield peer


@pytest.fixture
def s3_redis_cluster(tmp_path: Path, s3_server: Peer, redis_server: Peer) -> Iterator[SharedCluster]:
    """zot's cluster-s3-redis.json as 3 running members on 127.0.0.1-3 (TLS), `dedupe: true`.

    `cluster.start(n)` / `cluster.without(i)` rewrite the member list and restart every member.
    """
    cluster = shared_cluster(
        tmp_path / "s3-redis-cluster", "cluster-s3-redis.json", s3_server, redis_server, dedupe=True
    )
    try:
        yield cluster.start(3)
    finally:
        cluster.stop()
