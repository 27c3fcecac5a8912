"""Copy one image from an upstream into the store, in the order that never shows a partial image:
every blob first (each verified against its digest while it streams in), then the child manifests
of an index by digest, then the manifest under the asked reference. An upstream that fails midway
leaves blobs nobody refers to (garbage collection takes them), never a tag whose content is missing.

The bytes are the upstream's: a manifest is stored byte for byte under the digest it has upstream
(zot converts Docker manifests to OCI unless preserveDigest is set; we always preserve).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..digests import parse_digest
from ..errors import RegistryError
from ..storage.base import Store
from ..storage.manifests import INDEX_MANIFESTS, MANIFEST_MEDIA_TYPES
from .live import LiveBlobs
from .upstream import FetchedManifest, Upstream, UpstreamError

# An index may name indexes (nested); zot and regclient follow them, within reason.
MAX_DEPTH = 4


class SyncFailed(UpstreamError):
    """What the upstream sent cannot be stored (not a manifest, a digest that does not match)."""


@dataclass
class CopyReport:
    manifests: int = 0
    blobs: int = 0
    blob_bytes: int = 0
    skipped_blobs: int = 0
    digests: list[str] = field(default_factory=list)


def _document(fetched: FetchedManifest) -> dict[str, Any]:
    try:
        document = json.loads(fetched.data)
    except (ValueError, UnicodeDecodeError):
        raise SyncFailed(f"the upstream's manifest {fetched.digest} is not JSON") from None
    if not isinstance(document, dict):
        raise SyncFailed(f"the upstream's manifest {fetched.digest} is not a JSON object")
    return document


def _media_type(fetched: FetchedManifest, document: dict[str, Any]) -> str:
    declared = document.get("mediaType")
    media_type = declared if isinstance(declared, str) and declared else fetched.media_type.split(";")[0].strip()
    if media_type not in MANIFEST_MEDIA_TYPES:
        raise SyncFailed(f"the upstream's manifest {fetched.digest} has unsupported media type {media_type!r}")
    return media_type


def _digests(items: Any) -> list[str]:
    return [digest for digest, _ in _descriptors(items)]


def _descriptors(items: Any) -> list[tuple[str, int]]:
    """(digest, size) of each descriptor; foreign layers (with `urls`) live elsewhere by definition."""
    found = []
    for item in items if isinstance(items, list) else [items]:
        if isinstance(item, dict) and isinstance(item.get("digest"), str) and not item.get("urls"):
            size = item.get("size")
            found.append((item["digest"], size if isinstance(size, int) and not isinstance(size, bool) else 0))
    return found


class ImageCopier:
    def __init__(self, upstream: Upstream, store: Store, live: LiveBlobs, source_name: str) -> None:
        self.upstream, self.store, self.live, self.source_name = upstream, store, live, source_name

    async def copy(self, local: str, remote: str, reference: str, fetched: FetchedManifest) -> CopyReport:
        """Store `fetched` (the upstream's manifest of `remote` at `reference`) under `local`."""
        report = CopyReport()
        media_type = await self._contents(local, remote, fetched, report, depth=0)
        await self._put_manifest(local, reference, media_type, fetched)
        report.manifests += 1
        report.digests.append(fetched.digest)
        return report

    async def _contents(self, local: str, remote: str, fetched: FetchedManifest, report: CopyReport, depth: int) -> str:
        """Everything a manifest refers to, stored; returns its media type."""
        document = _document(fetched)
        media_type = _media_type(fetched, document)
        if media_type in INDEX_MANIFESTS:
            if depth >= MAX_DEPTH:
                raise SyncFailed(f"indexes nested deeper than {MAX_DEPTH} under {fetched.digest}")
            for child_digest in _digests(document.get("manifests")):
                if await self._has_manifest(local, child_digest):
                    continue
                child = await self.upstream.get_manifest(remote, child_digest)
                child_type = await self._contents(local, remote, child, report, depth + 1)
                await self._put_manifest(local, child_digest, child_type, child)
                report.manifests += 1
        else:
            for blob_digest, size in [*_descriptors(document.get("config")), *_descriptors(document.get("layers"))]:
                await self._blob(local, remote, blob_digest, size, report)
        return media_type

    async def _has_manifest(self, local: str, digest: str) -> bool:
        try:
            await self.store.get_manifest(local, digest)
        except RegistryError:
            return False
        return True

    async def _blob(self, local: str, remote: str, digest: str, size: int, report: CopyReport) -> None:
        if await self.store.has_blob(local, parse_digest(digest)):
            report.skipped_blobs += 1
            return
        # Through the member's one copy of this blob, which clients may be reading as it arrives.
        if not await self.live.ensure(local, digest, [(self.source_name, self.upstream, remote)]):
            raise SyncFailed(f"the upstream has no blob {digest} for {remote}")
        report.blobs += 1
        report.blob_bytes += size

    async def _put_manifest(self, local: str, reference: str, media_type: str, fetched: FetchedManifest) -> None:
        try:
            await self.store.put_manifest(local, reference, media_type, fetched.data)
        except RegistryError as err:
            raise SyncFailed(f"the upstream's manifest {fetched.digest} could not be stored: {err.message}") from None
