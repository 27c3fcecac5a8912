"""Bad input to the OCI API of one `zot-registry serve` process: invalid names, malformed requests and
manifests, retried and misdirected uploads, and odd repositories on disk; every answer is an OCI
error and no half-written file is left visible."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
from pathlib import Path

import httpx
import pytest

from tests.support.images import OCI_MANIFEST, make_image, push_image, sha256
from tests.support.rawhttp import oci_code as error_code
from tests.support.registry import RegistryProcess


@pytest.mark.parametrize(
    "path",
    [
        "/v2/a/../b/tags/list",
        "/v2/a/%2e%2e/b/tags/list",
        "/v2/Upper/tags/list",
        "/v2/" + "a" * 256 + "/tags/list",
        # A component that is an entry of a repository's layout would write into that layout.
        "/v2/x/blobs/tags/list",
        "/v2/x/index.json/tags/list",
        "/v2/oci-layout/tags/list",
        "/v2/x/blobs/sha256/tags/list",
    ],
)
def test_invalid_names(registry: RegistryProcess, path: str) -> None:
    # http.client sends the path as written; httpx would resolve the `..` before sending it.
    connection = http.client.HTTPConnection(registry.host, registry.port, timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    assert (response.status, body["errors"][0]["code"]) == (400, "NAME_INVALID")


def test_bad_input_gets_oci_errors_and_leaves_no_partial_files(client: httpx.Client, registry: RegistryProcess) -> None:
    blob = os.urandom(4096)
    cases: list[tuple[httpx.Response, int, str]] = []
    cases.append((client.get("/v2/x/blobs/sha256:nothex"), 400, "DIGEST_INVALID"))
    cases.append((client.get("/v2/x/blobs/md5:abc"), 400, "DIGEST_INVALID"))
    cases.append(
        (client.post("/v2/x/blobs/uploads/", params={"digest": sha256(b"other")}, content=blob), 400, "DIGEST_INVALID")
    )
    cases.append(
        (client.post("/v2/x/blobs/uploads/", params={"digest": "sha256:zz"}, content=blob), 400, "DIGEST_INVALID")
    )
    big = b'{"schemaVersion": 2, "pad": "' + b"x" * (4 * 1024 * 1024 + 1) + b'"}'
    cases.append(
        (
            client.put("/v2/x/manifests/big", content=big, headers={"Content-Type": OCI_MANIFEST}),
            413,
            "MANIFEST_INVALID",
        )
    )
    # The 4 MiB body was not read: the answer says so, so the client does not reuse a closing connection.
    assert cases[-1][0].headers.get("connection") == "close"
    cases.append(
        (
            client.put("/v2/x/manifests/bad", content=b"{not json", headers={"Content-Type": OCI_MANIFEST}),
            400,
            "MANIFEST_INVALID",
        )
    )
    missing = make_image("missing-blobs")
    cases.append(
        (
            client.put("/v2/x/manifests/m", content=missing.manifest, headers={"Content-Type": OCI_MANIFEST}),
            400,
            "MANIFEST_BLOB_UNKNOWN",
        )
    )
    cases.append(
        (
            client.put(
                f"/v2/x/manifests/{sha256(b'x')}", content=missing.manifest, headers={"Content-Type": OCI_MANIFEST}
            ),
            400,
            "DIGEST_INVALID",
        )
    )
    location = client.post("/v2/x/blobs/uploads/").headers["Location"]
    cases.append(
        (client.patch(location, content=blob, headers={"Content-Range": "garbage"}), 416, "BLOB_UPLOAD_INVALID")
    )
    cases.append((client.patch(location, content=blob, headers={"Content-Range": "10-5"}), 416, "BLOB_UPLOAD_INVALID"))
    cases.append((client.put(location, params={"digest": sha256(b"not it")}, content=blob), 400, "DIGEST_INVALID"))
    cases.append((client.get("/v2/x/blobs/uploads/not-a-session"), 404, "BLOB_UPLOAD_UNKNOWN"))
    cases.append((client.get("/v2/nothere/tags/list"), 404, "NAME_UNKNOWN"))
    cases.append((client.get("/v2/x/manifests/nope"), 404, "MANIFEST_UNKNOWN"))
    cases.append((client.get("/v2/x/tags/list", params={"n": "-1"}), 400, "PAGINATION_NUMBER_INVALID"))
    cases.append((client.delete(f"/v2/x/blobs/{sha256(b'absent')}"), 404, "BLOB_UNKNOWN"))
    cases.append(
        (
            client.put("/v2/x/manifests/bad tag!", content=b"{}", headers={"Content-Type": OCI_MANIFEST}),
            400,
            "MANIFEST_INVALID",
        )
    )
    for response, status, code in cases:
        assert (response.request.method, response.request.url.path, response.status_code, error_code(response)) == (
            response.request.method,
            response.request.url.path,
            status,
            code,
        )
    assert_no_partial_files(registry.root)


def assert_no_partial_files(root: Path) -> None:
    """Every visible blob is complete and matches its digest; temporary files exist only in .uploads."""
    for directory, _, files in os.walk(root):
        rel = Path(directory).relative_to(root)
        for name in files:
            path = Path(directory) / name
            if ".uploads" in rel.parts:
                continue
            assert not name.startswith((".tmp", ".blob")), f"temporary file left visible: {path}"
            if rel.parent.name == "blobs" or (len(rel.parts) >= 2 and rel.parts[-2] == "blobs"):
                algorithm = rel.name
                assert hashlib.new(algorithm, path.read_bytes()).hexdigest() == name, f"corrupt blob {path}"


def test_mount_from_a_name_that_is_not_a_repository_is_an_upload_session(client: httpx.Client) -> None:
    blob = os.urandom(2000)
    assert client.post("/v2/src/blobs/uploads/", params={"digest": sha256(blob)}, content=blob).status_code == 201
    for source in ("../src", "src/../src", "/src", "src/blobs", "SRC"):
        answer = client.post("/v2/dst/blobs/uploads/", params={"mount": sha256(blob), "from": source})
        assert answer.status_code == 202 and "/blobs/uploads/" in answer.headers["Location"], (source, answer.text)
    assert client.get(f"/v2/dst/blobs/{sha256(blob)}").status_code == 404
    assert client.post("/v2/dst/blobs/uploads/", params={"mount": sha256(blob), "from": "src"}).status_code == 201


def test_a_retried_put_of_a_closed_session_is_answered_cleanly(client: httpx.Client) -> None:
    blob = os.urandom(70_000)
    location = client.post("/v2/retry/blobs/uploads/").headers["Location"]
    assert client.patch(location, content=blob[:50_000]).status_code == 202
    last_chunk = {"Content-Range": f"50000-{len(blob) - 1}"}
    done = client.put(location, params={"digest": sha256(blob)}, content=blob[50_000:], headers=last_chunk)
    assert done.status_code == 201
    # The client did not see the first answer and sends the PUT again: the blob is there, whole.
    again = client.put(location, params={"digest": sha256(blob)}, content=blob[50_000:], headers=last_chunk)
    assert again.status_code == 201, again.text
    assert client.get(f"/v2/retry/blobs/{sha256(blob)}").content == blob
    other = client.put(location, params={"digest": sha256(b"something else")})
    assert other.status_code == 404 and error_code(other) == "BLOB_UPLOAD_UNKNOWN"


def test_manifest_fields_of_the_wrong_json_type_are_manifest_invalid(client: httpx.Client) -> None:
    image = make_image("typed")
    assert push_image(client, "typed", image, tag="v1").status_code == 201
    document = json.loads(image.manifest)
    for field, value in (("layers", [None]), ("annotations", 5), ("config", "sha256:0"), ("subject", [])):
        body = json.dumps({**document, field: value}).encode()
        answer = client.put("/v2/typed/manifests/bad", content=body, headers={"Content-Type": OCI_MANIFEST})
        assert (answer.status_code, error_code(answer)) == (400, "MANIFEST_INVALID"), (field, answer.text)
        assert field in answer.json()["errors"][0]["message"]
    deep = b"[" * 100_000 + b"]" * 100_000
    answer = client.put("/v2/typed/manifests/deep", content=deep, headers={"Content-Type": OCI_MANIFEST})
    assert (answer.status_code, error_code(answer)) == (400, "MANIFEST_INVALID")
    assert client.get("/v2/typed/tags/list").json()["tags"] == ["v1"]


def test_a_zot_repository_with_null_manifests_lists_no_tags(client: httpx.Client, registry: RegistryProcess) -> None:
    repo = registry.root / "zot" / "emptied"
    (repo / "blobs" / "sha256").mkdir(parents=True)
    (repo / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (repo / "index.json").write_bytes(b'{"schemaVersion":2,"manifests":null}')
    assert client.get("/v2/zot/emptied/tags/list").json() == {"name": "zot/emptied", "tags": []}
    missing = client.get("/v2/zot/emptied/manifests/latest")
    assert (missing.status_code, error_code(missing)) == (404, "MANIFEST_UNKNOWN")
    assert client.get(f"/v2/zot/emptied/referrers/{sha256(b'x')}").json()["manifests"] == []
    assert push_image(client, "zot/emptied", make_image("after-null"), tag="v1").status_code == 201
    assert client.get("/v2/zot/emptied/tags/list").json()["tags"] == ["v1"]
