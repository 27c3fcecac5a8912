"""Atomic file writes: temporary file, fsync, rename, so a reader never sees a partial file."""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from ..errors import InsufficientStorage, SizeInvalid

READ_CHUNK = 1 << 20


def temp_name(directory: Path, prefix: str = ".tmp-") -> Path:
    return directory / f"{prefix}{uuid.uuid4().hex}"


def _write_temp(tmp: Path, data: bytes) -> None:
    """`data` into a new private file, flushed to disk, ready to be renamed or linked into place."""
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path.parent)
    try:
        _write_temp(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_exclusive(path: Path, data: bytes) -> bool:
    """Create `path` with `data`, whole or not at all, unless it exists; whether this call created it.

    Written to a temporary file and hard-linked into place: link() fails when the name exists, so
    two workers creating the same file never overwrite each other, and a full disk leaves no
    empty or partial file behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path.parent)
    try:
        _write_temp(tmp, data)
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


# A full disk, or a full quota: the request fails whole, with a 507 that says so.
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


def is_disk_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in _NO_SPACE


@contextlib.contextmanager
def disk_errors() -> Iterator[None]:
    """Turns a full disk (ENOSPC, EDQUOT) into INSUFFICIENT_STORAGE (507); any other OSError stays a bug.

    Every write of the local store cleans up after itself (temporary files removed, a session cut back
    to its acknowledged size, index.json replaced whole or not at all), so the request can just fail.
    """
    try:
        yield
    except OSError as err:
        if not is_disk_full(err):
            raise
        raise InsufficientStorage(
            f"insufficient storage: {os.strerror(err.errno or errno.ENOSPC)} while "
            "writing; nothing of this request was stored, reads go on"
        ) from None


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def file_chunks(path: str, start: int, length: int) -> AsyncIterator[bytes]:
    """Read a file in 1 MiB pieces; the page cache makes these reads cheap enough for the event loop."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.lseek(fd, start, os.SEEK_SET)
        remaining = length
        while remaining > 0:
            chunk = os.read(fd, min(READ_CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        os.close(fd)


async def checked_chunks(body: AsyncIterator[bytes], hasher: Any, limit: int | None) -> AsyncIterator[bytes]:
    """A request body's non-empty chunks, hashed as they pass; SIZE_INVALID past `limit` bytes."""
    seen = 0
    async for chunk in body:
        if not chunk:
            continue
        seen += len(chunk)
        if limit is not None and seen > limit:
            raise SizeInvalid("body is longer than its Content-Length")
        if hasher is not None:
            hasher.update(chunk)
        yield chunk
