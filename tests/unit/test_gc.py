"""Garbage collection keeps everything a manifest reaches and removes the rest once old enough."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from zot_registry.digests import parse_digest
from zot_registry.storage.local import gc
from zot_registry.storage.local.store import LocalStore

from tests.support.images import make_image, sha256


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _put(store: LocalStore, repo: str, data: bytes) -> None:
    asyncio.run(store.put_blob(repo, parse_digest(sha256(data)), _once(data), len(data)))


def _fill(tmp_path: Path) -> tuple[LocalStore, bytes]:
    store = LocalStore(tmp_path / "root", dedupe=True)
    image = make_image("gc")
    for blob in [image.config, *image.layers]:
        _put(store, "kept", blob)
    asyncio.run(store.put_manifest("kept", "v1", None, image.manifest))
    orphan = os.urandom(1000)
    _put(store, "kept", orphan)
    asyncio.run(store.new_upload("kept"))
    return store, orphan


def test_gc_removes_only_unreferenced_blobs(tmp_path: Path) -> None:
    store, orphan = _fill(tmp_path)
    report = gc.collect(store, delay=0)
    assert report is not None and report.blobs == 1 and report.dedupe_copies == 1
    assert not store.layout.blob("kept", parse_digest(sha256(orphan))).exists()
    image = make_image("gc")
    for blob in [image.config, *image.layers, image.manifest]:
        assert store.layout.blob("kept", parse_digest(sha256(blob))).read_bytes() == blob
    assert asyncio.run(store.get_manifest("kept", "v1"))[1] == image.manifest


def test_gc_respects_the_delay(tmp_path: Path) -> None:
    store, orphan = _fill(tmp_path)
    report = gc.collect(store, delay=3600)
    assert report is not None and report.blobs == 0 and report.uploads == 0
    assert store.layout.blob("kept", parse_digest(sha256(orphan))).exists()


def _layout_repo(root: Path, name: str, index: bytes, blobs: list[bytes]) -> Path:
    """A repository written as zot (or an older version of this registry) leaves it."""
    repo = root / name
    (repo / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (repo / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (repo / "index.json").write_bytes(index)
    for blob in blobs:
        (repo / "blobs" / "sha256" / sha256(blob)[7:]).write_bytes(blob)
    return repo


def test_gc_keeps_the_layers_of_a_manifest_without_a_media_type_field(tmp_path: Path) -> None:
    """mediaType is optional in a manifest (the Content-Type says it): its layers are still referenced."""
    store = LocalStore(tmp_path / "root", dedupe=False)
    image = make_image("no-media-type")
    document = json.loads(image.manifest)
    del document["mediaType"]
    body = json.dumps(document).encode()
    for blob in [image.config, *image.layers]:
        _put(store, "bare", blob)
    asyncio.run(store.put_manifest("bare", "v1", "application/vnd.oci.image.manifest.v1+json", body))
    report = gc.collect(store, delay=0)
    assert report is not None and report.blobs == 0
    for blob in [image.config, *image.layers, body]:
        assert store.layout.blob("bare", parse_digest(sha256(blob))).read_bytes() == blob


def test_gc_reads_a_zot_index_with_null_manifests(tmp_path: Path) -> None:
    root = tmp_path / "root"
    orphan = os.urandom(500)
    _layout_repo(root, "emptied", b'{"schemaVersion":2,"manifests":null}', [orphan])
    store = LocalStore(root, dedupe=False)
    report = gc.collect(store, delay=0)
    assert report is not None and report.blobs == 1
    assert not (root / "emptied" / "blobs" / "sha256" / sha256(orphan)[7:]).exists()
    assert asyncio.run(store.tags("emptied")) == []


def test_gc_keeps_everything_of_a_repository_whose_index_cannot_be_read(tmp_path: Path) -> None:
    root = tmp_path / "root"
    kept = [os.urandom(300) for _ in range(3)]
    for i, index in enumerate((b"{not json", b"[1, 2]", b'{"manifests": 7}')):
        _layout_repo(root, f"damaged/r{i}", index, kept)
    orphan = os.urandom(400)
    _layout_repo(root, "fine", b'{"schemaVersion":2,"manifests":[]}', [orphan])
    store = LocalStore(root, dedupe=False)
    report = gc.collect(store, delay=0)
    assert report is not None and report.blobs == 1  # only the orphan of the readable repository
    for i in range(3):
        for blob in kept:
            assert (root / f"damaged/r{i}" / "blobs" / "sha256" / sha256(blob)[7:]).read_bytes() == blob
    assert (root / "damaged/r0/index.json").read_bytes() == b"{not json"


def test_gc_survives_layouts_that_overlap_another_repository(tmp_path: Path) -> None:
    """What names like `x/blobs/sha256/<hex>` or `q/blobs` made in older versions: gc keeps working."""
    root = tmp_path / "root"
    store = LocalStore(root, dedupe=True)
    image = make_image("overlapped")
    for blob in [image.config, *image.layers]:
        _put(store, "x", blob)
    asyncio.run(store.put_manifest("x", "v1", None, image.manifest))
    layer = sha256(image.layers[0])[7:]
    # A repository directory inside x's blob folder, and one beside x's blob files.
    _layout_repo(root / "x" / "blobs" / "sha256", "f" * 64, b'{"schemaVersion":2,"manifests":[]}', [b"a"])
    _layout_repo(root, "q/blobs", b'{"schemaVersion":2,"manifests":[]}', [b"b"])
    (root / "x" / "blobs" / "sha256" / "not-a-digest").write_bytes(b"?")
    report = gc.collect(store, delay=0)
    assert report is not None
    assert (root / "x" / "blobs" / "sha256" / layer).read_bytes() == image.layers[0]
    assert asyncio.run(store.get_manifest("x", "v1"))[1] == image.manifest
    assert store.repository_names() == ["x"]


def test_gc_leaves_a_session_that_a_request_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path / "root", dedupe=True)
    session = asyncio.run(store.new_upload("held"))
    path = store.layout.upload("held", session)
    later = time.time() + 7200  # sessions are collected after an hour at least
    monkeypatch.setattr(gc.time, "time", lambda: later)
    with open(path, "rb") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # what a PATCH or PUT in progress holds
        report = gc.collect(store, delay=0)
        assert report is not None and report.uploads == 0 and path.exists()
    report = gc.collect(store, delay=0)
    assert report is not None and report.uploads == 1 and not path.exists()
