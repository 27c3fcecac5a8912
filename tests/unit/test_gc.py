"""Garbage collection keeps everything a manifest reaches and removes the rest once old enough."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

from zot_registry.digests import parse_digest
from zot_registry.storage import gc
from zot_registry.storage.store import ImageStore

from tests.helpers import make_image, sha256


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _put(store: ImageStore, repo: str, data: bytes) -> None:
    asyncio.run(store.put_blob(repo, parse_digest(sha256(data)), _once(data), len(data)))


def _fill(tmp_path: Path) -> tuple[ImageStore, bytes]:
    store = ImageStore(tmp_path / "root", dedupe=True)
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
