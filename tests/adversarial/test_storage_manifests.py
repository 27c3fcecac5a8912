"""Adversarial storage corpus: manifests with wrong JSON types or nested too deep, manifests of other
kinds that must still push, and zot roots with `"manifests": null` or damaged index.json files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.bad_manifests import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    TAG_ANNOTATION,
    deep_json,
    descriptor,
    invalid_manifests,
    manifest_document,
)
from tests.support.checks import (
    oci_error_codes,
)
from tests.support.images import Image, make_image, sha256
from tests.support.sites import Site, SiteFactory

# 5 and 6. Manifests with wrong JSON types, and JSON nested too deep -------------------------------


@pytest.mark.parametrize("dedupe", [True, False], ids=["dedupe", "no-dedupe"])
def test_manifests_with_wrong_json_types_are_manifest_invalid(site: SiteFactory, dedupe: bool) -> None:
    s = site(dedupe=dedupe)
    subject = make_image("subject")
    assert s.push("m", subject, "v1").status_code == 201
    image = make_image("typed", subject=descriptor(subject), artifact_type="application/x.typed")
    assert s.push("m", image, "good").status_code == 201  # its blobs are in place; its manifest is valid
    cases = invalid_manifests(image, subject)
    tags_before = s.client.get("/v2/m/tags/list").json()["tags"]
    for label, media_type, body in cases:
        for reference in ("bad", sha256(body)):
            response = s.check(
                s.client.put(f"/v2/m/manifests/{reference}", content=body, headers={"Content-Type": media_type}),
                label,
                {400},
                "MANIFEST_INVALID",
            )
            assert response.status_code == 400
        s.check(s.client.get(f"/v2/m/manifests/{sha256(body)}"), f"{label}: not stored", {404})
    assert s.client.get("/v2/m/tags/list").json()["tags"] == tags_before
    referrers = s.check(s.client.get(f"/v2/m/referrers/{subject.digest}"), "referrers", {200}).json()["manifests"]
    assert [r["digest"] for r in referrers] == [image.digest]
    s.finish()


def put_document(s: Site, tag: str, document: dict[str, Any], media_type: str, case: str) -> None:
    """PUT `document` as the manifest d:TAG of type `media_type`: it must be stored (201)."""
    body = json.dumps(document).encode()
    s.check(s.client.put(f"/v2/d/manifests/{tag}", content=body, headers={"Content-Type": media_type}), case, {201})


def test_docker_manifests_and_lists_and_oci_indexes_still_push(site: SiteFactory) -> None:
    s = site()
    image = make_image("docker-shapes")
    assert s.push("d", image, "oci").status_code == 201
    docker = manifest_document(image)
    docker["mediaType"] = DOCKER_MANIFEST
    docker["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json"
    for layer in docker["layers"]:
        layer["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    docker_body = json.dumps(docker).encode()
    s.check(
        s.client.put("/v2/d/manifests/docker", content=docker_body, headers={"Content-Type": DOCKER_MANIFEST}),
        "docker manifest",
        {201},
    )
    entry = {
        "mediaType": DOCKER_MANIFEST,
        "digest": sha256(docker_body),
        "size": len(docker_body),
        "platform": {"architecture": "arm", "os": "linux", "variant": "v7", "features": ["sse4"]},
    }
    docker_list = {"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [entry]}
    put_document(s, "list", docker_list, DOCKER_LIST, "docker manifest list")
    oci_index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "annotations": {"a": "b"},
        "manifests": [
            {
                **descriptor(image),
                "platform": {"architecture": "amd64", "os": "linux", "os.version": "1", "os.features": ["x"]},
                "annotations": {"k": "v"},
            }
        ],
    }
    put_document(s, "index", oci_index, OCI_INDEX, "OCI index")
    # Foreign layers (urls) and an artifact with an empty config, no layers and a subject.
    foreign = manifest_document(image)
    foreign["layers"].append(
        {
            "mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar",
            "digest": sha256(b"elsewhere"),
            "size": 9,
            "urls": ["https://example.com/x"],
        }
    )
    put_document(s, "foreign", foreign, OCI_MANIFEST, "foreign layer")
    empty = b"{}"
    s.check(s.client.post("/v2/d/blobs/uploads/", params={"digest": sha256(empty)}, content=empty), "empty", {201})
    artifact = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/x.sig",
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": sha256(empty),
            "size": 2,
            "data": "e30=",
        },
        "layers": [],
        "subject": descriptor(image),
        "annotations": {"created": "now"},
    }
    put_document(s, "sig", artifact, OCI_MANIFEST, "artifact")
    tags = s.check(s.client.get("/v2/d/tags/list"), "tags", {200}).json()["tags"]
    assert tags == ["docker", "foreign", "index", "list", "oci", "sig"]
    s.finish()


# 4. zot roots with `"manifests": null`, and damaged index.json files ------------------------------

ZOT_NULL_INDEX = b'{"schemaVersion":2,"manifests":null}'
# index.json contents no registry should have written; each repository is unreadable but nothing 500s.
DAMAGED_INDEXES: dict[str, bytes] = {
    "broken/notjson": b"{not json",
    "broken/list": b"[1, 2]",
    "broken/string": b'"index"',
    "broken/manifests-string": b'{"schemaVersion":2,"manifests":"nope"}',
    "broken/manifests-object": b'{"schemaVersion":2,"manifests":{}}',
    "broken/deep": deep_json(100_000).encode(),
    "broken/binary": b"\xff\xfe\x00garbage",
}
# Entries a reader cannot use, beside a good one: the good one is served, the others kept as found.
PARTLY_BROKEN = "broken/entries"


def _zot_repository(root: Path, name: str, index: bytes, blobs: list[bytes]) -> None:
    """A repository folder as zot writes it: oci-layout, index.json and the blobs under their digests."""
    repo = root / name
    (repo / "blobs" / "sha256").mkdir(parents=True)
    (repo / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (repo / "index.json").write_bytes(index)
    for blob in blobs:
        (repo / "blobs/sha256" / sha256(blob)[7:]).write_bytes(blob)


def _zot_roots(root: Path, good: Image) -> None:
    _zot_repository(root, "zot/emptied", ZOT_NULL_INDEX, [])
    _zot_repository(root, "zot/blobsonly", ZOT_NULL_INDEX, [good.config, *good.layers])
    for name, content in DAMAGED_INDEXES.items():
        _zot_repository(root, name, content, [good.config, *good.layers])
    entries = [
        5,
        None,
        "x",
        {"mediaType": OCI_MANIFEST},
        {"digest": 7},
        {"digest": "sha256:nothex"},
        {"mediaType": OCI_MANIFEST, "digest": good.digest, "size": len(good.manifest), "annotations": 5},
        {
            "mediaType": OCI_MANIFEST,
            "digest": good.digest,
            "size": len(good.manifest),
            "annotations": {TAG_ANNOTATION: "good"},
        },
    ]
    _zot_repository(
        root,
        PARTLY_BROKEN,
        json.dumps({"schemaVersion": 2, "manifests": entries}).encode(),
        [good.config, *good.layers, good.manifest],
    )


def test_zot_roots_with_null_manifests_and_damaged_indexes(site: SiteFactory) -> None:
    good = make_image("zot-root")
    s = site(prepare=lambda root: _zot_roots(root, good))
    for name in ("zot/emptied", "zot/blobsonly"):
        tags = s.check(s.client.get(f"/v2/{name}/tags/list"), f"{name}: tags", {200})
        assert tags.json() == {"name": name, "tags": []}
        s.check(s.client.get(f"/v2/{name}/manifests/latest"), f"{name}: manifest", {404}, "MANIFEST_UNKNOWN")
        s.check(s.client.get(f"/v2/{name}/manifests/{good.digest}"), f"{name}: manifest", {404}, "MANIFEST_UNKNOWN")
        refs = s.check(s.client.get(f"/v2/{name}/referrers/{good.digest}"), f"{name}: referrers", {200})
        assert refs.json()["manifests"] == []
        s.check(s.client.delete(f"/v2/{name}/manifests/{good.digest}"), f"{name}: delete", {404}, "MANIFEST_UNKNOWN")
    blobsonly = "zot/blobsonly"
    assert s.client.get(f"/v2/{blobsonly}/blobs/{sha256(good.layers[0])}").content == good.layers[0]
    s.check(
        s.client.put(f"/v2/{blobsonly}/manifests/v1", content=good.manifest, headers={"Content-Type": OCI_MANIFEST}),
        "manifest PUT on a null root",
        {201},
    )
    assert s.client.get(f"/v2/{blobsonly}/tags/list").json()["tags"] == ["v1"]
    s.assert_pulls(blobsonly, good, "v1")
    assert s.push("zot/emptied", good, "v2").status_code == 201
    assert s.client.get("/v2/zot/emptied/tags/list").json()["tags"] == ["v2"]

    for name, content in DAMAGED_INDEXES.items():
        answers = [
            s.client.get(f"/v2/{name}/tags/list"),
            s.client.get(f"/v2/{name}/manifests/v1"),
            s.client.head(f"/v2/{name}/manifests/{good.digest}"),
            s.client.get(f"/v2/{name}/referrers/{good.digest}"),
            s.client.put(f"/v2/{name}/manifests/v1", content=good.manifest, headers={"Content-Type": OCI_MANIFEST}),
            s.client.delete(f"/v2/{name}/manifests/{good.digest}"),
            s.client.get(f"/v2/{name}/blobs/{sha256(good.layers[0])}"),
        ]
        for answer in answers:
            s.check(answer, f"damaged {name}: {answer.request.method} {answer.request.url.path}")
        assert answers[0].status_code == 404 and "NAME_UNKNOWN" in oci_error_codes(answers[0]), answers[0].text
        assert answers[4].status_code == 404 and "NAME_UNKNOWN" in oci_error_codes(answers[4]), answers[4].text
        assert (s.root / name / "index.json").read_bytes() == content, f"{name}: its index.json was rewritten"

    tags = s.check(s.client.get(f"/v2/{PARTLY_BROKEN}/tags/list"), "partly broken: tags", {200})
    assert tags.json()["tags"] == ["good"]
    s.assert_pulls(PARTLY_BROKEN, good, "good")
    s.check(s.client.get(f"/v2/{PARTLY_BROKEN}/referrers/{good.digest}"), "partly broken: referrers", {200})
    before = json.loads((s.root / PARTLY_BROKEN / "index.json").read_bytes())["manifests"]
    s.check(
        s.client.put(
            f"/v2/{PARTLY_BROKEN}/manifests/v2", content=good.manifest, headers={"Content-Type": OCI_MANIFEST}
        ),
        "partly broken: push",
        {201},
    )
    after = json.loads((s.root / PARTLY_BROKEN / "index.json").read_bytes())["manifests"]
    assert [e for e in before if not _usable(e)] == [e for e in after if not _usable(e)], "foreign entries lost"
    assert s.client.get(f"/v2/{PARTLY_BROKEN}/tags/list").json()["tags"] == ["good", "v2"]
    catalog = s.check(s.client.get("/v2/_catalog"), "catalog", {200})
    assert {"zot/emptied", "zot/blobsonly"} <= set(catalog.json()["repositories"])

    # The damaged files were the test's: gone, the rest of the root must be whole.
    for name in DAMAGED_INDEXES:
        (s.root / name / "index.json").unlink()
    s.finish()


def _usable(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("digest"), str)
        and entry["digest"].startswith("sha256:")
        and len(entry["digest"]) == 71
        and isinstance(entry.get("annotations", {}), dict)
    )
