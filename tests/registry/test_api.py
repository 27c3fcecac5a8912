"""The OCI API of one `zot-registry serve` process, over real HTTP."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support.images import OCI_MANIFEST, make_image, push_image, sha256
from tests.support.rawhttp import oci_code as error_code
from tests.support.registry import RegistryProcess, write_htpasswd


def test_base_and_probes(client: httpx.Client) -> None:
    assert client.get("/v2/").status_code == 200
    assert client.get("/v2/").headers["Docker-Distribution-API-Version"] == "registry/2.0"
    for probe in ("/livez", "/readyz", "/startupz"):
        assert client.get(probe).status_code == 200


def test_push_pull_roundtrip_is_byte_exact(client: httpx.Client) -> None:
    image = make_image("roundtrip")
    response = push_image(client, "library/app", image, tag="v1")
    assert response.status_code == 201
    assert response.headers["Docker-Content-Digest"] == image.digest
    assert response.headers["Location"] == f"/v2/library/app/manifests/{image.digest}"
    for ref in ("v1", image.digest):
        got = client.get(f"/v2/library/app/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        assert got.status_code == 200
        assert got.content == image.manifest
        assert got.headers["Content-Type"] == OCI_MANIFEST
        assert got.headers["Docker-Content-Digest"] == image.digest
        head = client.head(f"/v2/library/app/manifests/{ref}")
        assert head.status_code == 200 and head.headers["Content-Length"] == str(len(image.manifest))
    for blob in image.layers:
        assert client.get(f"/v2/library/app/blobs/{sha256(blob)}").content == blob


def test_blob_ranges(client: httpx.Client) -> None:
    blob = os.urandom(10_000)
    client.post("/v2/r/blobs/uploads/", params={"digest": sha256(blob)}, content=blob)
    part = client.get(f"/v2/r/blobs/{sha256(blob)}", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == blob[100:200]
    assert part.headers["Content-Range"] == "bytes 100-199/10000"
    suffix = client.get(f"/v2/r/blobs/{sha256(blob)}", headers={"Range": "bytes=-10"})
    assert suffix.status_code == 206 and suffix.content == blob[-10:]
    bad = client.get(f"/v2/r/blobs/{sha256(blob)}", headers={"Range": "bytes=20000-"})
    assert bad.status_code == 416
    assert bad.headers["Content-Range"] == "bytes */10000"


def test_chunked_upload_and_status(client: httpx.Client) -> None:
    blob = os.urandom(300_000)
    start = client.post("/v2/chunked/blobs/uploads/")
    assert start.status_code == 202
    location = start.headers["Location"]
    first = client.patch(
        location,
        content=blob[:100_000],
        headers={"Content-Range": "0-99999", "Content-Type": "application/octet-stream"},
    )
    assert first.status_code == 202 and first.headers["Range"] == "0-99999"
    status = client.get(first.headers["Location"])
    assert status.status_code == 204 and status.headers["Range"] == "0-99999"
    out_of_order = client.patch(location, content=blob[200_000:], headers={"Content-Range": "200000-299999"})
    assert out_of_order.status_code == 416
    assert error_code(out_of_order) == "BLOB_UPLOAD_INVALID"
    second = client.patch(location, content=blob[100_000:200_000], headers={"Content-Range": "100000-199999"})
    assert second.status_code == 202
    done = client.put(location, params={"digest": sha256(blob)}, content=blob[200_000:])
    assert done.status_code == 201
    assert client.get(f"/v2/chunked/blobs/{sha256(blob)}").content == blob


def test_a_client_gone_mid_chunk_leaves_the_session_as_it_was_and_the_registry_serving(
    client: httpx.Client, registry: RegistryProcess
) -> None:
    # The request is answered without Quart (api/front.py): the client's disconnect must still stop
    # its handler, at once, rather than leave it waiting for the rest of the body.
    location = client.post("/v2/gone/blobs/uploads/").headers["Location"]
    head = f"PATCH {location} HTTP/1.1\r\nHost: {registry.hostport}\r\nContent-Length: {10 << 20}\r\n\r\n"
    with socket.create_connection((registry.host, registry.port)) as raw:
        raw.sendall(head.encode() + os.urandom(1 << 20))
        time.sleep(0.5)  # the handler is appending what came
    deadline = time.monotonic() + 5.0
    while (status := client.get(location)).status_code != 204 or status.headers["Range"] != "0-0":
        assert time.monotonic() < deadline, f"the half-sent chunk is still held: {status.status_code} {status.headers}"
        time.sleep(0.1)
    blob = os.urandom(1000)
    done = client.put(location, params={"digest": sha256(blob)}, content=blob)
    assert done.status_code == 201
    assert client.get(f"/v2/gone/blobs/{sha256(blob)}").content == blob


def test_answers_without_a_body_claim_no_content_type(client: httpx.Client) -> None:
    # Quart gave every empty answer `text/html; charset=utf-8`; distribution and zot send none.
    blob = os.urandom(1000)
    started = client.post("/v2/bare/blobs/uploads/")
    status = client.get(started.headers["Location"])
    patched = client.patch(started.headers["Location"], content=blob[:500])
    done = client.put(patched.headers["Location"], params={"digest": sha256(blob)}, content=blob[500:])
    image = make_image("bare")
    pushed = push_image(client, "bare", image, tag="v1")
    deleted = client.delete(f"/v2/bare/manifests/{image.digest}")
    cancelled = client.delete(client.post("/v2/bare/blobs/uploads/").headers["Location"])
    answers = {"POST": started, "GET": status, "PATCH": patched, "PUT": done, "manifest PUT": pushed}
    answers |= {"manifest DELETE": deleted, "upload DELETE": cancelled}
    assert [a.status_code for a in answers.values()] == [202, 204, 202, 201, 201, 202, 204]
    assert {what: a.headers.get("Content-Type") for what, a in answers.items()} == dict.fromkeys(answers)


def test_upload_cancel(client: httpx.Client) -> None:
    location = client.post("/v2/cancel/blobs/uploads/").headers["Location"]
    assert client.delete(location).status_code == 204
    gone = client.get(location)
    assert gone.status_code == 404 and error_code(gone) == "BLOB_UPLOAD_UNKNOWN"


def test_cross_repository_mount(client: httpx.Client, registry: RegistryProcess) -> None:
    blob = os.urandom(5000)
    client.post("/v2/source/blobs/uploads/", params={"digest": sha256(blob)}, content=blob)
    mounted = client.post("/v2/target/blobs/uploads/", params={"mount": sha256(blob), "from": "source"})
    assert mounted.status_code == 201
    assert client.get(f"/v2/target/blobs/{sha256(blob)}").content == blob
    # Without `from`, the registry may find the blob itself.
    automatic = client.post("/v2/other/blobs/uploads/", params={"mount": sha256(blob)})
    assert automatic.status_code == 201
    # A blob it does not have: fall back to a new upload session.
    missing = client.post("/v2/target/blobs/uploads/", params={"mount": sha256(b"nope"), "from": "source"})
    assert missing.status_code == 202 and "/blobs/uploads/" in missing.headers["Location"]
    # dedupe: every repository's copy is the same inode
    inodes = {
        (registry.root / repo / "blobs" / "sha256" / sha256(blob)[7:]).stat().st_ino
        for repo in ("source", "target", "other")
    }
    assert len(inodes) == 1


def test_sha512_blob(client: httpx.Client) -> None:
    blob = b"sha512 content"
    digest = "sha512:" + hashlib.sha512(blob).hexdigest()
    assert client.post("/v2/s/blobs/uploads/", params={"digest": digest}, content=blob).status_code == 201
    assert client.get(f"/v2/s/blobs/{digest}").content == blob


def test_tags_and_catalog_pagination(client: httpx.Client) -> None:
    image = make_image("tags")
    for tag in ("c", "a", "b", "d"):
        assert push_image(client, "paged", image, tag=tag).status_code == 201
    assert client.get("/v2/paged/tags/list").json() == {"name": "paged", "tags": ["a", "b", "c", "d"]}
    page = client.get("/v2/paged/tags/list", params={"n": 2})
    assert page.json()["tags"] == ["a", "b"]
    assert page.headers["Link"] == '</v2/paged/tags/list?n=2&last=b>; rel="next"'
    assert client.get("/v2/paged/tags/list", params={"n": 2, "last": "b"}).json()["tags"] == ["c", "d"]
    for repo in ("zeta", "alpha/one"):
        push_image(client, repo, image, tag="x")
    catalog = client.get("/v2/_catalog", params={"n": 2})
    assert catalog.json() == {"repositories": ["alpha/one", "paged"]}
    assert "last=paged" in catalog.headers["Link"]
    assert client.get("/v2/_catalog", params={"last": "paged"}).json() == {"repositories": ["zeta"]}


def test_manifest_delete_keeps_shared_blobs(client: httpx.Client) -> None:
    one = make_image("shared", layer_sizes=(4096,))
    two = make_image("shared", layer_sizes=(4096,))  # same layer
    two.manifest = two.manifest.replace(b'"schemaVersion": 2', b'"schemaVersion": 2, "annotations": {"x": "y"}')
    push_image(client, "keep", one, tag="one")
    push_image(client, "keep", two, tag="two")
    assert client.delete(f"/v2/keep/manifests/{one.digest}").status_code == 202
    assert client.get(f"/v2/keep/manifests/{one.digest}").status_code == 404
    assert client.get("/v2/keep/manifests/two").content == two.manifest
    assert client.get(f"/v2/keep/blobs/{sha256(one.layers[0])}").status_code == 200
    # deleting a tag leaves the manifest reachable by digest
    assert client.delete("/v2/keep/manifests/two").status_code == 202
    assert client.get("/v2/keep/manifests/two").status_code == 404
    assert client.get(f"/v2/keep/manifests/{two.digest}").status_code == 200


def test_referrers_with_artifact_type_filter(client: httpx.Client) -> None:
    subject_image = make_image("subject")
    push_image(client, "refs", subject_image, tag="v1")
    subject = {"mediaType": OCI_MANIFEST, "digest": subject_image.digest, "size": len(subject_image.manifest)}
    sbom = make_image("sbom", subject=subject, artifact_type="application/spdx+json")
    sig = make_image("sig", subject=subject, artifact_type="application/vnd.dev.cosign")
    for artifact in (sbom, sig):
        response = push_image(client, "refs", artifact)
        assert response.status_code == 201
        assert response.headers["OCI-Subject"] == subject_image.digest
    listing = client.get(f"/v2/refs/referrers/{subject_image.digest}")
    assert listing.status_code == 200
    assert listing.headers["Content-Type"] == "application/vnd.oci.image.index.v1+json"
    found = {m["digest"]: m["artifactType"] for m in listing.json()["manifests"]}
    assert found == {sbom.digest: "application/spdx+json", sig.digest: "application/vnd.dev.cosign"}
    filtered = client.get(
        f"/v2/refs/referrers/{subject_image.digest}", params={"artifactType": "application/spdx+json"}
    )
    assert [m["digest"] for m in filtered.json()["manifests"]] == [sbom.digest]
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    unknown = client.get(f"/v2/refs/referrers/{sha256(b'nothing')}")
    assert unknown.status_code == 200 and unknown.json()["manifests"] == []


def test_docker_media_types(client: httpx.Client) -> None:
    image = make_image("docker")
    doc = json.loads(image.manifest)
    doc["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json"
    doc["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json"
    body = json.dumps(doc).encode()
    push_image(client, "dockerish", image, tag="ignored")
    put = client.put(
        "/v2/dockerish/manifests/latest",
        content=body,
        headers={"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    assert put.status_code == 201
    got = client.get("/v2/dockerish/manifests/latest")
    assert got.headers["Content-Type"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert got.content == body


def test_htpasswd_auth(start_registry: Callable[..., RegistryProcess], tmp_path: Path) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "wonderland"})
    registry = start_registry(auth={"htpasswd": {"path": str(htpasswd)}}, realm="zot-test")
    with httpx.Client(base_url=registry.url) as anonymous:
        denied = anonymous.get("/v2/")
        assert denied.status_code == 401 and error_code(denied) == "UNAUTHORIZED"
        assert denied.headers["WWW-Authenticate"] == 'Basic realm="zot-test"'
        assert anonymous.get("/v2/", auth=("alice", "wrong")).status_code == 401
        assert anonymous.get("/v2/", auth=("bob", "wonderland")).status_code == 401
        assert anonymous.get("/v2/", headers={"Authorization": "Basic !!!"}).status_code == 401
        # probes and metrics stay open, so kubelet needs no credentials
        for path in ("/livez", "/readyz", "/startupz", "/metrics"):
            assert anonymous.get(path).status_code == 200
    with httpx.Client(base_url=registry.url, auth=("alice", "wonderland")) as alice:
        assert alice.get("/v2/").status_code == 200
        assert push_image(alice, "private", make_image("auth"), tag="v1").status_code == 201


def test_fail_delay_holds_a_failed_login_but_not_the_registry(
    start_registry: Callable[..., RegistryProcess], tmp_path: Path
) -> None:
    """zot's http.auth.failDelay: a failed login is answered after that many seconds, a good one at once,
    and the wait is not the event loop's (other requests go on meanwhile)."""
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "wonderland"})
    registry = start_registry(workers=1, auth={"htpasswd": {"path": str(htpasswd)}, "failDelay": 2})
    with httpx.Client(base_url=registry.url, timeout=30) as anonymous:
        assert anonymous.get("/v2/", auth=("alice", "wonderland")).status_code == 200
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            failing = pool.submit(anonymous.get, "/v2/", auth=("alice", "wrong"))
            time.sleep(0.3)
            assert anonymous.get("/livez").status_code == 200
            assert not failing.done()  # still held back by failDelay while /livez answered
            assert failing.result().status_code == 401
            assert time.monotonic() - started >= 2.0


def test_metrics_count_requests_and_bytes(client: httpx.Client) -> None:
    blob = os.urandom(12345)
    client.post("/v2/m/blobs/uploads/", params={"digest": sha256(blob)}, content=blob)
    client.get(f"/v2/m/blobs/{sha256(blob)}")
    text = client.get("/metrics").text
    assert 'zot_http_requests_total{method="POST",route="uploads",status="201"} 1.0' in text
    assert 'zot_http_sent_bytes_total{route="blob"} 12345.0' in text
    assert 'zot_http_received_bytes_total{route="uploads"} 12345.0' in text
    assert "zot_http_request_duration_seconds_bucket" in text
    assert "zot_storage_used_bytes" in text
