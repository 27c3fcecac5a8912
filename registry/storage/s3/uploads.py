"""Upload sessions of the S3 store: chunks streamed into a multipart upload, closed as a verified blob.

A session is a JSON object at .uploads/<id> (UploadState): the multipart upload (to .uploads/<id>.data)
with its parts so far, the total size, and the size of the tail (bytes short of a part) kept at
.uploads/<id>.tail-<size>. The tail's name carries the size it ends at, so a member killed
between writing a new tail and the new state still finds the tail its state names.

A session is claimed by the request working on it (PATCH, PUT, DELETE): under the cache's lock for
the session, its state object gets a claim, and a second request finding a live claim is answered
at once. The claim goes with the state the request writes back, or with the session; a member
killed while holding one leaves a claim that expires after CLAIM_SECONDS.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from ...cache.base import Cache
from ...digests import Digest
from ...errors import (
    BlobUploadBusy,
    BlobUploadUnknown,
    DigestInvalid,
    RangeInvalid,
    RegistryError,
    StorageUnavailable,
)
from ..gc import SESSION_MIN_AGE
from ..memo import Hashers
from .client import S3Bucket
from .indexes import S3Indexes
from .keys import S3Keys
from .parts import PartWriter, receive

CLAIM_SECONDS = SESSION_MIN_AGE  # a claim older than this was left by a member that died holding it


@dataclass(frozen=True)
class Claim:
    """Who works on a session right now: when it claimed it (seconds since the epoch), and a random id."""

    at: float
    by: str


@dataclass(frozen=True)
class UploadState:
    """A session's state object, as stored at .uploads/<id>; on the wire its keys are the field names.

    `extra` keeps keys this version does not know, written back as found (before the claim).
    """

    upload: str | None = None  # the multipart upload's id, once a part went to S3
    parts: list[tuple[int, str]] = field(default_factory=list)  # (number, ETag) of each part sent
    size: int = 0  # bytes received and acknowledged
    tail: int = 0  # of those, how many are in the tail object, not yet in a part
    started: float | None = None
    claim: Claim | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: bytes, session: str) -> UploadState:
        damaged = BlobUploadUnknown(f"upload {session!r}: its state in S3 is damaged; start the upload again")
        try:
            document = json.loads(raw)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise damaged
        known = ("upload", "parts", "size", "tail", "started", "claim")
        try:
            upload, parts, size, tail = document["upload"], document["parts"], document["size"], document["tail"]
            claim = document.get("claim")
            return cls(
                upload=None if upload is None else _typed(upload, str),
                parts=[(int(number), str(etag)) for number, etag in parts],
                size=int(_typed(size, int)),
                tail=int(_typed(tail, int)),
                started=document.get("started"),
                # A claim that is not an object is no claim (as before there was this class).
                claim=Claim(float(claim.get("at", 0)), str(claim.get("by", ""))) if isinstance(claim, dict) else None,
                extra={key: value for key, value in document.items() if key not in known},
            )
        except (KeyError, TypeError, ValueError):
            raise damaged from None

    def serialised(self) -> bytes:
        document: dict[str, Any] = {"upload": self.upload, "parts": self.parts, "size": self.size, "tail": self.tail}
        if self.started is not None:
            document["started"] = self.started
        document.update(self.extra)
        if self.claim is not None:
            document["claim"] = {"at": self.claim.at, "by": self.claim.by}
        return json.dumps(document).encode()


def _typed(value: Any, kind: type) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"{value!r} is not a {kind.__name__}")
    return value


class BlobTarget(Protocol):
    """What upload sessions need from the store's blobs: where verified bytes go, and how they are recorded."""

    async def has_blob(self, name: str, digest: Digest) -> bool: ...

    async def target(self, name: str, digest: Digest) -> str | None: ...

    async def published(self, name: str, digest: Digest) -> None: ...


class S3Uploads:
    def __init__(self, bucket: S3Bucket, cache: Cache, keys: S3Keys, indexes: S3Indexes, blobs: BlobTarget) -> None:
        self.bucket = bucket
        self.cache = cache
        self.keys = keys
        self.indexes = indexes
        self._blobs = blobs
        self._hashers = Hashers()

    async def _session(self, name: str, session: str) -> UploadState:
        raw = await self.bucket.get(self.keys.upload(name, session))
        if raw is None:
            raise BlobUploadUnknown(f"upload {session!r} unknown")
        return UploadState.parse(raw, session)

    async def _claim(self, name: str, session: str, busy: RegistryError) -> UploadState:
        """Claims the session for this request, or raises `busy`; the state as it was, without the claim.

        The claim is written into the state object under the cache's lock for the session, so of two
        requests (any members, any workers) exactly one gets it. Whatever the claimant writes back
        as the new state carries no claim: that write releases it (`_release` when nothing changed).
        """
        async with self.cache.lock(f"upload:{name}/{session}"):
            state = await self._session(name, session)
            claim, state = state.claim, replace(state, claim=None)
            if claim is not None and time.time() - claim.at < CLAIM_SECONDS:
                raise busy
            claimed = replace(state, claim=Claim(time.time(), uuid.uuid4().hex))
            await self.bucket.put(self.keys.upload(name, session), claimed.serialised())
        return state

    async def _release(self, name: str, session: str, state: UploadState) -> None:
        """Writes the unchanged state back without our claim: the session is free again."""
        await self.bucket.put(self.keys.upload(name, session), state.serialised())

    async def _writer(self, name: str, session: str, state: UploadState) -> PartWriter:
        tail = b""
        if state.tail:
            tail = await self.bucket.get(self.keys.upload(name, session, f".tail-{state.size}")) or b""
            if len(tail) != state.tail:
                raise StorageUnavailable(f"upload {session}: its last {state.tail} bytes are missing from S3")
        return PartWriter(self.bucket, self.keys.upload(name, session, ".data"), state.upload, state.parts, tail)

    async def new_upload(self, name: str) -> str:
        await self.indexes.ensure(name)
        session = uuid.uuid4().hex
        state = UploadState(started=time.time())
        await self.bucket.put(self.keys.upload(name, session), state.serialised())
        return session

    async def upload_size(self, name: str, session: str) -> int:
        return (await self._session(name, session)).size

    async def append_upload(
        self, name: str, session: str, body: AsyncIterator[bytes], start: int | None, length: int | None
    ) -> int:
        # A chunk sent while another request holds the session is out of order: 416, as the spec says.
        state = await self._claim(name, session, RangeInvalid(f"upload {session!r} is busy with another request"))
        try:
            offset = state.size
            if start is not None and start != offset:
                last = max(offset - 1, 0)
                raise RangeInvalid(
                    f"chunk starts at {start}, upload is at {offset}",
                    headers={"Range": f"0-{last}", "Content-Range": f"0-{last}"},
                )
            hasher = self._hashers.take(session, offset) if offset else hashlib.sha256()
            writer = await self._writer(name, session, state)
            # On SizeInvalid nothing is recorded: parts sent now get the same numbers again on the retry.
            written = await receive(body, hasher, writer, length)
            size = offset + written
            tail = writer.pending
            if tail:
                await self.bucket.put(self.keys.upload(name, session, f".tail-{size}"), tail)
            new_state = replace(state, upload=writer.upload, parts=writer.parts, size=size, tail=len(tail))
            # The new state carries no claim: writing it releases the session.
            await self.bucket.put(self.keys.upload(name, session), new_state.serialised())
        except BaseException:
            await self._release(name, session, state)
            raise
        if state.tail and size != offset:
            await self.bucket.delete(self.keys.upload(name, session, f".tail-{offset}"))
        if hasher is not None:
            self._hashers.keep(session, size, hasher)
        return size

    async def finish_upload(
        self, name: str, session: str, digest: Digest, body: AsyncIterator[bytes], length: int | None
    ) -> None:
        """Close the session as blob `digest`: of two PUTs (a retry, any member) one claims it; the
        other answers 201 if the blob is there whole, else BLOB_UPLOAD_UNKNOWN."""
        try:
            state = await self._claim(
                name, session, BlobUploadUnknown(f"upload {session!r} is being completed or written by another request")
            )
        except BlobUploadUnknown:
            if not await self._blobs.has_blob(name, digest):
                raise
            async for _ in body:  # the blob is there: this is a retry; its last chunk is not needed
                pass
            return
        completed = False  # once the multipart upload is completed the session cannot go on
        try:
            offset = state.size
            hasher: Any = self._hashers.take(session, offset) if digest.algorithm == "sha256" else None
            writer = await self._writer(name, session, state)
            if hasher is None and not writer.started:
                # Everything so far is the tail in memory: hash it now, even after a restart.
                hasher = digest.hasher()
                hasher.update(writer.pending)
            size = offset + await receive(body, hasher, writer, length)
            if hasher is not None and hasher.hexdigest() != digest.hex:
                # The session stays usable, as in distribution: nothing of this request was recorded.
                raise DigestInvalid(f"uploaded content does not match digest {digest}")
            await self.indexes.ensure(name)
            target = await self._blobs.target(name, digest)
            if not writer.started:
                if target is not None:
                    await self.bucket.put(target, writer.pending)
            else:
                await writer.complete()
                completed = True
                await self._publish_parts(digest, writer.key, target, size, verified=hasher is not None)
            await self._blobs.published(name, digest)
        except BaseException:
            if completed:
                await self._forget_session(name, session, state)
            else:
                await self._release(name, session, state)
            raise
        await self._forget_session(name, session, state)

    async def _publish_parts(
        self, digest: Digest, data_key: str, target: str | None, size: int, verified: bool
    ) -> None:
        """Checks the completed multipart object when this process did not see every chunk, copies it home."""
        try:
            if not verified:
                # This member restarted during the upload: hash what S3 assembled before trusting it.
                hasher = digest.hasher()
                async for chunk in self.bucket.stream(data_key):
                    hasher.update(chunk)
                if hasher.hexdigest() != digest.hex:
                    raise DigestInvalid(
                        f"uploaded content does not match digest {digest}; the upload was discarded, start it again"
                    )
            if target is not None:
                await self.bucket.copy(data_key, target, size)
        finally:
            await self.bucket.delete(data_key)

    async def _forget_session(self, name: str, session: str, state: UploadState | None) -> None:
        self._hashers.drop(session)
        if state is not None and state.tail:
            await self.bucket.delete(self.keys.upload(name, session, f".tail-{state.size}"))
        await self.bucket.delete(self.keys.upload(name, session))

    async def cancel_upload(self, name: str, session: str) -> None:
        state = await self._claim(name, session, BlobUploadBusy(f"upload {session!r} is busy with another request"))
        try:
            if state.upload:
                await self.bucket.abort_multipart(self.keys.upload(name, session, ".data"), state.upload)
        except BaseException:
            await self._release(name, session, state)
            raise
        await self._forget_session(name, session, state)
