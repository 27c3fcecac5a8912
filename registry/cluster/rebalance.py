"""The sending side of a membership change: copy every repository this member holds and does not own
under the next list to its next owner, then, frozen, what changed since, and have the owner publish it.

One task per member does it (whichever worker holds `.cluster/rebalance.lock`), driven by the change
in the topology file: `copying` -> `copied` (bulk copy, writes go on), and once the operator asks
for the freeze, `freezing` (writes to the moving repositories wait, see write_gate.py) -> `frozen`
(the delta is copied and every new owner published its copy). A copy that fails is retried with
back-off, its reason in the change's `error` and the `failures` count; the task stops when the change
is replaced or abandoned, and the next control request (the operator repeats them) starts it again
after a crash, where the blobs the new owner already has are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import metrics
from ..digests import parse_digest
from ..errors import RegistryError
from ..storage.index import Index
from ..storage.local.store import LocalStore
from .control_client import PeerControl
from .control_models import ChangeState, Progress
from .hashing import Routing, owner_of
from .topology import Topology, TopologyFile
from .write_gate import WriteGate

log = logging.getLogger("zot_registry.cluster")

PARALLEL_REPOSITORIES = 4
# A copy that fails is mostly a new owner that was not told of the change yet, or is still starting:
# retried soon, and never less often than every 5 s.
BACKOFF_FIRST, BACKOFF_MAX = 0.25, 5.0
SAVE_EVERY = 0.5  # seconds between progress writes to the topology file


@dataclass(frozen=True)
class BlobFile:
    digest: str
    size: int
    mtime: float
    path: Path


def repository_blobs(store: LocalStore, name: str) -> list[BlobFile]:
    """Every blob file of the repository, whether its manifests still reference it or not."""
    found: list[BlobFile] = []
    blobs = store.layout.blobs(name)
    for algorithm in os.listdir(blobs) if blobs.is_dir() else []:
        for hex_digest in os.listdir(blobs / algorithm):
            path = blobs / algorithm / hex_digest
            try:
                parse_digest(f"{algorithm}:{hex_digest}")
                st = os.stat(path)
            except (RegistryError, FileNotFoundError):
                continue  # not a blob (a temporary name), or collected meanwhile
            found.append(BlobFile(f"{algorithm}:{hex_digest}", st.st_size, st.st_mtime, path))
    return found


def my_address(document: TopologyFile) -> str | None:
    """This member's address in the change's next list, else in the current one."""
    change = document.change
    if change is not None and document.to_self is not None:
        return change.to_members[document.to_self]
    if document.self_index is not None:
        return document.members[document.self_index]
    return None


def leaving_repositories(
    store: LocalStore, document: TopologyFile, key: bytes, routing: Routing = "modulo"
) -> dict[str, str]:
    """Repository -> its next owner, for each repository here whose next owner is another member."""
    change = document.change
    if change is None:
        return {}
    me = change.to_members[document.to_self] if document.to_self is not None else None
    to = change.to_members
    moving: dict[str, str] = {}
    for name in store.repository_names():
        owner = to[owner_of(name, key, to, routing)]
        if owner != me:
            moving[name] = owner
    return moving


@dataclass
class _Tally:
    repositories: Progress = field(default_factory=Progress)
    bytes: Progress = field(default_factory=Progress)
    failures: int = 0
    error: str = ""


class ChangeReplaced(Exception):
    """The change this task works on was replaced, abandoned or switched meanwhile."""


class Rebalancer:
    def __init__(self, store: LocalStore, topology: Topology, gate: WriteGate, peers: PeerControl, key: bytes) -> None:
        self.store = store
        self.topology = topology
        self.gate = gate
        self.peers = peers
        self.key = key
        self.lock_path = topology.folder / "rebalance.lock"
        self._task: asyncio.Task[None] | None = None

    # Which worker copies -------------------------------------------------------------------------

    def start_if_idle(self) -> None:
        """Start the copying task here unless it runs already, in this worker or another."""
        if self._task is not None and not self._task.done():
            return
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return
        self._task = asyncio.get_running_loop().create_task(self._run_holding(fd))

    async def _run_holding(self, fd: int) -> None:
        try:
            await self.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("membership change: the copying task failed; the next control request restarts it")
        finally:
            os.close(fd)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    # The steps ------------------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            document = self.topology.document
            change = document.change
            if change is None:
                return
            try:
                if change.phase == "copying":
                    await self._copy_all(document, final=False)
                    self._save(change.epoch, phase="copied")
                elif change.phase in ("copied", "freezing") and change.step != "copy":
                    if change.phase == "copied":
                        self._save(change.epoch, phase="freezing", frozen_since=time.time())
                    # Every write that started before the freeze has finished once this returns.
                    await self.gate.drain()
                    await self._copy_all(self.topology.document, final=True)
                    self._save(change.epoch, phase="frozen")
                    log.info("membership change: frozen, every copy published", extra={"epoch": change.epoch})
                elif change.phase == "frozen":
                    return  # nothing to do until the switch
                else:
                    await asyncio.sleep(0.2)  # copied: waiting for the operator's freeze
            except ChangeReplaced:
                continue

    async def _copy_all(self, document: TopologyFile, final: bool) -> None:
        change = document.change
        assert change is not None
        moving = leaving_repositories(self.store, document, self.key, self.topology.routing)
        tally = _Tally(failures=change.failures)
        tally.repositories.total = len(moving)
        limit = asyncio.Semaphore(PARALLEL_REPOSITORIES)
        saver = asyncio.get_running_loop().create_task(self._save_periodically(change.epoch, tally))

        async def one(name: str, target: str) -> None:
            async with limit:
                await self._copy_with_retries(change.epoch, name, target, final, tally)

        try:
            await asyncio.gather(*(one(name, target) for name, target in sorted(moving.items())))
        finally:
            saver.cancel()
        tally.error = ""
        self._save_tally(change.epoch, tally)

    async def _copy_with_retries(self, epoch: int, name: str, target: str, final: bool, tally: _Tally) -> None:
        delay = BACKOFF_FIRST
        while True:
            self._check_current(epoch)
            try:
                sent = await self._copy_repository(epoch, name, target, final, tally)
                tally.repositories.done += 1
                metrics.REBALANCE_REPOSITORIES.labels("published" if final else "copied").inc()
                metrics.REBALANCE_BYTES.inc(sent)
                return
            except (RegistryError, OSError) as err:
                message = err.message if isinstance(err, RegistryError) else str(err)
                tally.failures += 1
                tally.error = f"copying {name} to {target}: {message}"
                metrics.REBALANCE_FAILURES.inc()
                log.warning("membership change: copy failed, retrying", extra={"reason": tally.error})
                self._save_tally(epoch, tally)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _copy_repository(self, epoch: int, name: str, target: str, final: bool, tally: _Tally) -> int:
        """Send the blobs the target lacks; with `final`, have it publish. Returns the bytes sent."""
        blobs = repository_blobs(self.store, name)
        tally.bytes.total += sum(b.size for b in blobs)
        lacking = set(await self.peers.missing(target, epoch, name, [(b.digest, b.size) for b in blobs]))
        sent = 0
        for blob in blobs:
            if blob.digest in lacking:
                await self.peers.send_blob(target, epoch, name, blob.digest, blob.path, blob.size, blob.mtime)
                sent += blob.size
            tally.bytes.done += blob.size
        if final:
            index_bytes = self.store.layout.index(name).read_bytes()
            index = Index.parse(index_bytes, f"index.json of {name}")
            times = {b.digest: b.mtime for b in blobs if b.digest in index.by_digest}
            held = [b.digest for b in blobs]
            published = await self.peers.publish(target, epoch, name, index_bytes, times, held)
            absent = sorted(set(index.by_tag) - set(published.get("tags") or {}))
            if absent:
                raise CopyVerification(f"{target} published {name} without the tags {absent}")
        return sent

    # The change's record ----------------------------------------------------------------------------

    def _check_current(self, epoch: int) -> None:
        change = self.topology.view(fresh=True).change
        if change is None or change.epoch != epoch:
            raise ChangeReplaced()

    def _save(self, epoch: int, **fields: Any) -> None:
        with self.topology.locked():
            document = self.topology.document
            if document.change is None or document.change.epoch != epoch:
                raise ChangeReplaced()
            change: ChangeState = document.change.model_copy(update=fields)
            self.topology.write(document.model_copy(update={"change": change}))

    def _save_tally(self, epoch: int, tally: _Tally) -> None:
        with contextlib.suppress(ChangeReplaced):
            self._save(
                epoch,
                repositories=tally.repositories.model_copy(),
                bytes=tally.bytes.model_copy(),
                failures=tally.failures,
                error=tally.error,
            )

    async def _save_periodically(self, epoch: int, tally: _Tally) -> None:
        while True:
            await asyncio.sleep(SAVE_EVERY)
            self._save_tally(epoch, tally)


class CopyVerification(RegistryError):
    """The new owner's copy does not hold what the old owner has."""

    code = "UNAVAILABLE"
    status = 502
