"""Adversarial storage corpus: requests that try to leave the root or overlap another repository's
layout (more in test_storage_sessions, test_storage_manifests, test_storage_disk).

Every answer goes through tests.support.checks.assert_sane_response (no unexplained 5xx, OCI
error bodies, no traceback); a sentinel outside the root (Surroundings) proves nothing there is read
or written; each test ends with assert_root_intact(root): every stored blob hashes to its digest.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from zot_registry.digests import Digest
from zot_registry.errors import BlobUploadUnknown, DigestInvalid, NameInvalid
from zot_registry.storage.local.layout import LocalLayout

from tests.support.bad_manifests import (
    OCI_MANIFEST,
    TAG_ANNOTATION,
)
from tests.support.images import make_image, sha256
from tests.support.sites import OCTETS, Site, SiteFactory, files_containing

# 1. Path traversal in every parameter that names a path ---------------------------------------


def _plant_outside(site: Site) -> dict[str, str]:
    """Files beside the root that a traversal would find: an OCI layout holding the sentinel's bytes."""
    secret = site.surroundings.secret
    folder = site.surroundings.folder
    verified, decoy = sha256(secret), sha256(b"decoy")
    tag = secret.decode()
    planted: list[Path] = []
    for layout in (folder / "outside", folder):
        for digest in (verified, decoy):
            blob = layout / "blobs" / "sha256" / digest[7:]
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(secret)
            planted.append(blob)
        descriptor = {
            "mediaType": OCI_MANIFEST,
            "digest": verified,
            "size": len(secret),
            "annotations": {TAG_ANNOTATION: tag},
        }
        (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [descriptor]}))
        (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        planted += [layout / "index.json", layout / "oci-layout"]
    site.surroundings.before.update(planted)
    return {"d1": verified, "d2": decoy, "hex1": verified[7:], "tag": tag}


# (method, raw path and query, what may answer); {d1} is a blob beside the root holding the sentinel.
TRAVERSALS: list[tuple[str, str, set[int]]] = [
    ("GET", "/v2/../outside/tags/list", {400, 404}),
    ("GET", "/v2/%2e%2e/outside/tags/list", {400, 404}),
    ("GET", "/v2/x/../../outside/tags/list", {400, 404}),
    ("GET", "/v2/x/%2e%2e/%2e%2e/outside/tags/list", {400, 404}),
    ("GET", "/v2/x%2f..%2f..%2foutside/tags/list", {400, 404}),
    ("GET", "/v2/x/..%2F..%2Foutside/tags/list", {400, 404}),
    ("GET", "/v2/../outside/manifests/{tag}", {400, 404}),
    ("GET", "/v2/..%2foutside/manifests/{d1}", {400, 404}),
    ("HEAD", "/v2/../outside/manifests/{d1}", {400, 404}),
    ("GET", "/v2/../outside/blobs/{d1}", {400, 404}),
    ("GET", "/v2/%2e%2e%2foutside/blobs/{d2}", {400, 404}),
    ("GET", "/v2/../blobs/{d1}", {400, 404}),
    ("GET", "/v2/x/blobs/sha256:..%2f..%2f..%2foutside", {400, 404}),
    ("GET", "/v2/x/blobs/..%2f..%2foutside%2fblobs%2fsha256%2f{hex1}", {400, 404}),
    ("GET", "/v2/x/blobs/sha256:../../../outside/blobs/sha256/{hex1}", {400, 404}),
    ("GET", "/v2/../outside/referrers/{d1}", {400, 404}),
    ("GET", "/v2/x/referrers/..%2f..%2foutside", {400, 404}),
    ("GET", "/v2/x/blobs/uploads/..", {400, 404}),
    ("GET", "/v2/x/blobs/uploads/%2e%2e", {400, 404}),
    ("GET", "/v2/x/blobs/uploads/..%2f..%2f..%2foutside%2fsecret.txt", {400, 404}),
    ("PATCH", "/v2/x/blobs/uploads/..%2f..%2f..%2foutside%2fsecret.txt", {400, 404, 405}),
    ("PATCH", "/v2/x/blobs/uploads/%2e%2e", {400, 404}),
    ("PUT", "/v2/x/blobs/uploads/..%2f..%2f..%2foutside%2fsecret.txt?digest={d1}", {400, 404, 405}),
    ("PUT", "/v2/x/blobs/uploads/..?digest={d1}", {400, 404}),
    ("DELETE", "/v2/x/blobs/uploads/..%2f..%2f..%2foutside%2fsecret.txt", {400, 404, 405}),
    ("DELETE", "/v2/x/blobs/uploads/..", {400, 404}),
    ("DELETE", "/v2/../outside/blobs/{d1}", {400, 404}),
    ("DELETE", "/v2/../outside/manifests/{d1}", {400, 404}),
    ("PUT", "/v2/../outside/manifests/v1", {400, 404}),
    ("PUT", "/v2/x/manifests/..%2f..%2foutside", {400, 404, 405}),
    ("PUT", "/v2/x/manifests/v1%2f..%2f..%2fescape", {400, 404, 405}),
    ("PUT", "/v2/x/manifests/..", {400, 404}),
    ("POST", "/v2/../outside/blobs/uploads/", {400, 404}),
    ("POST", "/v2/x/blobs/uploads/?digest=sha256:..%2f..%2foutside", {400}),
    ("POST", "/v2/x/blobs/uploads/?digest=../../outside/blobs/sha256/{hex1}", {400}),
    ("POST", "/v2/x/blobs/uploads/?mount=..%2f..%2foutside&from=x", {400}),
    # A mount from a name that is not a repository of this registry is not mountable: the spec's
    # fallback is an ordinary upload session (202), never the file the name points at.
    ("POST", "/v2/y/blobs/uploads/?mount={d1}&from=../outside", {202}),
    ("POST", "/v2/y/blobs/uploads/?mount={d1}&from=..%2foutside", {202}),
    ("POST", "/v2/y/blobs/uploads/?mount={d2}&from=../outside", {202}),
    ("POST", "/v2/y/blobs/uploads/?mount={d1}&from=..", {202}),
    ("POST", "/v2/y/blobs/uploads/?mount={d1}&from=x/../../outside", {202}),
    ("POST", "/v2/y/blobs/uploads/?mount={d1}&from=%2e%2e%2foutside", {202}),
    ("POST", "/v2/y/blobs/uploads/?mount={d1}&from={root_parent}/outside", {202}),
    ("POST", "/v2/y/blobs/uploads/?mount={d1}&from=x%2f..%2f..%2foutside", {202}),
]


@pytest.mark.parametrize("dedupe", [True, False], ids=["dedupe", "no-dedupe"])
def test_path_traversal_in_every_parameter_stays_in_the_root(site: SiteFactory, dedupe: bool) -> None:
    s = site(dedupe=dedupe)
    values = _plant_outside(s)
    values["root_parent"] = str(s.root.parent)
    image = make_image("traversal")
    assert s.push("x", image, "v1").status_code == 201
    manifest = make_image("escape").manifest
    for method, template, statuses in TRAVERSALS:
        path = template.format(**values)
        body = manifest if method == "PUT" and "/manifests/" in path else b""
        headers = {"Content-Type": OCI_MANIFEST} if body else {}
        s.check(s.raw(method, path, body, headers), f"{method} {path}", statuses)
    for digest in (values["d1"], values["d2"]):
        for repo in ("y", "x"):
            s.check(s.client.get(f"/v2/{repo}/blobs/{digest}"), f"{repo} must not hold {digest}", {404})
    assert files_containing(s.root, s.surroundings.secret) == []
    s.assert_pulls("x", image, "v1")
    s.finish()


def test_layout_never_builds_a_path_outside_the_root(tmp_path: Path) -> None:
    """Defence in depth: the store refuses any name, digest or session that is not one of its own."""
    layout = LocalLayout(tmp_path)
    good = Digest("sha256", "a" * 64)
    for name in ("..", "../x", "x/../../y", "/etc", "x//y", "", "X", "x/blobs", "index.json"):
        with pytest.raises(NameInvalid):
            layout.repo(name)
        with pytest.raises(NameInvalid):
            layout.blob(name, good)
        with pytest.raises(NameInvalid):
            layout.index(name)
    for digest in (
        Digest("sha256", "../../etc/passwd"),
        Digest("..", "a" * 64),
        Digest("sha256", "A" * 64),
        Digest("md5", "a" * 32),
    ):
        with pytest.raises(DigestInvalid):
            layout.blob("x", digest)
        with pytest.raises(DigestInvalid):
            layout.dedupe_blob(digest)
    for session in ("..", "../x", "a" * 31, "/etc/passwd", ".index.lock"):
        with pytest.raises(BlobUploadUnknown):
            layout.upload("x", session)


# 3. Names that overlap another repository's layout ----------------------------------------------


def _overlapping_names(hex_digest: str) -> list[str]:
    return [
        "x/index.json",
        "x/oci-layout",
        "x/blobs",
        "x/blobs/sha256",
        f"x/blobs/sha256/{hex_digest}",
        "blobs",
        "index.json",
        "oci-layout",
        "a/blobs/b",
        "blobs/x",
        "x/blobs/sha512",
    ]


def _foreign_nested_layout(root: Path) -> None:
    """What an older registry left: a repository `q/blobs` whose own layout sits inside `q/blobs/`."""
    nested = root / "q" / "blobs"
    (nested / "blobs" / "sha256").mkdir(parents=True)
    (nested / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (nested / "index.json").write_text('{"schemaVersion":2,"manifests":[]}')


@pytest.mark.parametrize("dedupe", [True, False], ids=["dedupe", "no-dedupe"])
def test_names_overlapping_a_repository_layout_are_name_invalid(site: SiteFactory, dedupe: bool) -> None:
    s = site(dedupe=dedupe, prepare=_foreign_nested_layout, gc=True, gcDelay="1h", gcInterval="1s")
    image = make_image("overlap")
    assert s.push("x", image, "v1").status_code == 201
    blob = os.urandom(3000)
    for name in _overlapping_names(sha256(image.layers[0])[7:]):
        case = f"repository {name!r}"
        s.check(
            s.client.post(f"/v2/{name}/blobs/uploads/", params={"digest": sha256(blob)}, content=blob, headers=OCTETS),
            case,
            {400},
            "NAME_INVALID",
        )
        s.check(s.client.post(f"/v2/{name}/blobs/uploads/"), case, {400}, "NAME_INVALID")
        s.check(
            s.client.put(f"/v2/{name}/manifests/v1", content=image.manifest, headers={"Content-Type": OCI_MANIFEST}),
            case,
            {400},
            "NAME_INVALID",
        )
        s.check(s.client.get(f"/v2/{name}/tags/list"), case, {400}, "NAME_INVALID")
        s.check(
            s.client.post("/v2/z/blobs/uploads/", params={"mount": sha256(image.layers[0]), "from": name}),
            f"mount from {name!r}",
            {202},
        )
    # `x` is whole and still takes pushes; `q`, beside an old `q/blobs` layout, works too.
    s.assert_pulls("x", image, "v1")
    second = make_image("overlap-2")
    assert s.push("x", second, "v2").status_code == 201
    assert s.push("q", second, "v1").status_code == 201
    s.assert_pulls("q", second, "v1")
    assert s.check(s.client.get("/v2/x/tags/list"), "tags", {200}).json()["tags"] == ["v1", "v2"]
    catalog = s.check(s.client.get("/v2/_catalog"), "catalog", {200}).json()["repositories"]
    assert catalog == ["q", "x", "z"]  # z: the mounts fell back to upload sessions there
    time.sleep(2.5)  # a few garbage collection passes over `q` and `x`
    log = s.registry.log_path.read_text(errors="replace")
    assert "garbage collection failed" not in log, log[-3000:]
    s.assert_pulls("x", image, "v1")
    s.finish()
