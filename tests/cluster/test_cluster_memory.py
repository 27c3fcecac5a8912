"""A 1 GiB blob through a proxying member: both directions stream, neither member's memory grows."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx

from tests.support.cluster import start_cluster
from tests.support.memory import CHUNK, GIB, LIMIT, PeakSampler, one_gib, server_rss


def test_one_gib_through_a_proxying_member(tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path / "memory", count=2, tls=False, auth=False)
    try:
        proxy, owner = cluster.members[0], cluster.members[1]
        assert proxy.process is not None and owner.process is not None
        repo = cluster.repo_owned_by(1, "big")
        block = os.urandom(CHUNK)
        hasher = hashlib.sha256()
        for chunk in one_gib(block):
            hasher.update(chunk)
        digest = "sha256:" + hasher.hexdigest()
        with httpx.Client(base_url=proxy.url, timeout=600) as client:
            client.get(f"/v2/{repo}/tags/list")
            baselines = {p.process.pid: server_rss(p.process.pid) for p in (proxy, owner)}  # type: ignore[union-attr]
            with PeakSampler(proxy.process.pid) as proxy_push, PeakSampler(owner.process.pid) as owner_push:
                location = client.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
                done = client.put(location, params={"digest": digest}, content=one_gib(block))
                assert done.status_code == 201, done.text
            pulled = hashlib.sha256()
            size = 0
            with (
                PeakSampler(proxy.process.pid) as proxy_pull,
                PeakSampler(owner.process.pid) as owner_pull,
                client.stream("GET", f"/v2/{repo}/blobs/{digest}") as response,
            ):
                assert response.status_code == 200
                for chunk in response.iter_raw(CHUNK):
                    pulled.update(chunk)
                    size += len(chunk)
        assert size == GIB and "sha256:" + pulled.hexdigest() == digest
        assert (owner.root / repo / "blobs" / "sha256" / digest[7:]).stat().st_size == GIB
        assert not (proxy.root / repo).exists()
        for name, member, peaks in (
            ("proxy", proxy, (proxy_push, proxy_pull)),
            ("owner", owner, (owner_push, owner_pull)),
        ):
            assert member.process is not None
            growth = max(p.peak for p in peaks) - baselines[member.process.pid]
            print(f"{name}: baseline {baselines[member.process.pid] >> 20} MiB, growth {growth >> 20} MiB")
            assert growth < LIMIT, f"{name} grew by {growth >> 20} MiB moving 1 GiB through the proxy"
    finally:
        cluster.stop()
