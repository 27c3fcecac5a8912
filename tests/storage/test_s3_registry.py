"""One member on S3 storage with a redis cache: what a user of shared storage relies on.

Real servers on loopback: versitygw (S3, checks SigV4) and redis-server, from the fixtures.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.bad_manifests import invalid_manifests
from tests.support.checks import assert_sane_response, oci_error_codes
from tests.support.images import make_image, push_image, sha256
from tests.support.memory import LIMIT, round_trip_one_gib
from tests.support.peers import Peer
from tests.support.ports import free_port
from tests.support.registry import RegistryProcess
from tests.support.s3 import (
    BUCKET,
    ROOT,
    blob_objects_not_matching_their_key,
    list_objects,
    read_object,
    redis_cache,
    s3_client,
    s3_member,
)
from tests.support.streams import trickle

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
            chunk = client.patch(
                location, content=data[start:end], headers={**OCTETS, "Content-Range": f"{start}-{end - 1}"}
            )
            assert chunk.status_code == 202, chunk.text
            assert chunk.headers["Range"] == f"0-{end - 1}"
            _kill(member)  # no goodbye: the next chunk goes to a fresh process
            member.start()
        status = client.get(location)
        assert status.status_code == 204 and status.headers["Range"] == f"0-{cuts[-2] - 1}"
        done = client.put(
            location,
            params={"digest": sha256(data)},
            content=data[cuts[-2] :],
            headers={**OCTETS, "Content-Range": f"{cuts[-2]}-{len(data) - 1}"},
        )
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
    tmp_path: Path, s3_server: Peer, redis_server: Peer
) -> None:
    gc = s3_member(tmp_path / "gc", s3_server, redis_cache(redis_server), gc=True, gcDelay="1s", gcInterval="1s")
    with gc.start() as process:
        image = make_image("collected", (2 << 20,))
        with httpx.Client(base_url=process.url, timeout=60) as client:
            assert push_image(client, "dropped", image, "v1").status_code == 201
            assert push_image(client, "kept", image, "v1").status_code == 201
            orphan = os.urandom(4096)
            assert (
                client.post("/v2/kept/blobs/uploads/", params={"digest": sha256(orphan)}, content=orphan).status_code
                == 201
            )
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


def test_storage_down_is_a_503_with_a_reason_not_a_500(tmp_path: Path, s3_server: Peer, redis_server: Peer) -> None:
    dead = Peer("127.0.0.1", free_port())  # nothing listens there
    with s3_member(tmp_path / "dead", dead, redis_cache(redis_server)).start() as process:
        with httpx.Client(base_url=process.url, timeout=60) as client:
            response = client.get(f"/v2/any/blobs/{sha256(b'x')}")
            assert response.status_code == 503, response.text
            error = response.json()["errors"][0]
            assert error["code"] == "UNAVAILABLE" and "S3" in error["message"]
            ready = client.get("/readyz")
            assert ready.status_code == 503 and "S3" in ready.text
        assert "Traceback" not in process.log_path.read_text()


def test_one_gib_push_and_pull_through_s3_stays_within_64_mib(
    tmp_path: Path, s3_server: Peer, redis_server: Peer
) -> None:
    with s3_member(tmp_path / "big", s3_server, redis_cache(redis_server), workers=1).start() as process:
        assert process.process is not None
        with httpx.Client(base_url=process.url, timeout=600) as client:
            # Warm up: the S3 and redis clients are made on first use, and are not what this measures.
            assert push_image(client, "warm", make_image("warm-up"), "v1").status_code == 201
            baseline, push_peak, pull_peak = round_trip_one_gib(client, "big", process.process.pid)
        growth = max(push_peak, pull_peak) - baseline
        print(
            f"S3: baseline RSS {baseline >> 20} MiB, push peak {push_peak >> 20} MiB, pull peak {pull_peak >> 20} MiB"
        )
        assert growth < LIMIT, f"resident memory grew by {growth >> 20} MiB moving 1 GiB through S3"


# Adversarial cases on S3 (the local-store versions are in tests/adversarial/test_storage_*.py).


def _concurrent_puts(url: str, location: str, digest: str, last: bytes, count: int = 3) -> list[httpx.Response]:
    barrier = threading.Barrier(count)
    answers: list[httpx.Response] = []

    def close() -> None:
        with httpx.Client(base_url=url, timeout=120) as client:  # a connection of its own: either worker
            barrier.wait(timeout=30)
            answers.append(client.put(location, params={"digest": digest}, content=last, headers=OCTETS))

    threads = [threading.Thread(target=close) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert len(answers) == count, "a closing PUT got no answer"
    return answers


def test_concurrent_puts_closing_one_session_on_s3(member: RegistryProcess, any_s3: Peer) -> None:
    """Two or three PUTs closing one session (client retries, in both workers): one claims it, under the
    cache lock; the others get 201 with the blob there whole, or BLOB_UPLOAD_UNKNOWN, never a 5xx."""
    with httpx.Client(base_url=member.url, timeout=120) as client:
        for attempt, size in enumerate((300_000, 6 << 20, 300_000, 11 << 20)):
            data = os.urandom(size)
            last = data[-5000:] if attempt >= 2 else b""
            head = data[: len(data) - len(last)]
            location = client.post("/v2/s3race/blobs/uploads/").headers["Location"]
            chunk = client.patch(location, content=head, headers={**OCTETS, "Content-Range": f"0-{len(head) - 1}"})
            assert chunk.status_code == 202, chunk.text
            answers = _concurrent_puts(member.url, location, sha256(data), last)
            for answer in answers:
                assert_sane_response(answer, f"try {attempt}: closing PUT")
                assert answer.status_code in (201, 404), answer.text
                if answer.status_code == 404:
                    assert oci_error_codes(answer) == ["BLOB_UPLOAD_UNKNOWN"]
            assert 201 in [a.status_code for a in answers]
            assert client.get(f"/v2/s3race/blobs/{sha256(data)}").content == data
            late = client.put(location, params={"digest": sha256(data)}, headers=OCTETS)
            assert late.status_code == 201, late.text  # a retry after the fact: the blob is there
    assert blob_objects_not_matching_their_key(any_s3) == []
    assert [key for key in list_objects(any_s3) if "/.uploads/" in key] == []
    assert "Traceback" not in member.log_path.read_text()


def test_a_patch_while_the_session_closes_on_s3(member: RegistryProcess) -> None:
    """A chunk streaming when the PUT arrives: the PUT does not take the session from under it."""
    data, extra = os.urandom(300_000), os.urandom(1 << 20)
    started = threading.Event()

    with httpx.Client(base_url=member.url, timeout=120) as client:
        location = client.post("/v2/s3patch/blobs/uploads/").headers["Location"]
        assert client.patch(location, content=data, headers=OCTETS).status_code == 202
        answers: dict[str, httpx.Response] = {}

        def patch() -> None:
            with httpx.Client(base_url=member.url, timeout=120) as other:
                answers["patch"] = other.patch(
                    location,
                    content=trickle(extra, started),
                    headers={
                        **OCTETS,
                        "Content-Length": str(len(extra)),
                        "Content-Range": f"{len(data)}-{len(data) + len(extra) - 1}",
                    },
                )

        thread = threading.Thread(target=patch)
        thread.start()
        assert started.wait(30)
        time.sleep(0.2)
        early = client.put(location, params={"digest": sha256(data)}, headers=OCTETS)
        thread.join(60)
        assert_sane_response(early, "PUT during a PATCH")
        assert (early.status_code, oci_error_codes(early)) == (404, ["BLOB_UPLOAD_UNKNOWN"]), early.text
        assert answers["patch"].status_code == 202, answers["patch"].text
        done = client.put(location, params={"digest": sha256(data + extra)}, headers=OCTETS)
        assert done.status_code == 201, done.text
        assert client.get(f"/v2/s3patch/blobs/{sha256(data + extra)}").content == data + extra


def _put_object(s3: Peer, key: str, body: bytes) -> None:
    client = s3_client(s3)
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists):
        client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key=key, Body=body)


def test_a_zot_bucket_with_null_manifests_and_damaged_indexes(
    tmp_path: Path, s3_server: Peer, redis_server: Peer
) -> None:
    image = make_image("zot-s3-root")
    layout = b'{"imageLayoutVersion":"1.0.0"}'
    _put_object(s3_server, f"{ROOT}/zot/emptied/oci-layout", layout)
    _put_object(s3_server, f"{ROOT}/zot/emptied/index.json", b'{"schemaVersion":2,"manifests":null}')
    damaged = {"broken/notjson": b"{not json", "broken/list": b"[1]", "broken/manifests": b'{"manifests":"x"}'}
    for name, content in damaged.items():
        _put_object(s3_server, f"{ROOT}/{name}/oci-layout", layout)
        _put_object(s3_server, f"{ROOT}/{name}/index.json", content)
    with s3_member(tmp_path / "zot-root", s3_server, redis_cache(redis_server)).start() as process:
        with httpx.Client(base_url=process.url, timeout=60) as client:
            tags = client.get("/v2/zot/emptied/tags/list")
            assert (tags.status_code, tags.json()) == (200, {"name": "zot/emptied", "tags": []}), tags.text
            missing = client.get("/v2/zot/emptied/manifests/latest")
            assert (missing.status_code, oci_error_codes(missing)) == (404, ["MANIFEST_UNKNOWN"]), missing.text
            referrers = client.get(f"/v2/zot/emptied/referrers/{image.digest}")
            assert referrers.status_code == 200 and referrers.json()["manifests"] == []
            assert push_image(client, "zot/emptied", image, "v1").status_code == 201
            assert client.get("/v2/zot/emptied/tags/list").json()["tags"] == ["v1"]
            for name, content in damaged.items():
                for blob in [image.config, *image.layers]:
                    client.post(f"/v2/{name}/blobs/uploads/", params={"digest": sha256(blob)}, content=blob)
                answers = [
                    client.get(f"/v2/{name}/tags/list"),
                    client.get(f"/v2/{name}/manifests/v1"),
                    client.get(f"/v2/{name}/referrers/{image.digest}"),
                    client.put(
                        f"/v2/{name}/manifests/v1",
                        content=image.manifest,
                        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
                    ),
                    client.delete(f"/v2/{name}/manifests/{image.digest}"),
                ]
                for answer in answers:
                    assert_sane_response(answer, f"damaged {name}")
                for answer in (answers[0], answers[3]):
                    assert (answer.status_code, oci_error_codes(answer)) == (404, ["NAME_UNKNOWN"]), answer.text
                assert read_object(s3_server, f"{ROOT}/{name}/index.json") == content, f"{name} was rewritten"
        assert "Traceback" not in process.log_path.read_text()


def test_manifests_of_the_wrong_shape_are_manifest_invalid_on_s3(
    tmp_path: Path, s3_server: Peer, redis_server: Peer
) -> None:
    member = s3_member(tmp_path / "shapes", s3_server, redis_cache(redis_server))
    with member.start() as process, httpx.Client(base_url=process.url, timeout=60) as client:
        subject = make_image("s3-subject")
        assert push_image(client, "shapes", subject, "v1").status_code == 201
        descriptor = {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": subject.digest,
            "size": len(subject.manifest),
        }
        image = make_image("s3-typed", subject=descriptor, artifact_type="application/x.typed")
        assert push_image(client, "shapes", image, "good").status_code == 201
        for label, media_type, body in invalid_manifests(image, subject):
            answer = client.put(
                f"/v2/shapes/manifests/{sha256(body)}", content=body, headers={"Content-Type": media_type}
            )
            assert_sane_response(answer, label)
            assert (answer.status_code, oci_error_codes(answer)) == (400, ["MANIFEST_INVALID"]), (
                label,
                answer.text,
            )
        assert client.get("/v2/shapes/tags/list").json()["tags"] == ["good", "v1"]
        found = client.get(f"/v2/shapes/referrers/{subject.digest}").json()["manifests"]
        assert [m["digest"] for m in found] == [image.digest]
