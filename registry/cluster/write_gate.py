"""Writes wait while a repository's copy to its next owner is finished.

Every write this member serves (an upload, a manifest or blob change) holds a shared flock on
`.cluster/writes.lock` for the whole request, and checks the topology file afresh once it holds it.
Freezing is the other half (`drain`): the copying task first writes the freeze into the topology
file, then takes the lock exclusively once. When it has it, every write that started before the
freeze has finished, and every write that starts after it sees the freeze and is answered 503 with
Retry-After. So the final copy misses no acknowledged write, across all the worker processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from ..errors import MembersChanging, RepositoryMoving
from .topology import Topology, View

RETRY_AFTER = {"Retry-After": "1"}


def _flock(fd: int, operation: int) -> None:
    fcntl.flock(fd, operation)


async def _acquire(fd: int, operation: int) -> None:
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise
        # Contended only while a freeze drains: wait in a thread, the event loop goes on.
        await asyncio.to_thread(_flock, fd, operation)


class WriteGate:
    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.path: Path = topology.folder / "writes.lock"

    @contextlib.asynccontextmanager
    async def writing(self, name: str, still_here: Callable[[View], bool]) -> AsyncIterator[None]:
        """Hold the gate open for one write to `name`, or raise RepositoryMoving (503) while it moves.

        `still_here`: whether this member still serves the write by the topology as it is now. The
        request was routed by a view up to topology.REFRESH old; a switch in between (made by another
        worker) would otherwise let a write in here after this member's copy was published elsewhere."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            await _acquire(fd, fcntl.LOCK_SH)
            view = self.topology.view(fresh=True)
            if not still_here(view):
                raise MembersChanging(
                    f"the member list changed while routing the write to {name!r}: retry", headers=RETRY_AFTER
                )
            if view.writes_wait(name):
                raise RepositoryMoving(
                    f"repository {name!r} is moving to member {view.next_owner_address(name)}: retry in a moment",
                    headers=RETRY_AFTER,
                )
            yield
        finally:
            os.close(fd)  # releases the lock

    async def drain(self) -> None:
        """Wait until every write that started before now has finished (the caller froze first)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            await _acquire(fd, fcntl.LOCK_EX)
        finally:
            os.close(fd)
