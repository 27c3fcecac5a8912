"""The S3 image store: zot's layout as object keys under `rootdirectory`, shared by every member.

Keys: <root>/<repo>/index.json, oci-layout, blobs/<alg>/<hex>; upload sessions under
<root>/<repo>/.uploads/. With dedupe, a blob's bytes live once at <root>/.dedupe/blobs/<alg>/<hex>
and each repository holding it has an empty placeholder at its own key (as zot's S3 dedupe does),
while the cache records which repositories hold each digest.

What keeps concurrent writers (members, and the workers of each) safe:
- a blob becomes visible only whole and verified: multipart uploads are completed, or single
  objects put, after the digest matched;
- index.json is read-modify-written under the cache's lock for that repository, and every write
  bumps a version in the cache, so each worker's copy of the index is checked with one cache read;
- a deduplicated copy is deleted by garbage collection only under the digest's lock, when the
  cache says no repository holds it any more;
- an upload session is claimed by the request working on it (PATCH, PUT, DELETE): under the cache's
  lock for the session, its state object gets a claim, and a second request finding a live claim
  is answered at once (a PUT: 201 if the blob is there, else BLOB_UPLOAD_UNKNOWN). The claim goes
  with the state the request writes back, or with the session; a member killed while holding one
  leaves a claim that expires after SESSION_MIN_AGE.

This module serves blobs and manifests; repositories and their index are s3/indexes.py's, upload
sessions s3/uploads.py's, garbage collection s3/gc.py's. Keys are layout.py's paths under
rootdirectory (s3/keys.py), checked as layout.py checks them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

from ...cache.base import Cache
from ...digests import Digest, parse_digest
from ...errors import BlobUnknown, DigestInvalid, StorageUnavailable
from ..base import SessionsOf
from ..gc import GcReport
from ..index import Index
from ..indexops import DeleteChange, Push, check_references, find_descriptor, referrers_among, unique_descriptors
from ..manifests import ParsedManifest
from ..memo import ManifestCache
from . import gc
from .client import S3Bucket, S3Settings
from .indexes import S3Indexes
from .keys import S3Keys
from .parts import PartWriter, aborted_on_failure, receive
from .uploads import S3Uploads

log = logging.getLogger("zot_registry.storage")


class S3Store(SessionsOf):
    """Blobs and manifests in a bucket; indexes are s3/indexes.py's, upload sessions s3/uploads.py's."""

    def __init__(self, bucket: S3Bucket, cache: Cache, dedupe: bool = True) -> None:
        self.bucket = bucket
        self.keys = S3Keys(bucket)
        self.cache = cache
        self.dedupe = dedupe
        self.indexes = S3Indexes(bucket, cache, self.keys)
        self._manifests = ManifestCache()
        self._uploads = S3Uploads(bucket, cache, self.keys, self.indexes, self)
        self._locations: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._usage = 0

    @classmethod
    def from_config(cls, driver: dict[str, Any], cache: Cache, dedupe: bool) -> S3Store:
        return cls(S3Bucket(S3Settings.from_driver(driver)), cache, dedupe)

    # Repositories and their index ---------------------------------------------------------------

    async def catalog(self) -> list[str]:
        return await self.cache.repositories()

    # Blobs --------------------------------------------------------------------------------------

    def _is_placeholder(self, digest: Digest, size: int) -> bool:
        return self.dedupe and size == 0 and digest.hex != hashlib.new(digest.algorithm, b"").hexdigest()

    async def _locate(self, name: str, digest: Digest) -> tuple[str, int]:
        """The key holding the blob's bytes for `name`, and its size; BLOB_UNKNOWN when `name` lacks it."""
        info = await self.bucket.head(self.keys.blob(name, digest))
        if info is None:
            raise BlobUnknown(f"blob {digest} unknown to repository {name!r}")
        if not self._is_placeholder(digest, info.size):
            return info.key, info.size
        canonical = await self.bucket.head(self.keys.dedupe_blob(digest))
        if canonical is None:
            raise BlobUnknown(f"blob {digest} of repository {name!r} lost its deduplicated copy")
        return canonical.key, canonical.size

    async def blob_size(self, name: str, digest: Digest) -> int:
        key, size = await self._locate(name, digest)
        # Remembered for the GET that follows, which would otherwise ask S3 the same question again.
        self._locations[(name, str(digest))] = key
        while len(self._locations) > 4096:
            self._locations.popitem(last=False)
        return size

    async def blob_chunks(self, name: str, digest: Digest, start: int, length: int) -> AsyncIterator[bytes]:
        key = self._locations.pop((name, str(digest)), None) or (await self._locate(name, digest))[0]
        async for chunk in self.bucket.stream(key, start, length):
            yield chunk

    async def has_blob(self, name: str, digest: Digest) -> bool:
        return await self.bucket.head(self.keys.blob(name, digest)) is not None

    async def delete_blob(self, name: str, digest: Digest) -> None:
        await self.indexes.require(name)
        info = await self.bucket.head(self.keys.blob(name, digest))
        if info is None:
            raise BlobUnknown(f"blob {digest} unknown to repository {name!r}")
        await self.drop_blob(name, digest, info.size)

    async def drop_blob(self, name: str, digest: Digest, size: int) -> None:
        await self.bucket.delete(self.keys.blob(name, digest))
        # With dedupe, the shared copy stays until garbage collection finds no holder left.
        await self.cache.remove_blob_holder(str(digest), name)

    async def _link(self, name: str, digest: Digest) -> None:
        """Makes `name` a holder of the deduplicated copy, which must exist."""
        async with self.cache.lock(f"blob:{digest}"):
            if await self.bucket.head(self.keys.dedupe_blob(digest)) is None:
                # Collected between our check and this lock: the client retries the push (503).
                raise StorageUnavailable(f"blob {digest} was being collected; retry the upload")
            await self.cache.add_blob_holder(str(digest), name)
            if await self.bucket.head(self.keys.blob(name, digest)) is None:
                await self.bucket.put(self.keys.blob(name, digest), b"")

    async def mount_blob(self, name: str, digest: Digest, source: str | None) -> bool:
        """Cross-repository mount; without `from`, any repository's copy will do (the cache knows the holders)."""
        if await self.has_blob(name, digest):
            return True
        if source is not None and not await self.has_blob(source, digest):
            source = None
        holders = await self.cache.blob_holders(str(digest))
        if self.dedupe:
            if source is None and not holders:
                return False
            if await self.bucket.head(self.keys.dedupe_blob(digest)) is None:
                return False
            await self.indexes.ensure(name)
            await self._link(name, digest)
            return True
        for holder in sorted(holders) if source is None else []:
            if await self.has_blob(holder, digest):
                source = holder
                break
        if source is None:
            return False
        key, size = await self._locate(source, digest)
        await self.indexes.ensure(name)
        await self.bucket.copy(key, self.keys.blob(name, digest), size)
        await self.cache.add_blob_holder(str(digest), name)
        return True

    async def target(self, name: str, digest: Digest) -> str | None:
        """Where verified bytes go; None when a deduplicated copy exists and only the digest needs checking."""
        if not self.dedupe:
            return self.keys.blob(name, digest)
        if await self.bucket.head(self.keys.dedupe_blob(digest)) is not None:
            return None
        return self.keys.dedupe_blob(digest)

    async def published(self, name: str, digest: Digest) -> None:
        """Records the new holder; without dedupe too, so a mount without `from` can find a copy."""
        if self.dedupe:
            await self._link(name, digest)
        else:
            await self.cache.add_blob_holder(str(digest), name)

    async def put_blob(self, name: str, digest: Digest, body: AsyncIterator[bytes], length: int | None = None) -> None:
        """Monolithic upload: stream into parts, verify the digest, then complete the object."""
        await self.indexes.ensure(name)
        target = await self.target(name, digest)
        writer = PartWriter(self.bucket, target) if target else None
        hasher = digest.hasher()
        async with aborted_on_failure(writer):
            await receive(body, hasher, writer, length)
            if hasher.hexdigest() != digest.hex:
                raise DigestInvalid(f"content does not match digest {digest}")
            if writer is not None:
                await writer.complete()
        await self.published(name, digest)

    # Manifests, tags, referrers -----------------------------------------------------------------

    async def manifest_bytes(self, name: str, digest: str) -> bytes:
        data = self._manifests.get(digest)
        if data is None:
            data = await self.bucket.get(self.keys.blob(name, parse_digest(digest)))
            if data is None:
                raise BlobUnknown(f"manifest {digest} of repository {name!r} is missing from S3")
            self._manifests.put(digest, data)
        return data

    async def get_manifest(self, name: str, reference: str) -> tuple[dict[str, Any], bytes]:
        descriptor = find_descriptor(await self.indexes.require(name), name, reference)
        return descriptor, await self.manifest_bytes(name, descriptor["digest"])

    async def _check_references(self, name: str, manifest: ParsedManifest, index: Index | None) -> None:
        blobs = manifest.blob_references()
        present = await asyncio.gather(*(self.has_blob(name, parse_digest(ref)) for ref in blobs))
        check_references(name, manifest, index, [ref for ref, found in zip(blobs, present, strict=True) if not found])

    async def put_manifest(
        self, name: str, reference: str, content_type: str | None, body: bytes
    ) -> tuple[Digest, ParsedManifest]:
        push = Push.of(reference, content_type, body)
        manifest, digest = push.manifest, push.digest
        index = await self.indexes.read(name)
        await self._check_references(name, manifest, index)
        if index is None:  # an index read means the repository exists: no second cache read to learn it
            await self.indexes.ensure(name)
        await self.bucket.put(self.keys.blob(name, digest), body)
        self._manifests.put(str(digest), body)
        await self.indexes.update(name, push.change())
        return digest, manifest

    async def delete_manifest(self, name: str, reference: str) -> None:
        await self.indexes.require(name)
        change = DeleteChange(reference)
        await self.indexes.update(name, change)
        change.raise_if_missing(name)

    async def tags(self, name: str) -> list[str]:
        return (await self.indexes.require(name)).tags()

    async def referrers(self, name: str, subject: Digest, artifact_type: str | None) -> list[dict[str, Any]]:
        index = await self.indexes.read(name)
        if index is None:
            return []
        descriptors = unique_descriptors(index)
        contents = await asyncio.gather(
            *(self.manifest_bytes(name, d["digest"]) for d in descriptors), return_exceptions=True
        )
        pairs = zip(descriptors, (data if isinstance(data, bytes) else None for data in contents), strict=True)
        return referrers_among(pairs, subject, artifact_type)

    # Garbage collection (s3/gc.py), lifecycle -------------------------------------------------

    async def collect_garbage(self, delay: float, owns: Callable[[str], bool]) -> GcReport | None:
        report = await gc.collect(self, delay, owns)
        self._usage = await gc.measure(self.bucket)
        return report

    # Lifecycle ----------------------------------------------------------------------------------

    def disk_usage(self) -> int:
        """Bytes in the bucket under rootdirectory, as of the last garbage collection pass."""
        return self._usage

    async def ready(self) -> str:
        return await self.bucket.ping() or await self.cache.ping()

    async def close(self) -> None:
        await self.bucket.close()
        await self.cache.close()
