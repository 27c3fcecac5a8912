"""Blobs that stream to clients while they are being synced: the first byte of a pull does not wait
for the image (zot's on-demand sync answers only once the whole image is stored).

One copy of a blob runs per member at a time (SingleFlight key `blob <name> <digest>`). Its bytes
go into the store, where they are published only if they hash to the digest, and into a spool file
in the member's sync directory that every worker can read while it grows: `<key>.size` holds the
blob's size once the upstream said it, `<key>.part` the bytes so far. A request for a blob being
copied reads the spool up to the size; once the copy has ended it reads the rest from the store. If
the copy fails, what the request already sent is all it gets: its connection is broken off, so the
client sees a short body, never bytes that are not the blob's (and it retries).

The spool is removed when the copy ends; a request that opened it still holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from ..digests import parse_digest
from ..errors import RegistryError
from ..storage.base import Store
from .flight import SingleFlight
from .upstream import NotFound, Unauthorized, Upstream, UpstreamError

log = logging.getLogger("zot_registry.sync")

PIECE = 1 << 20
# How often a reader looks for more bytes in the spool (the copier writes as they arrive).
_POLL_SECONDS = 0.01


class BlobAborted(Exception):
    """The copy a reader followed failed: the response must be broken off."""


@dataclass(frozen=True)
class LiveBlob:
    size: int
    # Nothing is opened before the first read: a HEAD leaves it unread.
    chunks: AsyncGenerator[bytes, None]


# Where a local name's blob comes from: (the registry's name for logs, its client, the remote name),
# in the config's order.
Origin = tuple[str, Upstream, str]


class LiveBlobs:
    def __init__(self, store: Store, flight: SingleFlight, spool: Path, timeout: float) -> None:
        self.store, self.flight, self.spool, self.timeout = store, flight, spool, timeout
        spool.mkdir(parents=True, exist_ok=True)

    def _paths(self, name: str, digest: str) -> tuple[Path, Path]:
        stem = hashlib.sha256(f"{name}\0{digest}".encode()).hexdigest()[:32]
        return self.spool / f"{stem}.part", self.spool / f"{stem}.size"

    @staticmethod
    def _key(name: str, digest: str) -> str:
        return f"blob\0{name}\0{digest}"

    async def ensure(self, name: str, digest: str, origins: list[Origin]) -> bool:
        """The blob stored, copied by this call or by the copy it waited for; False when no origin had it."""
        parsed = parse_digest(digest)
        if await self.store.has_blob(name, parsed):
            return True
        await self.flight.run(
            self._key(name, digest), lambda: self._copy(name, digest, origins), time.monotonic() + self.timeout
        )
        return await self.store.has_blob(name, parsed)

    def start(self, name: str, digest: str, origins: list[Origin]) -> asyncio.Future[bool]:
        """A copy in the background (merged with one under way); it outlives the request."""
        future = asyncio.ensure_future(self.ensure(name, digest, origins))
        future.add_done_callback(_log_failure)
        return future

    async def open(self, name: str, digest: str, origins: list[Origin]) -> LiveBlob | None:
        """The blob as it arrives (starting its copy unless one runs), or None when no origin has it
        or it is stored after all (the caller serves it from the store)."""
        part, size_file = self._paths(name, digest)
        copying = self.start(name, digest, origins)
        deadline = time.monotonic() + self.timeout
        while True:
            size = _read_size(size_file)
            if size is not None and part.exists():
                return LiveBlob(size, self._follow(part, name, digest, size, copying))
            if copying.done():
                return None  # stored (the caller serves it) or not found anywhere
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(_POLL_SECONDS)

    async def _follow(
        self, part: Path, name: str, digest: str, size: int, copying: asyncio.Future[bool]
    ) -> AsyncGenerator[bytes, None]:
        sent = 0
        try:
            fd = os.open(part, os.O_RDONLY)
        except FileNotFoundError:
            fd = -1  # the copy ended since open() saw the spool: the store has the blob, or nobody does
        if fd >= 0:
            try:
                while sent < size:
                    chunk = os.pread(fd, min(PIECE, size - sent), sent)
                    if chunk:
                        sent += len(chunk)
                        yield chunk
                        continue
                    if copying.done() or not self.flight.busy(self._key(name, digest)):
                        break  # the copy ended: the rest is in the store, or nowhere
                    await asyncio.sleep(_POLL_SECONDS)
            finally:
                os.close(fd)
        if sent >= size:
            return
        parsed = parse_digest(digest)
        if not await self.store.has_blob(name, parsed):
            raise BlobAborted(f"the sync of {name}@{digest} failed after {sent} of {size} bytes")
        async for chunk in self.store.blob_chunks(name, parsed, sent, size - sent):
            yield chunk

    async def _copy_from(
        self, upstream: Upstream, remote: str, name: str, digest: str, part: Path, size_file: Path
    ) -> None:
        async with upstream.open_blob(remote, digest) as blob:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _write_size(size_file, blob.size)
                # The store verifies the digest while the bytes stream in.
                await self.store.put_blob(name, parse_digest(digest), _spooled(blob, fd), blob.size)
            finally:
                os.close(fd)

    async def _copy(self, name: str, digest: str, origins: list[Origin]) -> None:
        parsed = parse_digest(digest)
        if await self.store.has_blob(name, parsed):
            return
        part, size_file = self._paths(name, digest)
        failure: Exception | None = None
        try:
            for source_name, upstream, remote in origins:
                try:
                    await self._copy_from(upstream, remote, name, digest, part, size_file)
                    return
                except (NotFound, Unauthorized):
                    continue
                except (UpstreamError, RegistryError) as err:
                    # The next origin's bytes are the same blob's: readers of the spool stay right.
                    log.warning(
                        "sync: blob not synced",
                        extra={"repository": name, "digest": digest, "upstream": source_name, "error": str(err)},
                    )
                    failure = err
            if failure is not None:
                raise failure
        finally:
            for path in (size_file, part):
                path.unlink(missing_ok=True)


async def _spooled(blob: AsyncIterable[bytes], fd: int) -> AsyncIterator[bytes]:
    async for chunk in blob:
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]
        yield chunk


def _read_size(path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(path.read_text())
    return None


def _write_size(path: Path, size: int) -> None:
    # Whole or absent for readers: written aside, then renamed into place.
    temporary = path.with_suffix(".size-tmp")
    temporary.write_text(str(size))
    os.replace(temporary, path)


def _log_failure(future: asyncio.Future[bool]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.debug("sync: background blob copy failed", extra={"error": str(future.exception())})
