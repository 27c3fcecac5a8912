"""Upload sessions of the local store: chunks appended to a file, closed as a verified blob.

A session is the file .uploads/<id>, holding exactly the bytes acknowledged so far: a request
that fails (wrong size or digest, full disk, client gone) cuts it back to where it started.
It is claimed, for the whole of a PATCH, PUT or DELETE, by an exclusive flock on its file
(`_claimed`); a closed session's file is gone, and nothing ever re-creates it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Protocol

from ...digests import Digest
from ...errors import BlobUploadBusy, BlobUploadUnknown, DigestInvalid, RangeInvalid, RegistryError, SizeInvalid
from ..files import READ_CHUNK, checked_chunks
from ..memo import Hashers
from .layout import LocalLayout


class BlobFiles(Protocol):
    """What upload sessions need from the store: its layout, and how a verified file becomes a blob."""

    @property
    def layout(self) -> LocalLayout: ...

    def ensure_repo(self, name: str) -> None: ...

    def blob_exists(self, name: str, digest: Digest) -> bool: ...

    def commit_blob(self, name: str, source: Path, digest: Digest) -> None: ...


class LocalUploads:
    def __init__(self, store: BlobFiles) -> None:
        self._store = store
        self.layout = store.layout
        self._hashers = Hashers()

    @contextlib.contextmanager
    def _claimed(self, name: str, session: str, busy: RegistryError) -> Iterator[int]:
        """The session file, open for appending and flocked for this request alone.

        Never created here (no O_CREAT): a session closed by another request stays closed. The lock
        is not waited for: a PATCH, PUT or DELETE that finds it held raises `busy` at once. After
        the lock, the file must still be the session: a PUT that finished it in between linked it
        away as a blob, and whoever waited on the old file must not append to that blob.
        """
        path = self.layout.upload(name, session)
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND)
        except (FileNotFoundError, IsADirectoryError):
            raise BlobUploadUnknown(f"upload {session!r} unknown") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise busy from None
            if not _is_private_session(fd, path):
                raise BlobUploadUnknown(f"upload {session!r} unknown")
            yield fd
        finally:
            os.close(fd)  # and with it the lock

    def _busy_chunk(self, path: Path, session: str) -> RegistryError:
        """A chunk sent while another request holds the session is out of order: 416, as the spec says."""
        try:
            last = max(path.stat().st_size - 1, 0)
        except FileNotFoundError:
            last = 0
        return RangeInvalid(
            f"upload {session!r} is busy with another request",
            headers={"Range": f"0-{last}", "Content-Range": f"0-{last}"},
        )

    def _cut_back(self, fd: int, path: Path, offset: int) -> None:
        """Undo a failed request's bytes, unless the file is published already (then it is immutable)."""
        if _is_private_session(fd, path):
            os.ftruncate(fd, offset)

    async def new_upload(self, name: str) -> str:
        self._store.ensure_repo(name)
        session = uuid.uuid4().hex
        uploads = self.layout.uploads(name)
        uploads.mkdir(parents=True, exist_ok=True)
        (uploads / session).touch()
        return session

    async def upload_size(self, name: str, session: str) -> int:
        try:
            return self.layout.upload(name, session).stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            raise BlobUploadUnknown(f"upload {session!r} unknown") from None

    async def append_upload(
        self, name: str, session: str, body: AsyncIterator[bytes], start: int | None, length: int | None
    ) -> int:
        """Append one chunk; `start` from Content-Range must be where the last chunk ended."""
        path = self.layout.upload(name, session)
        with self._claimed(name, session, self._busy_chunk(path, session)) as fd:
            offset = os.fstat(fd).st_size
            if start is not None and start != offset:
                raise RangeInvalid(
                    f"chunk starts at {start}, upload is at {offset}",
                    headers={"Range": f"0-{max(offset - 1, 0)}", "Content-Range": f"0-{max(offset - 1, 0)}"},
                )
            # Without this process's running hash (another worker took earlier chunks) we write without
            # hashing and hash the whole file once at the end, rather than re-reading it on every chunk.
            hasher = self._hashers.take(session, offset) if offset else hashlib.sha256()
            try:
                written = await _stream_to_fd(fd, body, hasher, length)
                if length is not None and written != length:
                    raise SizeInvalid(f"received {written} bytes, Content-Length said {length}")
            except BaseException:
                self._cut_back(fd, path, offset)
                raise
            if hasher is not None:
                self._hashers.keep(session, offset + written, hasher)
            return offset + written

    async def finish_upload(
        self, name: str, session: str, digest: Digest, body: AsyncIterator[bytes], length: int | None
    ) -> None:
        """Close the session as blob `digest`, with an optional last chunk: atomic and idempotent.

        Of two PUTs closing one session (a retry, in any worker) one claims it; the other finds it
        busy or gone, and answers 201 if the blob is there whole, else BLOB_UPLOAD_UNKNOWN.
        """
        path = self.layout.upload(name, session)
        try:
            with self._claimed(
                name, session, BlobUploadUnknown(f"upload {session!r} is being completed or written by another request")
            ) as fd:
                offset = os.fstat(fd).st_size
                try:
                    await self._verify_and_commit(name, session, path, fd, offset, digest, body, length)
                except BaseException:
                    self._cut_back(fd, path, offset)
                    raise
        except BlobUploadUnknown:
            if not self._store.blob_exists(name, digest):
                raise
            async for _ in body:  # the blob is there: this is a retry; its last chunk is not needed
                pass

    async def _verify_and_commit(
        self,
        name: str,
        session: str,
        path: Path,
        fd: int,
        offset: int,
        digest: Digest,
        body: AsyncIterator[bytes],
        length: int | None,
    ) -> None:
        hasher: Any = self._hashers.take(session, offset) if digest.algorithm == "sha256" else None
        if hasher is None:
            hasher = await asyncio.to_thread(_hash_file, path, digest.algorithm)
        written = await _stream_to_fd(fd, body, hasher, length)
        if length is not None and written != length:
            raise SizeInvalid(f"received {written} bytes, Content-Length said {length}")
        if hasher.hexdigest() != digest.hex:
            # The session stays usable, as in distribution, but this content will never match.
            raise DigestInvalid(f"uploaded content does not match digest {digest}")
        await asyncio.to_thread(os.fsync, fd)
        self._store.commit_blob(name, path, digest)
        self._hashers.drop(session)

    async def cancel_upload(self, name: str, session: str) -> None:
        path = self.layout.upload(name, session)
        with self._claimed(name, session, BlobUploadBusy(f"upload {session!r} is busy with another request")):
            self._hashers.drop(session)
            path.unlink(missing_ok=True)


def _is_private_session(fd: int, path: Path) -> bool:
    """Whether `fd` is still the file at `path`, and its only name (not yet published as a blob)."""
    opened = os.fstat(fd)
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    return (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino) and opened.st_nlink == 1


async def _stream_to_fd(fd: int, body: AsyncIterator[bytes], hasher: Any, limit: int | None) -> int:
    written = 0
    async for chunk in checked_chunks(body, hasher, limit):
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]
        written += len(chunk)
    return written


def _hash_file(path: Path, algorithm: str) -> Any:
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            hasher.update(chunk)
    return hasher
