"""The receiving side of a repository's copy to its next owner (storage local to each member).

Blobs arrive one by one and are verified as they stream (a blob is kept only if it hashes to its
digest), into a staging folder outside every repository: `.cluster/staging/<sha256 of the name>/`.
Nothing of the copy is visible until `publish`, which is given the old owner's index.json: it checks
that every manifest and everything they reference is here (staged or already in the repository),
moves the staged blobs into the repository, and writes index.json last (zot's layout: a repository
is listed once it has one). A member killed mid-copy leaves only staging files behind, which the next
attempt reuses and a switch clears.

If the repository already exists here (a member re-admitted after failover holds its old copy, and
the member that stood in for it got pushes meanwhile), the two indexes are merged: every manifest of
both is kept, and a tag both have points where the more recently pushed manifest says (the time a
manifest's blob was written, which copies keep).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..digests import Digest, parse_digest
from ..errors import DigestInvalid, ImportIncomplete, SizeInvalid
from ..storage.files import checked_chunks, fsync_path, write_atomic
from ..storage.index import Index
from ..storage.indexops import reachable_digests, tag_of
from ..storage.layout import OCI_LAYOUT
from ..storage.local.store import LocalStore
from ..storage.manifests import MAX_MANIFEST_SIZE


def _times_of(index: Index, mtime: Any) -> dict[str, float]:
    return {d["digest"]: t for d in index.manifests if (t := mtime(d["digest"])) is not None}


def merge_indexes(
    existing: Index, incoming: Index, existing_times: dict[str, float], incoming_times: dict[str, float]
) -> list[dict[str, Any]]:
    """Every manifest of both; a tag in both follows the manifest pushed last (incoming on a tie)."""
    merged = [dict(d) for d in incoming.manifests]
    by_tag = {tag: i for i, d in enumerate(merged) if (tag := tag_of(d))}
    untagged = {d["digest"] for d in merged if not tag_of(d)}
    for descriptor in existing.manifests:
        tag = tag_of(descriptor)
        if tag is None:
            if descriptor["digest"] not in untagged:
                merged.append(dict(descriptor))
                untagged.add(descriptor["digest"])
        elif tag not in by_tag:
            by_tag[tag] = len(merged)
            merged.append(dict(descriptor))
        else:
            ours = existing_times.get(descriptor["digest"], 0.0)
            theirs = incoming_times.get(merged[by_tag[tag]]["digest"], 0.0)
            if ours > theirs:
                merged[by_tag[tag]] = dict(descriptor)
    return merged


class Imports:
    def __init__(self, store: LocalStore, folder: Path) -> None:
        self.store = store
        self.folder = folder / "staging"

    def staging(self, name: str) -> Path:
        return self.folder / hashlib.sha256(name.encode()).hexdigest()[:40]

    def _staged(self, name: str, digest: Digest) -> Path:
        return self.staging(name) / digest.algorithm / digest.hex

    def _present(self, name: str, digest: Digest, size: int | None) -> bool:
        for path in (self._staged(name, digest), self.store.layout.blob(name, digest)):
            try:
                found = os.stat(path).st_size
            except FileNotFoundError:
                continue
            if size is None or found == size:
                return True
        return False

    def missing(self, name: str, blobs: list[tuple[str, int]]) -> list[str]:
        """Of (digest, size), those neither staged nor in the repository here."""
        return [digest for digest, size in blobs if not self._present(name, parse_digest(digest), size)]

    async def receive_blob(
        self, name: str, digest: Digest, body: AsyncIterator[bytes], length: int | None, mtime: float | None
    ) -> None:
        """Stream one blob into staging; kept only whole and hashing to `digest`."""
        target = self._staged(name, digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".in-{uuid.uuid4().hex}"
        try:
            hasher = digest.hasher()
            written = 0
            with open(tmp, "wb") as handle:
                async for chunk in checked_chunks(body, hasher, length):
                    written += len(chunk)
                    handle.write(chunk)
            if length is not None and written != length:
                raise SizeInvalid(f"received {written} bytes of {digest}, Content-Length said {length}")
            if hasher.hexdigest() != digest.hex:
                raise DigestInvalid(f"the copy of {digest} does not hash to it")
            await asyncio.to_thread(fsync_path, tmp)  # never on the event loop: other requests go on
            if mtime is not None:
                os.utime(tmp, (mtime, mtime))
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def _read_manifest(self, name: str, digest: str) -> bytes | None:
        """A blob's bytes if it may be a manifest: no manifest is larger than MAX_MANIFEST_SIZE, and a
        layer is never read whole (nor held in memory) just to find it references nothing."""
        parsed = parse_digest(digest)
        for path in (self._staged(name, parsed), self.store.layout.blob(name, parsed)):
            try:
                if os.stat(path).st_size > MAX_MANIFEST_SIZE:
                    return None
                return path.read_bytes()
            except FileNotFoundError:
                continue
        return None

    def publish(
        self, name: str, index_bytes: bytes, times: dict[str, float], held: set[str] | None = None
    ) -> dict[str, Any]:
        """Check the copy against the old owner's index, then make it this member's repository.

        `held`: the blobs the old owner has. One its own manifests reference but it lacks (collected,
        or lost before the change) cannot be copied: the copy is as whole as the original, no less."""
        incoming = Index.parse(index_bytes, f"the copied index.json of {name}")
        needed = reachable_digests(incoming, lambda d: self._read_manifest(name, d))
        if held is not None:
            needed &= held
        lacking = sorted(d for d in needed if not self._present(name, parse_digest(d), None))
        if lacking:
            raise ImportIncomplete(f"the copy of {name!r} lacks {len(lacking)} blobs", detail={"missing": lacking})
        layout = self.store.layout
        layout.blobs(name).mkdir(parents=True, exist_ok=True)
        if not layout.oci_layout(name).is_file():
            write_atomic(layout.oci_layout(name), OCI_LAYOUT)
        staging = self.staging(name)
        for algorithm in os.listdir(staging) if staging.is_dir() else []:
            for hex_digest in os.listdir(staging / algorithm):
                if hex_digest.startswith("."):
                    continue
                digest = Digest(algorithm, hex_digest)
                if self.store.blob_exists(name, digest):
                    continue
                self.store.commit_blob(name, staging / algorithm / hex_digest, digest)
        existing = self.store.read_index(name)

        def mtime(digest: str) -> float | None:
            try:
                return os.stat(layout.blob(name, parse_digest(digest))).st_mtime
            except FileNotFoundError:
                return None

        created = existing is None and self.store.create_index(name, index_bytes)
        if created:
            # Nothing here yet: the old owner's index.json, byte for byte.
            result = incoming
        else:
            existing = self.store.read_index(name) or Index.parse(b"")
            merged = merge_indexes(existing, incoming, _times_of(existing, mtime), times)

            def replace(manifests: list[dict[str, Any]]) -> bool:
                changed = manifests != merged
                manifests[:] = merged
                return changed

            self.store.update_index(name, replace)
            result = self.store.read_index(name) or incoming
        shutil.rmtree(staging, ignore_errors=True)
        return {
            "created": created,
            "manifests": len(result.manifests),
            "tags": {tag: d["digest"] for tag, d in result.by_tag.items()},
        }

    def clear(self) -> None:
        """Forget every staged blob (after a switch, or when a change is abandoned)."""
        shutil.rmtree(self.folder, ignore_errors=True)
