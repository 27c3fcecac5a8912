"""A 3-member cluster (local storage, TLS, htpasswd) with sync from a real upstream on loopback
(distribution 2.8.2): every synced repository is stored only under its owner, chosen by the local
name, also when `destination` and `stripPrefix` rename it, and pulls through every member."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster.test_cluster import client_for, repo_dirs
from tests.support.cluster import ClusterUnderTest, start_cluster
from tests.support.images import make_image
from tests.support.upstreams import UpstreamRegistry, running_upstream

ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
WAIT = 60.0


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamRegistry]:
    with running_upstream("distribution2") as started:
        yield started


@pytest.fixture(scope="module")
def synced(upstream: UpstreamRegistry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterUnderTest]:
    def with_sync(config: dict[str, Any]) -> None:
        config["extensions"] = {
            "sync": {
                "registries": [
                    {"urls": [upstream.url], "onDemand": True, "content": [{"prefix": "cache/**"}]},
                    {
                        "urls": [upstream.url],
                        "pollInterval": "1s",
                        "content": [{"prefix": "tools/**", "destination": "/mirror", "stripPrefix": True}],
                    },
                ]
            }
        }

    cluster = start_cluster(tmp_path_factory.mktemp("synced"), configure=with_sync)
    yield cluster
    cluster.stop()


def stored_on(cluster: ClusterUnderTest, repo: str) -> list[int]:
    return [index for index, member in enumerate(cluster.members) if repo in repo_dirs(member)]


def test_on_demand_sync_stores_each_repository_only_on_its_owner(
    upstream: UpstreamRegistry, synced: ClusterUnderTest
) -> None:
    digests = {
        f"cache/app-{i}": upstream.push(f"cache/app-{i}", make_image(f"cache-{i}", (2048,)), "v1") for i in range(9)
    }
    assert {synced.owner(repo) for repo in digests} == {0, 1, 2}
    clients = [client_for(synced, i) for i in range(3)]
    try:
        for i, (repo, digest) in enumerate(digests.items()):
            # Asked through any member; the owner syncs it.
            answer = clients[i % 3].get(f"/v2/{repo}/manifests/v1", headers=ACCEPT)
            assert answer.status_code == 200, answer.text
            assert answer.headers["Docker-Content-Digest"] == digest
        for repo, digest in digests.items():
            assert stored_on(synced, repo) == [synced.owner(repo)]
            for client in clients:
                assert client.get(f"/v2/{repo}/manifests/v1", headers=ACCEPT).headers["Docker-Content-Digest"] == digest
    finally:
        for client in clients:
            client.close()


def test_periodic_sync_with_destination_lands_on_the_owner_of_the_local_name(
    upstream: UpstreamRegistry, synced: ClusterUnderTest
) -> None:
    remote = [f"tools/gen-{i}" for i in range(9)]
    digests = {
        name.replace("tools/", "mirror/"): upstream.push(name, make_image(name, (1024,)), "1.0") for name in remote
    }
    # The upstream name and the local name are owned by different members for some of them: that is
    # where hashing the upstream name (as zot does) would store them on the wrong member.
    assert any(synced.owner(local) != synced.owner(local.replace("mirror/", "tools/")) for local in digests)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and not all(stored_on(synced, local) for local in digests):
        time.sleep(0.25)
    for local in digests:
        assert stored_on(synced, local) == [synced.owner(local)], local
        assert stored_on(synced, local.replace("mirror/", "tools/")) == []
    clients = [client_for(synced, i) for i in range(3)]
    try:
        for local, digest in digests.items():
            for client in clients:
                answer = client.get(f"/v2/{local}/manifests/1.0", headers=ACCEPT)
                assert answer.status_code == 200, answer.text
                assert answer.headers["Docker-Content-Digest"] == digest
    finally:
        for client in clients:
            client.close()
