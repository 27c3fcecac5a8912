"""zot's compute-only scale-out examples (S3 + redis, S3 + DynamoDB) as 3-member clusters.

Every server is real and on loopback: versitygw (S3), redis-server, dynalite (DynamoDB), the
members over TLS on 127.0.0.1-5, the OCI conformance suite, HAProxy from Debian.
"""

from __future__ import annotations

import os
import signal
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.conformance import run_conformance, run_current_suite
from tests.support.images import (
    MANIFEST,
    OCTETS,
    Image,
    assert_absent_or_whole,
    assert_pullable,
    make_image,
    push_image,
    sha256,
)
from tests.support.peers import Peer
from tests.support.s3 import blob_objects_not_matching_their_key
from tests.support.shared_cluster import SharedCluster, shared_cluster


def client(cluster: SharedCluster, member: int, timeout: float = 60) -> httpx.Client:
    return httpx.Client(base_url=cluster.members[member].url, timeout=timeout,
                        verify=ssl.create_default_context(cafile=str(cluster.certs.ca)))


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Read by the members' DynamoDB client as by their S3 client; dynalite accepts any key.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "zot-test-access")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "zot-test-secret-key")


@pytest.fixture
def redis_cluster(tmp_path: Path, s3_server: Peer, redis_server: Peer) -> Iterator[SharedCluster]:
    cluster = shared_cluster(tmp_path / "cluster", "cluster-s3-redis.json", s3_server, redis_server, dedupe=True)
    yield cluster.start(3)
    cluster.stop()


@pytest.mark.parametrize(("example", "s3"), [("cluster-s3-redis.json", "versitygw"),
                                              ("cluster-s3-dynamodb.json", "versitygw"),
                                              ("cluster-s3-redis.json", "seaweedfs")])
def test_example_runs_three_members_and_passes_conformance_through_each(
        example: str, s3: str, tmp_path: Path, request: pytest.FixtureRequest, aws_env: None) -> None:
    cache: Peer = request.getfixturevalue("redis_server" if "redis" in example else "dynamodb_server")
    server: Peer = request.getfixturevalue("s3_server" if s3 == "versitygw" else "seaweedfs_server")
    cluster = shared_cluster(tmp_path / "cluster", example, server, cache).start(3)
    try:
        for index, member in enumerate(cluster.members):
            run_conformance(member, tmp_path / f"report-{index}", ca=cluster.certs.ca,
                            namespace=f"conformance/via-{index}", crossmount=f"conformance/other-{index}")
        # And the current suite (spec 1.1: sha512, nested indexes, referrers) through one member.
        (tmp_path / "current").mkdir()
        run_current_suite(cluster.members[1], tmp_path / "current" / "results", ca=cluster.certs.ca,
                          repos=("current/one", "current/two"))
        # Shared storage: each member's catalog is the whole registry, with nothing gathered.
        catalogs = []
        for index in range(3):
            with client(cluster, index) as http:
                catalogs.append(http.get("/v2/_catalog").json()["repositories"])
        assert catalogs[0] == catalogs[1] == catalogs[2]
        assert {"conformance/via-0", "conformance/via-1", "conformance/via-2"} <= set(catalogs[0])
    finally:
        cluster.stop()


def _push_chunked(http: httpx.Client, repo: str, image: Image, piece: int = 1 << 20,
                  manifest_sent: set[str] | None = None) -> int:
    """Config monolithic, layers in PATCH pieces (so a kill can land between them), then the manifest.

    `repo` goes into `manifest_sent` just before the manifest PUT: a PUT whose answer was lost with a
    killed member may or may not have been stored, and the test can only ask that it be whole if it was.
    """
    response = http.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(image.config)}, content=image.config)
    assert response.status_code == 201, response.text
    for layer in image.layers:
        location = http.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
        for start in range(0, len(layer), piece):
            response = http.patch(location, content=layer[start:start + piece], headers=OCTETS)
            if response.status_code != 202:
                return response.status_code
            location = response.headers["Location"]
        response = http.put(location, params={"digest": sha256(layer)})
        if response.status_code != 201:
            return response.status_code
    if manifest_sent is not None:
        manifest_sent.add(repo)
    return http.put(f"/v2/{repo}/manifests/v1", content=image.manifest, headers=MANIFEST).status_code


def test_member_killed_during_twenty_pushes_loses_no_completed_push(
        redis_cluster: SharedCluster, s3_server: Peer) -> None:
    cluster, victim = redis_cluster, 2
    images = {f"killed/repo-{i}": make_image(f"kill-{i}", (9 << 20, 64 << 10)) for i in range(20)}
    outcome: dict[str, object] = {}
    manifest_sent: set[str] = set()

    def push(number: int, repo: str, image: Image) -> None:
        try:
            with client(cluster, number % 3) as http:
                outcome[repo] = _push_chunked(http, repo, image, manifest_sent=manifest_sent)
        except httpx.HTTPError as err:  # the connection went down with the killed member
            outcome[repo] = type(err).__name__

    threads = [threading.Thread(target=push, args=(n, repo, image), daemon=True)
               for n, (repo, image) in enumerate(images.items())]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sum(status == 201 for status in outcome.values()) < 3:
        time.sleep(0.05)
    killed = cluster.members[victim].process
    assert killed is not None
    os.killpg(killed.pid, signal.SIGKILL)  # in the middle: some pushes done, others mid-layer
    for thread in threads:
        thread.join(timeout=180)
    assert not any(thread.is_alive() for thread in threads)
    completed = sorted(repo for repo, status in outcome.items() if status == 201)
    unfinished = sorted(set(images) - set(completed))
    print(f"{len(completed)} pushes completed before and after the kill, {len(unfinished)} did not: "
          f"{ {repo: outcome.get(repo) for repo in unfinished} }")
    assert completed and unfinished, outcome

    cluster.start(2)  # the member list without the dead member, every survivor restarted with it
    survivors = [client(cluster, index) for index in range(2)]
    try:
        for http in survivors:
            for repo in completed:
                assert_pullable(http, repo, images[repo])
        for repo in unfinished:
            assert_absent_or_whole(survivors, repo, images[repo], repo in manifest_sent)
    finally:
        for http in survivors:
            http.close()
    assert blob_objects_not_matching_their_key(s3_server) == []


def test_resize_three_to_five_to_two_keeps_every_image_pullable(redis_cluster: SharedCluster) -> None:
    cluster = redis_cluster
    images = {f"resize/app-{i}": make_image(f"resize-{i}", (256 << 10, 4096)) for i in range(12)}
    with client(cluster, 0) as http:
        for repo, image in images.items():
            assert push_image(http, repo, image, "v1").status_code == 201
    for size in (5, 2):
        cluster.start(size)
        for index in range(size):
            with client(cluster, index) as http:
                for repo, image in images.items():
                    assert_pullable(http, repo, image)
