"""Three members on 127.0.0.1-3, same port, TLS between them, htpasswd auth: zot's scale-out cluster."""

from __future__ import annotations

import json
import os
import random
import signal
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.certs import make_certs
from tests.support.cluster import ClusterUnderTest, start_cluster
from tests.support.images import make_image, push_image, sha256
from tests.support.registry import RegistryProcess

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def client_for(cluster: ClusterUnderTest, member: int, timeout: float = 30) -> httpx.Client:
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(cluster.ca)) if cluster.ca else True
    return httpx.Client(base_url=cluster.members[member].url, verify=verify, auth=cluster.auth, timeout=timeout)


@pytest.fixture(scope="module")
def clients(cluster3: ClusterUnderTest) -> Iterator[list[httpx.Client]]:
    made = [client_for(cluster3, i) for i in range(3)]
    yield made
    for c in made:
        c.close()


def repo_dirs(member: RegistryProcess) -> set[str]:
    root = member.root
    return {str(p.parent.relative_to(root)) for p in root.rglob("index.json") if ".dedupe" not in p.parts}


def test_every_member_is_ready(cluster3: ClusterUnderTest, clients: list[httpx.Client]) -> None:
    for c in clients:
        assert c.get("/readyz").status_code == 200


def test_thirty_repositories_live_only_on_their_owner_and_pull_through_every_member(
    cluster3: ClusterUnderTest, clients: list[httpx.Client]
) -> None:
    chooser = random.Random(3)
    images = {f"spread/repo-{i}": make_image(f"spread-{i}", layer_sizes=(2000 + i, 50_000)) for i in range(30)}
    for repo, image in images.items():
        via = chooser.randrange(3)
        response = push_image(clients[via], repo, image, tag="v1")
        assert response.status_code == 201, (repo, via, response.text)
    owners = {repo: cluster3.owner(repo) for repo in images}
    assert set(owners.values()) == {0, 1, 2}
    for index, member in enumerate(cluster3.members):
        stored = {r for r in repo_dirs(member) if r.startswith("spread/")}
        assert stored == {repo for repo, owner in owners.items() if owner == index}
    for repo, image in images.items():
        for c in clients:
            got = c.get(f"/v2/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST})
            assert got.status_code == 200 and got.content == image.manifest
            for blob in image.layers:
                assert c.get(f"/v2/{repo}/blobs/{sha256(blob)}").content == blob


def test_catalog_is_gathered_from_all_members(cluster3: ClusterUnderTest, clients: list[httpx.Client]) -> None:
    repos = [cluster3.repo_owned_by(i, f"catalog/owned-by-{i}") for i in range(3)]
    for i, repo in enumerate(repos):
        push_image(clients[(i + 1) % 3], repo, make_image(repo), tag="v1")
    for c in clients:
        listing = c.get("/v2/_catalog").json()["repositories"]
        assert set(repos) <= set(listing)
        assert listing == sorted(listing)
    page = clients[0].get("/v2/_catalog", params={"n": 2})
    assert len(page.json()["repositories"]) == 2 and 'rel="next"' in page.headers["Link"]


def test_chunked_upload_across_members_with_relative_locations(
    cluster3: ClusterUnderTest, clients: list[httpx.Client]
) -> None:
    repo = cluster3.repo_not_owned_by(0, "chunked/upload")
    blob = os.urandom(3 << 20)
    start = clients[0].post(f"/v2/{repo}/blobs/uploads/")
    assert start.status_code == 202
    location = start.headers["Location"]
    assert location.startswith(f"/v2/{repo}/blobs/uploads/")
    # Each request of the session lands on another member, as behind a load balancer without stickiness.
    offset = 0
    for step, size in enumerate((1 << 20, 1 << 20, 1 << 20)):
        c = clients[step % 3]
        response = c.patch(
            location, content=blob[offset : offset + size], headers={"Content-Range": f"{offset}-{offset + size - 1}"}
        )
        assert response.status_code == 202, response.text
        location = response.headers["Location"]
        offset += size
    done = clients[1].put(location, params={"digest": sha256(blob)})
    assert done.status_code == 201
    assert clients[2].get(f"/v2/{repo}/blobs/{sha256(blob)}").content == blob


def test_forged_hop_header_does_not_make_a_member_serve_what_it_does_not_own(
    cluster3: ClusterUnderTest, clients: list[httpx.Client]
) -> None:
    repo = cluster3.repo_not_owned_by(0, "forged")
    blob = b"forged content"
    response = clients[0].post(
        f"/v2/{repo}/blobs/uploads/",
        params={"digest": sha256(blob)},
        content=blob,
        headers={"X-Zot-Cluster-Hop-Count": "1"},
    )
    assert response.status_code == 508
    assert response.json()["errors"][0]["code"] == "UNSUPPORTED"
    assert not (cluster3.members[0].root / repo).exists()
    assert clients[0].get(f"/v2/{repo}/tags/list", headers={"X-Zot-Cluster-Hop-Count": "1"}).status_code == 508


def test_metrics_count_proxied_requests(cluster3: ClusterUnderTest, clients: list[httpx.Client]) -> None:
    repo = cluster3.repo_not_owned_by(1, "metrics")
    push_image(clients[1], repo, make_image("metrics"), tag="v1")
    text = clients[1].get("/metrics").text
    owner = cluster3.members[cluster3.owner(repo)].hostport
    assert f'zot_cluster_proxied_requests_total{{peer="{owner}",route="manifest",status="201"}}' in text
    assert f'zot_cluster_proxied_bytes_total{{direction="sent",peer="{owner}"}}' in text


def test_killed_member_fails_fast_others_keep_working_and_it_comes_back(tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path / "kill")
    try:
        c0 = client_for(cluster, 0, timeout=30)
        victim_repo = cluster.repo_owned_by(2, "victim")
        other_repos = [cluster.repo_owned_by(i, "survivor") for i in (0, 1)]
        images = {repo: make_image(repo) for repo in [victim_repo, *other_repos]}
        for repo, image in images.items():
            assert push_image(c0, repo, image, tag="v1").status_code == 201
        victim = cluster.members[2]
        assert victim.process is not None
        os.killpg(victim.process.pid, signal.SIGKILL)
        victim.process.wait()
        started = time.monotonic()
        failed = c0.get(f"/v2/{victim_repo}/manifests/v1")
        elapsed = time.monotonic() - started
        assert failed.status_code == 503
        assert failed.json()["errors"][0]["code"] == "UNAVAILABLE"
        assert victim.hostport in failed.json()["errors"][0]["message"]
        assert elapsed < 5, f"a dead peer took {elapsed:.1f}s to report"
        for repo in other_repos:
            assert c0.get(f"/v2/{repo}/manifests/v1").content == images[repo].manifest
        victim.start()
        assert c0.get(f"/v2/{victim_repo}/manifests/v1").content == images[victim_repo].manifest
        c0.close()
    finally:
        cluster.stop()


def test_members_with_different_lists_are_caught_by_the_loop_guard(tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path / "loop", count=2, tls=False, auth=False)
    try:
        # Member 1 gets the list in the other order: every repository it thinks member 0 owns,
        # member 0 thinks member 1 owns, and the other way round.
        cluster.restart_with(1, lambda config: config["cluster"]["members"].reverse())
        time.sleep(0.5)
        repo = "loop/" + next(f"r{i}" for i in range(100) if cluster.owner(f"loop/r{i}") == 1)
        with httpx.Client(base_url=cluster.members[0].url, timeout=10) as c:
            response = c.get(f"/v2/{repo}/tags/list")
        assert response.status_code == 508
        body = response.json()["errors"][0]
        assert body["code"] == "UNSUPPORTED" and "cluster.members differ" in body["message"]
        for member in cluster.members:
            assert member.process is not None and member.process.poll() is None
    finally:
        cluster.stop()


def test_peer_with_a_certificate_from_another_ca_is_refused(tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path / "rogue", count=2, auth=False)
    try:
        rogue = make_certs(tmp_path / "rogue-certs", ["127.0.0.1", "127.0.0.2", "localhost"], ca_name="rogue CA")
        cluster.restart_with(
            1, lambda config: config["http"].update(tls={"cert": str(rogue.cert), "key": str(rogue.key)})
        )
        repo = cluster.repo_owned_by(1, "rogue")
        with client_for(cluster, 0) as c:
            response = c.get(f"/v2/{repo}/tags/list")
        assert response.status_code == 503
        assert "certificate" in response.json()["errors"][0]["message"].lower()
    finally:
        cluster.stop()


def test_member_not_in_the_list_starts_but_stays_not_ready(tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path / "stranger", count=2, tls=False, auth=False)
    try:
        stranger = cluster.restart_with(1, lambda config: config["http"].update(address="127.0.0.9"))
        response = httpx.get(f"{stranger.url}/readyz")
        assert response.status_code == 503
        assert "none of cluster.members is this instance" in response.text
        assert httpx.get(f"{stranger.url}/livez").status_code == 200
        assert httpx.get(f"{stranger.url}/startupz").status_code == 200
        refused = httpx.get(f"{stranger.url}/v2/any/tags/list")
        assert refused.status_code == 503 and refused.json()["errors"][0]["code"] == "UNAVAILABLE"
        assert "not identified in the cluster" in stranger.log_path.read_text()
    finally:
        cluster.stop()


def test_config_used_by_the_cluster_verifies(cluster3: ClusterUnderTest) -> None:
    from zot_registry.config import load_config

    loaded = load_config(cluster3.members[0].config_path)
    assert loaded.config.cluster is not None and len(loaded.config.cluster.members) == 3
    assert json.loads(cluster3.members[0].config_path.read_text())["cluster"]["hashKey"]


def test_frozen_member_times_out_promptly(tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path / "frozen", auth=False, env={"ZOT_CLUSTER_READ_TIMEOUT": "3"})
    try:
        with client_for(cluster, 0, timeout=60) as c0:
            frozen_repo = cluster.repo_owned_by(1, "frozen")
            alive_repo = cluster.repo_owned_by(2, "alive")
            for repo in (frozen_repo, alive_repo):
                assert push_image(c0, repo, make_image(repo), tag="v1").status_code == 201
            frozen = cluster.members[1]
            assert frozen.process is not None
            os.killpg(frozen.process.pid, signal.SIGSTOP)
            try:
                # A new connection: the pooled one would wait on the read timeout instead.
                with client_for(cluster, 0, timeout=60) as fresh:
                    started = time.monotonic()
                    response = fresh.get(f"/v2/{frozen_repo}/tags/list")
                    elapsed = time.monotonic() - started
                    assert response.status_code in (503, 504)
                    assert response.json()["errors"][0]["code"] == "UNAVAILABLE"
                    assert elapsed < 15, f"a frozen peer took {elapsed:.1f}s to report"
                    assert fresh.get(f"/v2/{alive_repo}/tags/list").status_code == 200
            finally:
                os.killpg(frozen.process.pid, signal.SIGCONT)
            assert c0.get(f"/v2/{frozen_repo}/tags/list").status_code == 200
    finally:
        cluster.stop()
