"""Garbage collection of the S3 store: untagged manifests, unreferenced blobs, abandoned sessions, shared copies.

Only objects older than `gcDelay` are taken (sessions: older than SESSION_MIN_AGE too). It needs
from the store only what `Collectable` names, so the store and this module do not import each other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from ...cache.base import Cache
from ...digests import Digest, parse_digest
from ...errors import BlobUploadBusy, BlobUploadUnknown, NameInvalid, RegistryError, RepositoryUnreadable
from ..gc import SESSION_MIN_AGE, GcReport
from ..index import Index
from ..indexops import reachable_digests
from ..layout import EMPTY_INDEX, SESSION_ID
from ..manifests import read_manifest
from .client import S3Bucket
from .indexes import S3Indexes
from .keys import S3Keys

log = logging.getLogger("zot_registry.storage")


class Collectable(Protocol):
    """What garbage collection needs from the S3 store."""

    @property
    def bucket(self) -> S3Bucket: ...

    @property
    def keys(self) -> S3Keys: ...

    @property
    def cache(self) -> Cache: ...

    @property
    def indexes(self) -> S3Indexes: ...

    @property
    def dedupe(self) -> bool: ...

    async def catalog(self) -> list[str]: ...

    async def manifest_bytes(self, name: str, digest: str) -> bytes: ...

    async def drop_blob(self, name: str, digest: Digest, size: int) -> None: ...

    async def cancel_upload(self, name: str, session: str) -> None: ...


async def collect(store: Collectable, delay: float, owns: Callable[[str], bool]) -> GcReport | None:
    """Untagged manifests and unreferenced blobs of owned repositories, then orphaned shared copies.

    A repository is collected under its index lock, so no push into it interleaves. Shared
    copies are collected by the member owning the digest (the same hash as for repositories),
    under the digest's lock, only when no repository holds them.
    """
    report = GcReport()
    for name in await store.catalog():
        if owns(name):
            try:
                async with store.cache.lock(f"index:{name}", timeout=300.0):
                    await _collect_repository(store, name, delay, report)
            except (RepositoryUnreadable, NameInvalid) as err:
                # What an unreadable index references is unknown: the repository keeps everything.
                log.warning("garbage collection skipped repository %r: %s", name, err.message)
    if store.dedupe:
        await _collect_shared_copies(store, delay, owns, report)
    return report


async def _collect_repository(store: Collectable, name: str, delay: float, report: GcReport) -> None:
    now = time.time()
    # Read first: an unreadable index raises before anything is listed or dropped.
    index = Index.parse(
        await store.bucket.get(store.keys.index(name)) or EMPTY_INDEX, f"index.json of repository {name!r}"
    )
    blobs_prefix = store.keys.prefix(store.keys.blobs(name))
    # Two listings, not one of the repository's prefix, which would include nested repositories (a/b in a).
    objects = {info.key: info async for info in store.bucket.listing(blobs_prefix)}
    uploads_prefix = store.keys.prefix(store.keys.uploads(name))
    objects.update({info.key: info async for info in store.bucket.listing(uploads_prefix)})
    digests = list(index.by_digest)
    contents = await asyncio.gather(*(store.manifest_bytes(name, d) for d in digests), return_exceptions=True)
    documents = {d: data for d, data in zip(digests, contents, strict=True) if isinstance(data, bytes)}
    stale = _untagged_to_drop(store, name, index, documents, objects, now - delay)
    if stale:
        index = await store.indexes.update_locked(name, lambda ms: _drop_digests(ms, stale)) or index
        report.manifests += len(stale)
    keep = reachable_digests(index, documents.get)
    for key, info in objects.items():
        digest = _digest_of(key, blobs_prefix)
        if digest is not None and info.modified <= now - delay and str(digest) not in keep:
            await store.drop_blob(name, digest, info.size)
            report.blobs += 1
            report.bytes_freed += info.size
    await _collect_sessions(store, name, objects, now - max(delay, SESSION_MIN_AGE), report)


def _untagged_to_drop(
    store: Collectable, name: str, index: Index, documents: dict[str, bytes], objects: dict[str, Any], before: float
) -> set[str]:
    """Untagged manifests older than the delay that no index lists and that refer to nothing kept."""
    children: set[str] = set()
    subjects: dict[str, str] = {}
    for digest, data in documents.items():
        parsed = read_manifest(data, index.by_digest[digest].get("mediaType"))
        if parsed is None:
            continue
        children.update(parsed.manifest_references())
        if parsed.subject:
            subjects[digest] = parsed.subject
    tagged = {d["digest"] for d in index.by_tag.values()}
    stale = set()
    for descriptor in index.manifests:
        digest = descriptor["digest"]
        if digest in tagged or digest in children:
            continue
        if digest in subjects and subjects[digest] in index.by_digest:
            continue  # a referrer (signature, SBOM) of a manifest still here
        info = objects.get(store.keys.blob(name, parse_digest(digest)))
        if info is not None and info.modified <= before:
            stale.add(digest)
    return stale


async def _collect_sessions(
    store: Collectable, name: str, objects: dict[str, Any], before: float, report: GcReport
) -> None:
    uploads = store.keys.prefix(store.keys.uploads(name))
    for key, info in objects.items():
        session = key[len(uploads) :]
        if key.startswith(uploads) and SESSION_ID.fullmatch(session) and info.modified <= before:
            try:
                await store.cancel_upload(name, session)
                report.uploads += 1
            except (BlobUploadUnknown, BlobUploadBusy):
                pass  # gone meanwhile, or a request is working on it right now


async def _collect_shared_copies(
    store: Collectable, delay: float, owns: Callable[[str], bool], report: GcReport
) -> None:
    before = time.time() - delay
    prefix = store.keys.prefix(store.keys.dedupe_blobs())
    async for info in store.bucket.listing(prefix):
        found = _digest_of(info.key, prefix)
        digest = str(found)
        if found is None or info.modified > before or not owns(digest):
            continue
        async with store.cache.lock(f"blob:{digest}"):
            if not await store.cache.blob_holders(digest):
                await store.bucket.delete(info.key)
                report.dedupe_copies += 1
                report.bytes_freed += info.size


async def measure(bucket: S3Bucket) -> int:
    total = 0
    async for info in bucket.listing(bucket.key("")):
        total += info.size
    return total


def _digest_of(key: str, prefix: str) -> Digest | None:
    """The digest a blob key under `prefix` names (<alg>/<hex>); None for anything else found there."""
    if not key.startswith(prefix):
        return None
    algorithm, _, hexpart = key[len(prefix) :].partition("/")
    try:
        return parse_digest(f"{algorithm}:{hexpart}")
    except RegistryError:
        return None


def _drop_digests(manifests: list[dict[str, Any]], digests: set[str]) -> bool:
    before = len(manifests)
    manifests[:] = [d for d in manifests if d["digest"] not in digests]
    return len(manifests) != before
