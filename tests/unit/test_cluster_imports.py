"""The new owner's side of a copy (cluster/imports.py), on a real LocalStore in a temporary folder."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from zot_registry.cluster.imports import Imports
from zot_registry.digests import parse_digest
from zot_registry.errors import ImportIncomplete
from zot_registry.storage.local.store import LocalStore
from zot_registry.storage.manifests import MAX_MANIFEST_SIZE


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _receive(imports: Imports, name: str, data: bytes) -> str:
    digest = _digest(data)
    asyncio.run(imports.receive_blob(name, parse_digest(digest), _chunks(data), len(data), 1_000_000.0))
    return digest


def _image(layer: bytes, config: bytes) -> tuple[bytes, bytes]:
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _digest(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _digest(layer), "size": len(layer)}
            ],
        }
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": _digest(manifest),
                    "size": len(manifest),
                    "annotations": {"org.opencontainers.image.ref.name": "v1"},
                }
            ],
        }
    ).encode()
    return manifest, index


def test_a_copy_is_published_whole_and_only_blobs_that_can_be_manifests_are_read(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "root")
    imports = Imports(store, tmp_path / "root" / ".cluster")
    layer = b"{" + b" " * (MAX_MANIFEST_SIZE + 1) + b"}"  # JSON-looking, and larger than any manifest
    config = b'{"os": "linux"}'
    manifest, index = _image(layer, config)
    layer_digest = _receive(imports, "team/app", layer)
    # Staged out of sight: no repository yet.
    assert store.repository_names() == []
    # A layer is never read whole to look for references in it.
    assert imports._read_manifest("team/app", layer_digest) is None
    with pytest.raises(ImportIncomplete) as incomplete:
        imports.publish("team/app", index, {})
    assert incomplete.value.detail == {"missing": [_digest(manifest)]}
    _receive(imports, "team/app", config)
    _receive(imports, "team/app", manifest)
    result = imports.publish("team/app", index, {})
    assert result["created"] and result["tags"] == {"v1": _digest(manifest)}
    assert store.repository_names() == ["team/app"]
    assert (tmp_path / "root" / "team" / "app" / "index.json").read_bytes() == index  # byte for byte
    assert not imports.staging("team/app").exists()


def test_a_blob_the_old_owner_lacks_itself_does_not_hold_the_copy_back(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "root")
    imports = Imports(store, tmp_path / "root" / ".cluster")
    layer, config = b"layer bytes", b'{"os": "linux"}'
    manifest, index = _image(layer, config)
    _receive(imports, "team/app", manifest)
    _receive(imports, "team/app", config)
    # The old owner has the layer: its absence here is a copy not finished.
    with pytest.raises(ImportIncomplete):
        imports.publish("team/app", index, {}, held={_digest(manifest), _digest(config), _digest(layer)})
    # The old owner lost it too (collected, a disk error): the copy is as whole as the original.
    result = imports.publish("team/app", index, {}, held={_digest(manifest), _digest(config)})
    assert result["tags"] == {"v1": _digest(manifest)}
