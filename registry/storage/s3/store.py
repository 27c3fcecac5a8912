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

Keys are layout.py's paths under rootdirectory (s3/keys.py), checked as layout.py checks them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

from ...cache.base import Cache
from ...digests import Digest, parse_digest
from ...errors import (
    BlobUnknown,
    BlobUploadBusy,
    BlobUploadUnknown,
    DigestInvalid,
    NameInvalid,
    NameUnknown,
    RangeInvalid,
    RegistryError,
    RepositoryUnreadable,
    SizeInvalid,
    StorageUnavailable,
)
from ..files import checked_chunks
from ..gc import SESSION_MIN_AGE, GcReport
from ..index import Index
from ..indexops import (
    Change,
    DeleteChange,
    check_references,
    descriptor_for,
    find_descriptor,
    manifest_digest,
    put_change,
    reachable_digests,
    referrer_entry,
    unique_descriptors,
)
from ..layout import EMPTY_INDEX, OCI_LAYOUT, SESSION_ID
from ..manifests import ParsedManifest, parse_manifest, read_manifest
from ..memo import Hashers, ManifestCache
from .client import S3Bucket, S3Settings
from .keys import S3Keys
from .parts import PartWriter

CLAIM_SECONDS = SESSION_MIN_AGE  # a claim older than this was left by a member that died holding it
log = logging.getLogger("zot_registry.storage")


class S3Store:
    def __init__(self, bucket: S3Bucket, cache: Cache, dedupe: bool = True) -> None:
        self.bucket = bucket
        self.keys = S3Keys(bucket)
        self.cache = cache
        self.dedupe = dedupe
        # An unreadable index.json is remembered too: logged once per version, not once per request.
        self._indexes: dict[str, tuple[str, Index | RegistryError]] = {}
        self._manifests = ManifestCache()
        self._hashers = Hashers()
        self._locations: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._usage = 0

    @classmethod
    def from_config(cls, driver: dict[str, Any], cache: Cache, dedupe: bool) -> S3Store:
        return cls(S3Bucket(S3Settings.from_driver(driver)), cache, dedupe)

    # Repositories and their index ---------------------------------------------------------------

    async def catalog(self) -> list[str]:
        return await self.cache.repositories()

    async def _read_index(self, name: str) -> Index | None:
        meta = await self.cache.get_repo_meta(name)
        if meta is None:
            return await self._adopt(name)
        version = str(meta.get("version", ""))
        cached = self._indexes.get(name)
        if cached is None or cached[0] != version:
            raw = await self.bucket.get(self.keys.index(name))
            cached = (version, self._parse_index(name, raw or EMPTY_INDEX))
            self._indexes[name] = cached
        if isinstance(cached[1], RegistryError):
            raise RepositoryUnreadable(cached[1].message)
        return cached[1]

    def _parse_index(self, name: str, raw: bytes) -> Index | RegistryError:
        try:
            return Index.parse(raw, f"index.json of repository {name!r}")
        except RepositoryUnreadable as err:
            log.error("repository unreadable: %s", err.message, extra={"key": self.keys.index(name)})
            return err

    async def _new_version(self, name: str) -> str:
        """Records that `name`'s index changed: every worker's copy of it is stale from now on."""
        version = uuid.uuid4().hex
        await self.cache.put_repo_meta(name, {"version": version, "updated": time.time()})
        return version

    async def _adopt(self, name: str) -> Index | None:
        """A repository in the bucket the cache does not know (an emptied cache): record it again."""
        raw = await self.bucket.get(self.keys.index(name))
        if raw is None:
            return None
        version = await self._new_version(name)
        index = self._parse_index(name, raw)
        self._indexes[name] = (version, index)
        if isinstance(index, RegistryError):
            raise RepositoryUnreadable(index.message)
        return index

    async def _require_index(self, name: str) -> Index:
        index = await self._read_index(name)
        if index is None:
            raise NameUnknown(f"repository {name!r} not known to registry")
        return index

    async def _ensure_repo(self, name: str) -> None:
        if await self.cache.get_repo_meta(name) is not None:
            return
        async with self.cache.lock(f"index:{name}"):
            if await self.cache.get_repo_meta(name) is not None:
                return
            if await self.bucket.head(self.keys.index(name)) is None:
                await self.bucket.put(self.keys.oci_layout(name), OCI_LAYOUT)
                await self.bucket.put(self.keys.index(name), EMPTY_INDEX)
            await self._new_version(name)

    async def _update_index(self, name: str, change: Change) -> None:
        async with self.cache.lock(f"index:{name}"):
            await self._update_index_locked(name, change)

    async def _update_index_locked(self, name: str, change: Change) -> Index | None:
        """Applies `change` to index.json (the caller holds the lock); the new index, or None if unchanged."""
        raw = await self.bucket.get(self.keys.index(name))
        # An unreadable index raises here, before anything is written: it is never replaced.
        current = Index.parse(raw or EMPTY_INDEX, f"index.json of repository {name!r}")
        manifests = [dict(d) for d in current.manifests]
        if not change(manifests):
            return None
        body = current.with_manifests(manifests)
        await self.bucket.put(self.keys.index(name), body)
        index = Index.parse(body)
        self._indexes[name] = (await self._new_version(name), index)
        return index

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
        await self._require_index(name)
        info = await self.bucket.head(self.keys.blob(name, digest))
        if info is None:
            raise BlobUnknown(f"blob {digest} unknown to repository {name!r}")
        await self._drop_blob(name, digest, info.size)

    async def _drop_blob(self, name: str, digest: Digest, size: int) -> None:
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
            await self._ensure_repo(name)
            await self._link(name, digest)
            return True
        for holder in sorted(holders) if source is None else []:
            if await self.has_blob(holder, digest):
                source = holder
                break
        if source is None:
            return False
        key, size = await self._locate(source, digest)
        await self._ensure_repo(name)
        await self.bucket.copy(key, self.keys.blob(name, digest), size)
        await self.cache.add_blob_holder(str(digest), name)
        return True

    async def _target(self, name: str, digest: Digest) -> str | None:
        """Where verified bytes go; None when a deduplicated copy exists and only the digest needs checking."""
        if not self.dedupe:
            return self.keys.blob(name, digest)
        if await self.bucket.head(self.keys.dedupe_blob(digest)) is not None:
            return None
        return self.keys.dedupe_blob(digest)

    async def _published(self, name: str, digest: Digest) -> None:
        """Records the new holder; without dedupe too, so a mount without `from` can find a copy."""
        if self.dedupe:
            await self._link(name, digest)
        else:
            await self.cache.add_blob_holder(str(digest), name)

    async def put_blob(self, name: str, digest: Digest, body: AsyncIterator[bytes],
                       length: int | None = None) -> None:
        """Monolithic upload: stream into parts, verify the digest, then complete the object."""
        await self._ensure_repo(name)
        target = await self._target(name, digest)
        writer = PartWriter(self.bucket, target) if target else None
        hasher = digest.hasher()
        try:
            await _receive(body, hasher, writer, length)
            if hasher.hexdigest() != digest.hex:
                raise DigestInvalid(f"content does not match digest {digest}")
            if writer is not None:
                await writer.complete()
        except BaseException:
            if writer is not None:
                await writer.abort()
            raise
        await self._published(name, digest)

    # Upload sessions ----------------------------------------------------------------------------
    # A session is a JSON object at .uploads/<id>: the multipart upload (to .uploads/<id>.data) with
    # its parts so far, the total size, and the size of the tail (bytes short of a part) kept at
    # .uploads/<id>.tail-<size>. The tail's name carries the size it ends at, so a member killed
    # between writing a new tail and the new state still finds the tail its state names.

    async def _session(self, name: str, session: str) -> dict[str, Any]:
        raw = await self.bucket.get(self.keys.upload(name, session))
        if raw is None:
            raise BlobUploadUnknown(f"upload {session!r} unknown")
        try:
            state = json.loads(raw)
        except ValueError:
            state = None
        if not isinstance(state, dict):
            raise BlobUploadUnknown(f"upload {session!r}: its state in S3 is damaged; start the upload again")
        return state

    async def _claim(self, name: str, session: str, busy: RegistryError) -> dict[str, Any]:
        """Claims the session for this request, or raises `busy`; the state as it was, without the claim.

        The claim is written into the state object under the cache's lock for the session, so of two
        requests (any members, any workers) exactly one gets it. Whatever the claimant writes back
        as the new state carries no claim: that write releases it (`_release` when nothing changed).
        """
        async with self.cache.lock(f"upload:{name}/{session}"):
            state = await self._session(name, session)
            claim = state.pop("claim", None)
            if isinstance(claim, dict) and time.time() - float(claim.get("at", 0)) < CLAIM_SECONDS:
                raise busy
            claimed = {**state, "claim": {"at": time.time(), "by": uuid.uuid4().hex}}
            await self.bucket.put(self.keys.upload(name, session), json.dumps(claimed).encode())
        return state

    async def _release(self, name: str, session: str, state: dict[str, Any]) -> None:
        """Writes the unchanged state back without our claim: the session is free again."""
        await self.bucket.put(self.keys.upload(name, session), json.dumps(state).encode())

    async def _writer(self, name: str, session: str, state: dict[str, Any]) -> PartWriter:
        tail = b""
        if state["tail"]:
            tail = await self.bucket.get(self.keys.upload(name, session, f".tail-{state['size']}")) or b""
            if len(tail) != state["tail"]:
                raise StorageUnavailable(f"upload {session}: its last {state['tail']} bytes are missing from S3")
        parts = [(int(n), str(e)) for n, e in state["parts"]]
        return PartWriter(self.bucket, self.keys.upload(name, session, ".data"), state["upload"], parts, tail)

    async def new_upload(self, name: str) -> str:
        await self._ensure_repo(name)
        session = uuid.uuid4().hex
        state: dict[str, Any] = {"upload": None, "parts": [], "size": 0, "tail": 0, "started": time.time()}
        await self.bucket.put(self.keys.upload(name, session), json.dumps(state).encode())
        return session

    async def upload_size(self, name: str, session: str) -> int:
        return int((await self._session(name, session))["size"])

    async def append_upload(self, name: str, session: str, body: AsyncIterator[bytes],
                            start: int | None, length: int | None) -> int:
        # A chunk sent while another request holds the session is out of order: 416, as the spec says.
        state = await self._claim(name, session, RangeInvalid(f"upload {session!r} is busy with another request"))
        try:
            offset = int(state["size"])
            if start is not None and start != offset:
                last = max(offset - 1, 0)
                raise RangeInvalid(f"chunk starts at {start}, upload is at {offset}",
                                   headers={"Range": f"0-{last}", "Content-Range": f"0-{last}"})
            hasher = self._hashers.take(session, offset) if offset else hashlib.sha256()
            writer = await self._writer(name, session, state)
            # On SizeInvalid nothing is recorded: parts sent now get the same numbers again on the retry.
            written = await _receive(body, hasher, writer, length)
            size = offset + written
            tail = writer.pending
            if tail:
                await self.bucket.put(self.keys.upload(name, session, f".tail-{size}"), tail)
            new_state = {**state, "upload": writer.upload, "parts": writer.parts, "size": size, "tail": len(tail)}
            # The new state carries no claim: writing it releases the session.
            await self.bucket.put(self.keys.upload(name, session), json.dumps(new_state).encode())
        except BaseException:
            await self._release(name, session, state)
            raise
        if state["tail"] and size != offset:
            await self.bucket.delete(self.keys.upload(name, session, f".tail-{offset}"))
        if hasher is not None:
            self._hashers.keep(session, size, hasher)
        return size

    async def finish_upload(self, name: str, session: str, digest: Digest,
                            body: AsyncIterator[bytes], length: int | None) -> None:
        """Close the session as blob `digest`: of two PUTs (a retry, any member) one claims it; the
        other answers 201 if the blob is there whole, else BLOB_UPLOAD_UNKNOWN."""
        try:
            state = await self._claim(name, session, BlobUploadUnknown(
                f"upload {session!r} is being completed or written by another request"))
        except BlobUploadUnknown:
            if not await self.has_blob(name, digest):
                raise
            async for _ in body:  # the blob is there: this is a retry; its last chunk is not needed
                pass
            return
        completed = False  # once the multipart upload is completed the session cannot go on
        try:
            offset = int(state["size"])
            hasher: Any = self._hashers.take(session, offset) if digest.algorithm == "sha256" else None
            writer = await self._writer(name, session, state)
            if hasher is None and not writer.started:
                # Everything so far is the tail in memory: hash it now, even after a restart.
                hasher = digest.hasher()
                hasher.update(writer.pending)
            size = offset + await _receive(body, hasher, writer, length)
            if hasher is not None and hasher.hexdigest() != digest.hex:
                # The session stays usable, as in distribution: nothing of this request was recorded.
                raise DigestInvalid(f"uploaded content does not match digest {digest}")
            await self._ensure_repo(name)
            target = await self._target(name, digest)
            if not writer.started:
                if target is not None:
                    await self.bucket.put(target, writer.pending)
            else:
                await writer.complete()
                completed = True
                await self._publish_parts(digest, writer.key, target, size, verified=hasher is not None)
            await self._published(name, digest)
        except BaseException:
            if completed:
                await self._forget_session(name, session, state)
            else:
                await self._release(name, session, state)
            raise
        await self._forget_session(name, session, state)

    async def _publish_parts(self, digest: Digest, data_key: str, target: str | None, size: int,
                             verified: bool) -> None:
        """Checks the completed multipart object when this process did not see every chunk, copies it home."""
        try:
            if not verified:
                # This member restarted during the upload: hash what S3 assembled before trusting it.
                hasher = digest.hasher()
                async for chunk in self.bucket.stream(data_key):
                    hasher.update(chunk)
                if hasher.hexdigest() != digest.hex:
                    raise DigestInvalid(f"uploaded content does not match digest {digest}; the upload was "
                                        "discarded, start it again")
            if target is not None:
                await self.bucket.copy(data_key, target, size)
        finally:
            await self.bucket.delete(data_key)

    async def _forget_session(self, name: str, session: str, state: dict[str, Any] | None) -> None:
        self._hashers.drop(session)
        if state is not None and state["tail"]:
            await self.bucket.delete(self.keys.upload(name, session, f".tail-{state['size']}"))
        await self.bucket.delete(self.keys.upload(name, session))

    async def cancel_upload(self, name: str, session: str) -> None:
        state = await self._claim(name, session, BlobUploadBusy(f"upload {session!r} is busy with another request"))
        try:
            if state["upload"]:
                await self.bucket.abort_multipart(self.keys.upload(name, session, ".data"), state["upload"])
        except BaseException:
            await self._release(name, session, state)
            raise
        await self._forget_session(name, session, state)

    # Manifests, tags, referrers -----------------------------------------------------------------

    async def _manifest_bytes(self, name: str, digest: str) -> bytes:
        data = self._manifests.get(digest)
        if data is None:
            data = await self.bucket.get(self.keys.blob(name, parse_digest(digest)))
            if data is None:
                raise BlobUnknown(f"manifest {digest} of repository {name!r} is missing from S3")
            self._manifests.put(digest, data)
        return data

    async def get_manifest(self, name: str, reference: str) -> tuple[dict[str, Any], bytes]:
        descriptor = find_descriptor(await self._require_index(name), name, reference)
        return descriptor, await self._manifest_bytes(name, descriptor["digest"])

    async def _check_references(self, name: str, manifest: ParsedManifest, index: Index | None) -> None:
        blobs = manifest.blob_references()
        present = await asyncio.gather(*(self.has_blob(name, parse_digest(ref)) for ref in blobs))
        check_references(name, manifest, index, [ref for ref, found in zip(blobs, present, strict=True) if not found])

    async def put_manifest(self, name: str, reference: str, content_type: str | None,
                           body: bytes) -> tuple[Digest, ParsedManifest]:
        manifest = parse_manifest(body, content_type)
        digest, tag = manifest_digest(reference, body)
        index = await self._read_index(name)
        await self._check_references(name, manifest, index)
        if index is None:  # an index read means the repository exists: no second cache read to learn it
            await self._ensure_repo(name)
        await self.bucket.put(self.keys.blob(name, digest), body)
        self._manifests.put(str(digest), body)
        await self._update_index(name, put_change(descriptor_for(manifest, digest, len(body), tag), tag))
        return digest, manifest

    async def delete_manifest(self, name: str, reference: str) -> None:
        await self._require_index(name)
        change = DeleteChange(reference)
        await self._update_index(name, change)
        change.raise_if_missing(name)

    async def tags(self, name: str) -> list[str]:
        return (await self._require_index(name)).tags()

    async def referrers(self, name: str, subject: Digest, artifact_type: str | None) -> list[dict[str, Any]]:
        index = await self._read_index(name)
        if index is None:
            return []
        descriptors = unique_descriptors(index)
        contents = await asyncio.gather(*(self._manifest_bytes(name, d["digest"]) for d in descriptors),
                                        return_exceptions=True)
        found = []
        for descriptor, data in zip(descriptors, contents, strict=True):
            if isinstance(data, bytes):
                entry = referrer_entry(descriptor, data, subject, artifact_type)
                if entry is not None:
                    found.append(entry)
        return found

    # Garbage collection -------------------------------------------------------------------------

    async def collect_garbage(self, delay: float, owns: Callable[[str], bool]) -> GcReport | None:
        """Untagged manifests and unreferenced blobs of owned repositories, then orphaned shared copies.

        A repository is collected under its index lock, so no push into it interleaves. Shared
        copies are collected by the member owning the digest (the same hash as for repositories),
        under the digest's lock, only when no repository holds them.
        """
        report = GcReport()
        for name in await self.catalog():
            if owns(name):
                try:
                    async with self.cache.lock(f"index:{name}", timeout=300.0):
                        await self._collect_repository(name, delay, report)
                except (RepositoryUnreadable, NameInvalid) as err:
                    # What an unreadable index references is unknown: the repository keeps everything.
                    log.warning("garbage collection skipped repository %r: %s", name, err.message)
        if self.dedupe:
            await self._collect_shared_copies(delay, owns, report)
        self._usage = await self._measure()
        return report

    async def _collect_repository(self, name: str, delay: float, report: GcReport) -> None:
        now = time.time()
        # Read first: an unreadable index raises before anything is listed or dropped.
        index = Index.parse(await self.bucket.get(self.keys.index(name)) or EMPTY_INDEX,
                            f"index.json of repository {name!r}")
        blobs_prefix = self.keys.prefix(self.keys.blobs(name))
        # Two listings, not one of the repository's prefix, which would include nested repositories (a/b in a).
        objects = {info.key: info async for info in self.bucket.listing(blobs_prefix)}
        uploads_prefix = self.keys.prefix(self.keys.uploads(name))
        objects.update({info.key: info async for info in self.bucket.listing(uploads_prefix)})
        digests = list(index.by_digest)
        contents = await asyncio.gather(*(self._manifest_bytes(name, d) for d in digests), return_exceptions=True)
        documents = {d: data for d, data in zip(digests, contents, strict=True) if isinstance(data, bytes)}
        stale = self._untagged_to_drop(name, index, documents, objects, now - delay)
        if stale:
            index = await self._update_index_locked(name, lambda ms: _drop_digests(ms, stale)) or index
            report.manifests += len(stale)
        keep = reachable_digests(index, documents.get)
        for key, info in objects.items():
            digest = _digest_of(key, blobs_prefix)
            if digest is not None and info.modified <= now - delay and str(digest) not in keep:
                await self._drop_blob(name, digest, info.size)
                report.blobs += 1
                report.bytes_freed += info.size
        await self._collect_sessions(name, objects, now - max(delay, SESSION_MIN_AGE), report)

    def _untagged_to_drop(self, name: str, index: Index, documents: dict[str, bytes], objects: dict[str, Any],
                          before: float) -> set[str]:
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
            info = objects.get(self.keys.blob(name, parse_digest(digest)))
            if info is not None and info.modified <= before:
                stale.add(digest)
        return stale

    async def _collect_sessions(self, name: str, objects: dict[str, Any], before: float, report: GcReport) -> None:
        uploads = self.keys.prefix(self.keys.uploads(name))
        for key, info in objects.items():
            session = key[len(uploads):]
            if key.startswith(uploads) and SESSION_ID.fullmatch(session) and info.modified <= before:
                try:
                    await self.cancel_upload(name, session)
                    report.uploads += 1
                except (BlobUploadUnknown, BlobUploadBusy):
                    pass  # gone meanwhile, or a request is working on it right now

    async def _collect_shared_copies(self, delay: float, owns: Callable[[str], bool], report: GcReport) -> None:
        before = time.time() - delay
        prefix = self.keys.prefix(self.keys.dedupe_blobs())
        async for info in self.bucket.listing(prefix):
            found = _digest_of(info.key, prefix)
            digest = str(found)
            if found is None or info.modified > before or not owns(digest):
                continue
            async with self.cache.lock(f"blob:{digest}"):
                if not await self.cache.blob_holders(digest):
                    await self.bucket.delete(info.key)
                    report.dedupe_copies += 1
                    report.bytes_freed += info.size

    async def _measure(self) -> int:
        total = 0
        async for info in self.bucket.listing(self.bucket.key("")):
            total += info.size
        return total

    # Lifecycle ----------------------------------------------------------------------------------

    def disk_usage(self) -> int:
        """Bytes in the bucket under rootdirectory, as of the last garbage collection pass."""
        return self._usage

    async def ready(self) -> str:
        return await self.bucket.ping() or await self.cache.ping()

    async def close(self) -> None:
        await self.bucket.close()
        await self.cache.close()


def _digest_of(key: str, prefix: str) -> Digest | None:
    """The digest a blob key under `prefix` names (<alg>/<hex>); None for anything else found there."""
    if not key.startswith(prefix):
        return None
    algorithm, _, hexpart = key[len(prefix):].partition("/")
    try:
        return parse_digest(f"{algorithm}:{hexpart}")
    except RegistryError:
        return None


async def _receive(body: AsyncIterator[bytes], hasher: Any, writer: PartWriter | None, length: int | None) -> int:
    """A request body into the writer's parts (or only hashed, without a writer): every part sent, or
    none left in flight; the byte count checked against Content-Length."""
    written = 0
    try:
        async for chunk in checked_chunks(body, hasher, length):
            written += len(chunk)
            if writer is not None:
                await writer.write(chunk)
        if writer is not None:
            await writer.drain()
    except BaseException:
        if writer is not None:
            await writer.discard()
        raise
    if length is not None and written != length:
        raise SizeInvalid(f"received {written} bytes, Content-Length said {length}")
    return written


def _drop_digests(manifests: list[dict[str, Any]], digests: set[str]) -> bool:
    before = len(manifests)
    manifests[:] = [d for d in manifests if d["digest"] not in digests]
    return len(manifests) != before
