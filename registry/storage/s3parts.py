"""Streaming bytes into an S3 object in parts, so a 1 GiB blob never sits in memory.

S3 parts must be at least 5 MiB (but the last); a chunked OCI upload may send 1 KiB at a time. The
writer keeps what does not fill a part in memory; an upload session stores that remainder as a
"tail" object between requests, so no chunk is lost when the member restarts.
"""

from __future__ import annotations

from .s3client import S3Bucket

PART_SIZE = 8 << 20


class PartWriter:
    def __init__(self, bucket: S3Bucket, key: str, upload: str | None = None,
                 parts: list[tuple[int, str]] | None = None, pending: bytes = b"") -> None:
        self.bucket = bucket
        self.key = key
        self.upload = upload
        self.parts: list[tuple[int, str]] = list(parts or [])
        self.pending = bytearray(pending)

    @property
    def started(self) -> bool:
        """Whether some bytes already went to S3 as parts (else everything is still in memory)."""
        return self.upload is not None

    async def write(self, chunk: bytes) -> None:
        self.pending += chunk
        while len(self.pending) >= PART_SIZE:
            await self._send(bytes(self.pending[:PART_SIZE]))
            del self.pending[:PART_SIZE]

    async def _send(self, data: bytes) -> None:
        if self.upload is None:
            self.upload = await self.bucket.create_multipart(self.key)
        number = len(self.parts) + 1
        self.parts.append((number, await self.bucket.upload_part(self.key, self.upload, number, data)))

    async def complete(self) -> None:
        """Publishes the object at `key`: it appears whole, at once, or not at all."""
        if self.upload is None:
            await self.bucket.put(self.key, bytes(self.pending))
        else:
            if self.pending or not self.parts:
                await self._send(bytes(self.pending))
            await self.bucket.complete_multipart(self.key, self.upload, self.parts)
        self.pending.clear()

    async def abort(self) -> None:
        if self.upload is not None:
            await self.bucket.abort_multipart(self.key, self.upload)
            self.upload = None
