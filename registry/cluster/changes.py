"""A membership change on this member: accepting it, its steps, the switch, abandoning it, and the old
copies it leaves behind. The HTTP side is control.py; the copying itself rebalance.py.

The switch writes the new list into the topology file, which every worker routes by from then on.
The repositories that left this member are retired a moment later (in-flight requests that were
routed by the old list finish first): their entries move under `.cluster/retired/<epoch>/` and are
deleted after `keepOldCopiesSeconds`, which may be 0. A repository's own entries only (index.json
first, then blobs, oci-layout and sessions): a nested repository (`a/b` inside `a`) stays where it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Coroutine
from typing import Any

from ..errors import ChangeConflict, MembersChanging
from ..storage.local.store import LocalStore
from .control_models import ChangeRequest, ChangeState, MemberState
from .imports import Imports
from .membership import NotAMember, identify
from .rebalance import leaving_repositories
from .topology import Topology, TopologyFile, _addresses

log = logging.getLogger("zot_registry.cluster")

RETIRE_AFTER = 1.0  # seconds after a switch: every worker routes by the new list by then (topology.REFRESH)
_STEPS = ("copy", "freeze", "switch")
_OWN_ENTRIES = ("index.json", "blobs", "oci-layout", ".uploads")


def _away_after(before: dict[str, list[str]], change: ChangeState) -> dict[str, list[str]]:
    """The dropped members after `change`: those it names absent, each with the list it was first dropped
    from (a later change while it is away keeps that home)."""
    away: dict[str, list[str]] = {}
    for member in change.absent:
        if member in before:
            away[member] = before[member]
        elif member in change.from_members and member not in change.to_members:
            away[member] = change.from_members
    return away


class Changes:
    def __init__(
        self,
        topology: Topology,
        store: LocalStore | None,
        imports: Imports | None,
        address: str,
        port: int,
        shared_storage: bool,
        version: str,
    ) -> None:
        self.topology = topology
        self.store = store  # None with shared storage: nothing is copied or retired
        self.imports = imports
        self.address, self.port = address, port
        self.shared_storage = shared_storage
        self.version = version
        self.retired = topology.folder / "retired"
        self._tasks: set[asyncio.Task[None]] = set()

    # What the member says --------------------------------------------------------------------------

    def imported(self, name: str, epoch: int) -> None:
        """Record a repository published here for change `epoch` that did not exist here before."""
        with self.topology.locked():
            document = self.topology.document
            if document.change is not None and document.change.epoch == epoch and name not in document.imported:
                self.topology.write(document.model_copy(update={"imported": [*document.imported, name]}))

    def state(self) -> MemberState:
        document = self.topology.document
        view = self.topology.view()
        return MemberState(
            epoch=document.epoch,
            members=document.members,
            self_index=view.current.self_index,
            change=document.change,
            shared_storage=self.shared_storage,
            version=self.version,
        )

    # Steps ------------------------------------------------------------------------------------------

    async def request(self, asked: ChangeRequest) -> MemberState:
        """Bring this member to `asked.step` of the change (idempotent)."""
        to_self = await self._find_self(asked.to_members)
        from_self = await self._find_self(asked.from_members)
        with self.topology.locked():
            document = self.topology.document
            if asked.epoch == document.epoch and document.change is None and document.members == asked.to_members:
                return self.state()  # switched already: asking again only reports
            if asked.epoch <= document.epoch:
                raise ChangeConflict(
                    f"change epoch {asked.epoch} is not newer than this member's list (epoch {document.epoch})"
                )
            current = document.change
            if current is not None and current.epoch > asked.epoch:
                raise ChangeConflict(f"a newer change (epoch {current.epoch}) is under way here")
            if current is not None and current.epoch == asked.epoch:
                if (current.from_members, current.to_members) != (asked.from_members, asked.to_members):
                    raise ChangeConflict(f"change epoch {asked.epoch} here has other member lists")
                if asked.step == "switch":
                    self._switch(document, current)
                elif _STEPS.index(asked.step) > _STEPS.index(current.step):
                    changed = current.model_copy(update={"step": asked.step})
                    self.topology.write(document.model_copy(update={"change": changed}))
                return self.state()
            change = ChangeState(
                epoch=asked.epoch,
                from_members=asked.from_members,
                to_members=asked.to_members,
                step=asked.step,
                phase="copying",
                keep_old_copies_seconds=asked.keep_old_copies_seconds,
                absent=asked.absent,
            )
            if current is not None:
                self._abandon(document, f"replaced by epoch {asked.epoch}")
                document = self.topology.document
            # The last switch's departed copies go first: an import of this change must never merge into one.
            self._retire_recorded(document)
            document = self.topology.document
            if asked.step == "switch":
                # Never prepared here (a member whose state was lost, or that joined late): it may switch
                # at once only if nothing of what it holds would leave it.
                proposed = document.model_copy(update={"change": change, "to_self": to_self})
                if self.store is not None and leaving_repositories(
                    self.store, proposed, self.topology.key, self.topology.routing
                ):
                    raise ChangeConflict(
                        f"change epoch {asked.epoch} was never prepared here and repositories here move: "
                        "ask for copy first"
                    )
                self._switch(proposed, change.model_copy(update={"phase": "frozen"}))
                return self.state()
            adopted = {}
            if document.members != asked.from_members:
                # A member that missed a change (or joins) routes by the cluster's current list from now on.
                adopted = {"members": asked.from_members, "self_index": from_self, "epoch": asked.epoch - 1}
            self.topology.write(
                document.model_copy(update={**adopted, "change": change, "to_self": to_self, "imported": []})
            )
            log.info(
                "membership change accepted",
                extra={"epoch": asked.epoch, "from": asked.from_members, "to": asked.to_members},
            )
        return self.state()

    def settle_shared(self) -> None:
        """With shared storage nothing is copied: each step is reached as soon as it is asked for."""
        with self.topology.locked():
            document = self.topology.document
            change = document.change
            if change is None:
                return
            phase = "copied" if change.step == "copy" else "frozen"
            if change.phase != phase:
                self.topology.write(document.model_copy(update={"change": change.model_copy(update={"phase": phase})}))

    async def abandon(self) -> MemberState:
        with self.topology.locked():
            document = self.topology.document
            if document.change is not None:
                self._abandon(document, "abandoned by the operator")
        return self.state()

    async def _find_self(self, members: list[str]) -> int | None:
        try:
            return await asyncio.to_thread(identify, _addresses(members), self.address, self.port)
        except NotAMember:
            return None
        except OSError as err:
            raise MembersChanging(
                f"cannot place this member in the list yet: {err}", headers={"Retry-After": "1"}
            ) from None

    def _abandon(self, document: TopologyFile, why: str) -> None:
        """Forget the change: writes resume, the copies published here that nothing else had are retired."""
        change = document.change
        assert change is not None
        self.topology.write(document.model_copy(update={"change": None, "to_self": None, "imported": []}))
        if self.store is not None:
            for name in document.imported:
                self._retire(name, change.epoch, 0.0)
        if self.imports is not None:
            self.imports.clear()
        log.info("membership change dropped", extra={"epoch": change.epoch, "reason": why})

    def _switch(self, document: TopologyFile, change: ChangeState) -> None:
        if change.phase != "frozen":
            raise ChangeConflict(
                f"change epoch {change.epoch} is {change.phase} here: switch only once every member is frozen"
            )
        # What leaves is what the final copy published elsewhere: writes to it have waited since.
        leaving = (
            sorted(leaving_repositories(self.store, document, self.topology.key, self.topology.routing))
            if self.store
            else []
        )
        switched = TopologyFile(
            epoch=change.epoch,
            members=change.to_members,
            self_index=document.to_self,
            config_members=document.config_members,
            retiring=leaving,
            retire_keep_seconds=change.keep_old_copies_seconds,
            away=_away_after(document.away, change),
        )
        self.topology.write(switched)
        log.info("membership change switched", extra={"epoch": change.epoch, "members": change.to_members})
        if self.imports is not None:
            self.imports.clear()
        if leaving:
            self._later(self._retire_soon())

    # Old copies -------------------------------------------------------------------------------------

    def _later(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retire_soon(self) -> None:
        await asyncio.sleep(RETIRE_AFTER)
        keep = await asyncio.to_thread(self.retire_pending)
        if keep > 0:
            await asyncio.sleep(keep)
            await asyncio.to_thread(self.purge_expired)

    def retire_pending(self) -> float:
        """Retire the repositories the last switch sent away (recorded then, never guessed from the
        list: a member back from failover holds repositories nobody else has). Returns how long they are kept."""
        with self.topology.locked():
            document = self.topology.document
            self._retire_recorded(document)
        self.purge_expired()
        return document.retire_keep_seconds

    def _retire_recorded(self, document: TopologyFile) -> None:
        """With the topology lock held: retire what `document` records, and clear the record."""
        if not document.retiring or self.store is None:
            return
        for name in document.retiring:
            self._retire(name, document.epoch, document.retire_keep_seconds)
        self.topology.write(document.model_copy(update={"retiring": []}))

    def _retire(self, name: str, epoch: int, keep: float) -> None:
        assert self.store is not None
        source = self.store.layout.repo(name)
        target = self.retired / str(epoch) / hashlib.sha256(name.encode()).hexdigest()[:40]
        target.mkdir(parents=True, exist_ok=True)
        (target / "name").write_text(name)
        (target / "expires").write_text(json.dumps(time.time() + keep))
        for entry in _OWN_ENTRIES:  # index.json first: the repository is gone from the listing at once
            with contextlib.suppress(FileNotFoundError):
                os.replace(source / entry, target / entry)
        with contextlib.suppress(OSError):
            source.rmdir()  # only if nothing else (a nested repository) lives there
        log.info("repository retired after moving", extra={"repository": name, "epoch": epoch})

    def purge_expired(self) -> None:
        """Delete the retired copies whose time is up."""
        now = time.time()
        for epoch_folder in self.retired.iterdir() if self.retired.is_dir() else []:
            for copy in epoch_folder.iterdir():
                try:
                    expires = float(json.loads((copy / "expires").read_text()))
                except (OSError, ValueError):
                    expires = 0.0
                if expires <= now:
                    shutil.rmtree(copy, ignore_errors=True)
            with contextlib.suppress(OSError):
                epoch_folder.rmdir()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
