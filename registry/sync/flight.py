"""One upstream fetch for many requests: requests for the same image that arrive while it is being
synced wait for that sync instead of starting their own, in this worker (one task per key) and
across the member's worker processes (an exclusive lock file per key in a directory they share).

A request that had to wait for another worker's sync takes its result: the holder records the time
it finished in the lock file, and a waiter that finds a finish later than its own arrival does not
ask the upstream again. zot merges requests inside its one process; a member of ours has one
process per core, so the lock file is what makes it one fetch per member.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# How often a waiter tries the lock again; a sync takes at least one round trip to the upstream.
_POLL_SECONDS = 0.05


class SingleFlight:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._running: dict[str, asyncio.Task[bool]] = {}

    async def run(self, key: str, work: Callable[[], Awaitable[None]], deadline: float) -> bool:
        """Run `work` for `key` unless a sync of it finished while this request waited. True when
        this call or one it waited for did the work; False when it gave up at `deadline`
        (monotonic). `work`'s errors reach every task waiting in this worker.

        The sync is shielded: a client that goes away does not abort an image half copied."""
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(self._locked(key, work, deadline))
            self._running[key] = task
            task.add_done_callback(lambda _: self._running.pop(key, None))
        return await asyncio.shield(task)

    def _path(self, key: str) -> Path:
        return self.directory / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".lock")

    def busy(self, key: str) -> bool:
        """Whether some worker of this member (this one included) holds `key`'s lock now."""
        try:
            fd = os.open(self._path(key), os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # releases a lock it took
        return False

    async def _locked(self, key: str, work: Callable[[], Awaitable[None]], deadline: float) -> bool:
        arrived = time.time()
        fd = os.open(self._path(key), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        return False
                    await asyncio.sleep(_POLL_SECONDS)
            try:
                if _finished_at(fd) > arrived:
                    return True  # another worker synced it while this one waited
                await work()
                _record_finish(fd)
                return True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _finished_at(fd: int) -> float:
    with contextlib.suppress(OSError, ValueError):
        return float(os.pread(fd, 64, 0).decode() or 0)
    return 0.0


def _record_finish(fd: int) -> None:
    text = f"{time.time():.6f}".encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, text, 0)
