"""zot's compute-only scale-out examples (S3 + redis, S3 + DynamoDB) as 3-member clusters.

Every server is real and on loopback: versitygw (S3), redis-server, dynalite (DynamoDB), the
members over TLS on 127.0.0.1-5, the OCI conformance suite, HAProxy from Debian.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from zot_registry.cluster.hashing import owner_index

from tests.support.conformance import run_conformance, run_current_suite
from tests.support.images import (
    MANIFEST,
    Image,
    assert_pullable,
    make_image,
    push_blob_in_pieces,
    push_image,
    sha256,
)
from tests.support.peers import Peer
from tests.support.s3 import blob_objects_not_matching_their_key
from tests.support.shared_cluster import SharedCluster, assert_survivors_serve, kill_during_pushes, shared_cluster


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


@pytest.mark.parametrize(
    ("example", "s3", "through"),
    [
        ("cluster-s3-redis.json", "versitygw", 0),
        ("cluster-s3-dynamodb.json", "versitygw", 1),
        ("cluster-s3-redis.json", "seaweedfs", 2),
    ],
)
def test_example_runs_three_members_and_passes_conformance(
    example: str, s3: str, through: int, tmp_path: Path, request: pytest.FixtureRequest, aws_env: None
) -> None:
    """The conformance suite through one member (another in each case) on repositories another member
    owns, so that every request is proxied; the current suite through the next member."""
    cache: Peer = request.getfixturevalue("redis_server" if "redis" in example else "dynamodb_server")
    server: Peer = request.getfixturevalue("s3_server" if s3 == "versitygw" else "seaweedfs_server")
    cluster = shared_cluster(tmp_path / "cluster", example, server, cache).start(3)
    key = cluster.example["cluster"]["hashKey"].encode()

    def elsewhere(prefix: str) -> str:
        return next(n for n in (f"{prefix}-{i}" for i in range(100)) if owner_index(n, key, 3) != through)

    namespace, crossmount = elsewhere("conformance/via"), elsewhere("conformance/other")
    try:
        run_conformance(
            cluster.members[through],
            tmp_path / "report",
            ca=cluster.certs.ca,
            namespace=namespace,
            crossmount=crossmount,
        )
        # And the current suite (spec 1.1: sha512, nested indexes, referrers) through the next member.
        (tmp_path / "current").mkdir()
        run_current_suite(
            cluster.members[(through + 1) % 3],
            tmp_path / "current" / "results",
            ca=cluster.certs.ca,
            repos=("current/one", "current/two"),
        )
        # Shared storage: each member's catalog is the whole registry, with nothing gathered.
        catalogs = []
        for index in range(3):
            with cluster.client(index) as http:
                catalogs.append(http.get("/v2/_catalog").json()["repositories"])
        assert catalogs[0] == catalogs[1] == catalogs[2]
        assert {namespace, "current/one", "current/two"} <= set(catalogs[0])
    finally:
        cluster.stop()


def _push_chunked(
    http: httpx.Client, repo: str, image: Image, piece: int = 1 << 20, manifest_sent: set[str] | None = None
) -> int:
    """Config monolithic, layers in PATCH pieces (so a kill can land between them), then the manifest.

    `repo` goes into `manifest_sent` just before the manifest PUT: a PUT whose answer was lost with a
    killed member may or may not have been stored, and the test can only ask that it be whole if it was.
    """
    response = http.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(image.config)}, content=image.config)
    assert response.status_code == 201, response.text
    for layer in image.layers:
        status = push_blob_in_pieces(http, repo, layer, piece)
        if status != 201:
            return status
    if manifest_sent is not None:
        manifest_sent.add(repo)
    return http.put(f"/v2/{repo}/manifests/v1", content=image.manifest, headers=MANIFEST).status_code


def test_member_killed_during_twenty_pushes_loses_no_completed_push(
    redis_cluster: SharedCluster, s3_server: Peer
) -> None:
    cluster, victim = redis_cluster, 2
    images = {f"killed/repo-{i}": make_image(f"kill-{i}", (9 << 20, 64 << 10)) for i in range(20)}
    outcome: dict[str, object] = {}
    manifest_sent: set[str] = set()

    def push(number: int, repo: str, image: Image) -> None:
        try:
            with cluster.client(number % 3) as http:
                outcome[repo] = _push_chunked(http, repo, image, manifest_sent=manifest_sent)
        except httpx.HTTPError as err:  # the connection went down with the killed member
            outcome[repo] = type(err).__name__

    completed, unfinished = kill_during_pushes(cluster, victim, images, push, outcome, completed_first=3)
    print(
        f"{len(completed)} pushes completed before and after the kill, {len(unfinished)} did not: "
        f"{ {repo: outcome.get(repo) for repo in unfinished} }"
    )
    assert completed and unfinished, outcome

    cluster.start(2)  # the member list without the dead member, every survivor restarted with it
    assert_survivors_serve(
        cluster, {repo: images[repo] for repo in completed}, {repo: images[repo] for repo in unfinished}, manifest_sent
    )
    assert blob_objects_not_matching_their_key(s3_server) == []


def test_resize_three_to_five_to_two_keeps_every_image_pullable(redis_cluster: SharedCluster) -> None:
    cluster = redis_cluster
    images = {f"resize/app-{i}": make_image(f"resize-{i}", (256 << 10, 4096)) for i in range(12)}
    with cluster.client(0) as http:
        for repo, image in images.items():
            assert push_image(http, repo, image, "v1").status_code == 201
    for size in (5, 2):
        cluster.start(size)
        for index in range(size):
            with cluster.client(index) as http:
                for repo, image in images.items():
                    assert_pullable(http, repo, image)
