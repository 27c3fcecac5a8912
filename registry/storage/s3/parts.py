"""Streaming bytes into an S3 object in parts, so a 1 GiB blob never sits in memory.

S3 parts must be at least 5 MiB (but the last); a chunked OCI upload may send 1 KiB at a time. The
writer keeps what does not fill a part in memory; an upload session stores that remainder as a
"tail" object between requests, so no chunk is lost when the member restarts.

One part is sent while the next is being received (at most one in flight), so the client's upload
and the S3 write overlap; memory stays within two parts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ...errors import SizeInvalid
from ..files import checked_chunks
from .client import S3Bucket

# S3's smallest part: memory per upload stays within a few parts. S3 allows 10,000 parts, so past
# LARGE_AFTER parts (about 10 GiB) parts grow, for blobs up to about 300 GiB.
PART_SIZE = 5 << 20
LARGE_PART_SIZE = 32 << 20
LARGE_AFTER = 2000


class PartWriter:
    def __init__(
        self,
        bucket: S3Bucket,
        key: str,
        upload: str | None = None,
        parts: list[tuple[int, str]] | None = None,
        pending: bytes = b"",
    ) -> None:
        self.bucket = bucket
        self.key = key
        self.upload = upload
        self.parts: list[tuple[int, str]] = list(parts or [])
        # What does not fill a part yet, as views of the received chunks: joined once per part, not
        # grown and copied chunk by chunk (which costs two or three part-sized buffers at a time).
        self._held: list[memoryview] = [memoryview(pending)] if pending else []
        self._held_size = len(pending)
        self._numbered = len(self.parts)
        self._inflight: asyncio.Task[None] | None = None

    @property
    def started(self) -> bool:
        """Whether some bytes already went to S3 as parts (else everything is still in memory)."""
        return self.upload is not None

    @property
    def pending(self) -> bytes:
        """The bytes not sent as a part yet."""
        return b"".join(self._held)

    async def write(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while self._held_size + len(view) >= self._part_size:
            take = self._part_size - self._held_size
            self._held.append(view[:take])
            view = view[take:]
            data = b"".join(self._held)
            self._held, self._held_size = [], 0
            await self._send(data)
        if view:
            self._held.append(view)
            self._held_size += len(view)

    @property
    def _part_size(self) -> int:
        return PART_SIZE if self._numbered < LARGE_AFTER else LARGE_PART_SIZE

    async def _send(self, data: bytes) -> None:
        if self.upload is None:
            self.upload = await self.bucket.create_multipart(self.key)
        await self.drain()  # the previous part must be in before another starts: two parts in memory at most
        self._numbered += 1
        self._inflight = asyncio.create_task(self._upload(self.upload, self._numbered, data))

    async def _upload(self, upload: str, number: int, data: bytes) -> None:
        self.parts.append((number, await self.bucket.upload_part(self.key, upload, number, data)))

    async def drain(self) -> None:
        """Waits for the part in flight; `parts` is complete afterwards (and its errors are raised here)."""
        task, self._inflight = self._inflight, None
        if task is not None:
            await task

    async def complete(self) -> None:
        """Publishes the object at `key`: it appears whole, at once, or not at all."""
        data = self.pending
        self._held, self._held_size = [], 0
        if self.upload is None:
            await self.bucket.put(self.key, data)
        else:
            if data or not self.parts:
                await self._send(data)
            await self.drain()
            self.parts.sort()
            await self.bucket.complete_multipart(self.key, self.upload, self.parts)

    async def discard(self) -> None:
        """Stops the part in flight, keeping the multipart upload (a session goes on with its recorded parts)."""
        task, self._inflight = self._inflight, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def abort(self) -> None:
        await self.discard()
        if self.upload is not None:
            await self.bucket.abort_multipart(self.key, self.upload)
            self.upload = None


async def receive(body: AsyncIterator[bytes], hasher: Any, writer: PartWriter | None, length: int | None) -> int:
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


@contextlib.asynccontextmanager
async def aborted_on_failure(writer: PartWriter | None) -> AsyncIterator[None]:
    """Aborts the writer's multipart upload when the block fails: none of its parts stay in S3."""
    try:
        yield
    except BaseException:
        if writer is not None:
            await writer.abort()
        raise
