"""One member on S3 storage with a redis cache: what a user of shared storage relies on.

Real servers on loopback: versitygw (S3, checks SigV4) and redis-server, from the fixtures.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import RegistryProcess, free_port, make_image, push_image, sha256
from tests.registry.test_memory import LIMIT, round_trip_one_gib
from tests.storage.conftest import Peer
from tests.storage.s3util import ROOT, blob_objects_not_matching_their_key, list_objects, redis_cache, s3_member

OCTETS = {"Content-Type": "application/octet-stream"}


@pytest.fixture(params=["versitygw", "seaweedfs"])
def any_s3(request: pytest.FixtureRequest) -> Peer:
    """Each S3 server the suite has: what a session or a failed push leaves must not depend on it."""
    peer: Peer = request.getfixturevalue("s3_server" if request.param == "versitygw" else "seaweedfs_server")
    return peer


@pytest.fixture
def member(tmp_path: Path, any_s3: Peer, redis_server: Peer) -> Iterator[RegistryProcess]:
    process = s3_member(tmp_path / "member", any_s3, redis_cache(redis_server))
    yield process.start()
    process.stop()


def _kill(process: RegistryProcess) -> None:
    assert process.process is not None
    os.killpg(process.process.pid, signal.SIGKILL)
    process.process.wait(timeout=10)


def test_chunked_upload_survives_the_member_restarting_between_chunks(member: RegistryProcess) -> None:
    data = os.urandom(21 << 20)  # more than two 8 MiB parts, and a tail
    cuts = [0, 3000, 12 << 20, 20 << 20, len(data)]
    with httpx.Client(base_url=member.url, timeout=60) as client:
        location = client.post("/v2/restart/me/blobs/uploads/").headers["Location"]
        for start, end in itertools.pairwise(cuts[:-1]):
            chunk = client.patch(location, content=data[start:end],
                                 headers={**OCTETS, "Content-Range": f"{start}-{end - 1}"})
            assert chunk.status_code == 202, chunk.text
            assert chunk.headers["Range"] == f"0-{end - 1}"
            _kill(member)  # no goodbye: the next chunk goes to a fresh process
            member.start()
        status = client.get(location)
        assert status.status_code == 204 and status.headers["Range"] == f"0-{cuts[-2] - 1}"
        done = client.put(location, params={"digest": sha256(data)}, content=data[cuts[-2]:],
                          headers={**OCTETS, "Content-Range": f"{cuts[-2]}-{len(data) - 1}"})
        assert done.status_code == 201, done.text
        assert client.get(f"/v2/restart/me/blobs/{sha256(data)}").content == data
        ranged = client.get(f"/v2/restart/me/blobs/{sha256(data)}", headers={"Range": "bytes=8388600-8388700"})
        assert ranged.status_code == 206 and ranged.content == data[8388600:8388701]
        assert ranged.headers["Content-Range"] == f"bytes 8388600-8388700/{len(data)}"


def test_wrong_digest_leaves_nothing_visible(member: RegistryProcess, any_s3: Peer) -> None:
    data = os.urandom(9 << 20)
    claimed = sha256(b"something else")
    with httpx.Client(base_url=member.url, timeout=60) as client:
        response = client.post("/v2/wrong/blobs/uploads/", params={"digest": claimed}, content=data, headers=OCTETS)
        assert response.status_code == 400 and response.json()["errors"][0]["code"] == "DIGEST_INVALID"
        location = client.post("/v2/wrong/blobs/uploads/").headers["Location"]
        client.patch(location, content=data, headers=OCTETS)
        response = client.put(location, params={"digest": claimed})
        assert response.status_code == 400 and response.json()["errors"][0]["code"] == "DIGEST_INVALID"
        assert client.head(f"/v2/wrong/blobs/{claimed}").status_code == 404
        assert client.head(f"/v2/wrong/blobs/{sha256(data)}").status_code == 404
    objects = list_objects(any_s3)
    assert not [key for key in objects if "/blobs/" in key], objects
    assert blob_objects_not_matching_their_key(any_s3) == []


def test_garbage_collection_keeps_layers_another_repository_still_uses(
        tmp_path: Path, s3_server: Peer, redis_server: Peer) -> None:
    process = s3_member(tmp_path / "gc", s3_server, redis_cache(redis_server), gc=True, gcDelay="1s",
                        gcInterval="1s")
    process.start()
    try:
        image = make_image("collected", (2 << 20,))
        with httpx.Client(base_url=process.url, timeout=60) as client:
            assert push_image(client, "dropped", image, "v1").status_code == 201
            assert push_image(client, "kept", image, "v1").status_code == 201
            orphan = os.urandom(4096)
            assert client.post("/v2/kept/blobs/uploads/", params={"digest": sha256(orphan)},
                               content=orphan).status_code == 201
            assert client.delete(f"/v2/dropped/manifests/{image.digest}").status_code == 202
            layer_key = f"{ROOT}/dropped/blobs/sha256/{sha256(image.layers[0])[7:]}"
            orphan_key = f"{ROOT}/kept/blobs/sha256/{sha256(orphan)[7:]}"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                objects = list_objects(s3_server)
                if layer_key not in objects and orphan_key not in objects:
                    break
                time.sleep(0.5)
            assert layer_key not in objects and orphan_key not in objects, sorted(objects)
            # The shared copy stays: "kept" still holds the layer, and serves it.
            assert client.get(f"/v2/kept/blobs/{sha256(image.layers[0])}").content == image.layers[0]
            assert client.get("/v2/kept/manifests/v1").content == image.manifest
    finally:
        process.stop()


def test_storage_down_is_a_503_with_a_reason_not_a_500(
        tmp_path: Path, s3_server: Peer, redis_server: Peer) -> None:
    dead = Peer("127.0.0.1", free_port())  # nothing listens there
    process = s3_member(tmp_path / "dead", dead, redis_cache(redis_server)).start()
    try:
        with httpx.Client(base_url=process.url, timeout=60) as client:
            response = client.get(f"/v2/any/blobs/{sha256(b'x')}")
            assert response.status_code == 503, response.text
            error = response.json()["errors"][0]
            assert error["code"] == "UNAVAILABLE" and "S3" in error["message"]
            ready = client.get("/readyz")
            assert ready.status_code == 503 and "S3" in ready.text
        assert "Traceback" not in process.log_path.read_text()
    finally:
        process.stop()


def test_one_gib_push_and_pull_through_s3_stays_within_64_mib(
        tmp_path: Path, s3_server: Peer, redis_server: Peer) -> None:
    process = s3_member(tmp_path / "big", s3_server, redis_cache(redis_server), workers=1).start()
    try:
        assert process.process is not None
        with httpx.Client(base_url=process.url, timeout=600) as client:
            # Warm up: the S3 and redis clients are made on first use, and are not what this measures.
            assert push_image(client, "warm", make_image("warm-up"), "v1").status_code == 201
            baseline, push_peak, pull_peak = round_trip_one_gib(client, "big", process.process.pid)
        growth = max(push_peak, pull_peak) - baseline
        print(f"S3: baseline RSS {baseline >> 20} MiB, push peak {push_peak >> 20} MiB, "
              f"pull peak {pull_peak >> 20} MiB")
        assert growth < LIMIT, f"resident memory grew by {growth >> 20} MiB moving 1 GiB through S3"
    finally:
        process.stop()
