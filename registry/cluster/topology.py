"""The member list this member routes by, and the change to the next one, shared by its workers.

zot reads `cluster.members` once, from its config. Our members also take a new list in place
(control.py): every hypercorn worker of a member must then route by the same list, so the list lives
in a file under the storage root, `.cluster/topology.json`, written whole (write_atomic) under a lock
and read again by each worker when it changes (stat, at most every REFRESH seconds, or at once when a
write must be sure: the write gate).

Which list wins at start: the file, when the config's list is the one the file started from or the
one it switched to (the ConfigMap catches up after a switch, and a pod restarted in between must not
go back); otherwise the config (an operator restarted every member with a new list, or a user edited
it), and the file starts over from it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config.values import split_member
from ..storage.files import write_atomic
from .control_models import ChangeState
from .hashing import Routing, owner_of
from .membership import Membership

log = logging.getLogger("zot_registry.cluster")

REFRESH = 0.05  # seconds a worker may route by a list it read earlier


class TopologyFile(BaseModel):
    """The file's document. `self`/`toSelf`: this member's index in `members` / the change's `to`."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    epoch: int = 0
    members: list[str]
    self_index: int | None = Field(None, alias="self")
    config_members: list[str] = Field(alias="configMembers")
    change: ChangeState | None = None
    to_self: int | None = Field(None, alias="toSelf")
    # Repositories this member published for the change and does not own yet: retired if it is abandoned.
    imported: list[str] = Field(default_factory=list)
    # Repositories this member sent away in the switch to `epoch`, still to be retired (changes.py).
    retiring: list[str] = Field(default_factory=list)
    retire_keep_seconds: float = Field(0.0, alias="retireKeepSeconds")
    # Members failover dropped -> the list they were dropped from (their repositories' home, see View.away).
    away: dict[str, list[str]] = Field(default_factory=dict)


def _addresses(members: list[str]) -> list[tuple[str, int]]:
    return [split_member(m) for m in members]


@dataclass(frozen=True)
class View:
    """One consistent reading of the topology, for one request."""

    epoch: int
    current: Membership
    change: ChangeState | None
    next: Membership | None  # the change's `to`, with this member's index in it
    away: dict[str, list[str]] = field(default_factory=dict)  # dropped member -> the list it was dropped from

    def away_owner(self, name: str) -> str | None:
        """The dropped member that would own `name` (by the list it was dropped from), if any."""
        for member, home in self.away.items():
            if home[owner_of(name, self.current.key, home, self.current.routing)] == member:
                return member
        return None

    def owner_address(self, name: str) -> str:
        return self.current.member(self.current.owner(name))

    def next_owner_address(self, name: str) -> str | None:
        return self.next.member(self.next.owner(name)) if self.next is not None else None

    def moving(self, name: str) -> bool:
        """The repository changes owner with the change under way."""
        return self.next is not None and self.next_owner_address(name) != self.owner_address(name)

    def writes_wait(self, name: str) -> bool:
        """Writes to `name` wait: it moves away from this member, whose copy is being finished."""
        change = self.change
        if change is None or change.step == "copy" or not self.moving(name):
            return False
        return self.current.self_index is not None and self.current.owner(name) == self.current.self_index


class Topology:
    """This worker's view of the shared topology file (one per worker, one file per member)."""

    def __init__(self, root: Path, config_members: list[str], key: bytes, routing: Routing = "modulo") -> None:
        self.folder = root / ".cluster"
        self.path = self.folder / "topology.json"
        self.lock_path = self.folder / "topology.lock"
        self.key = key
        self.routing: Routing = routing
        self.config_members = list(config_members)
        self._stat: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._document = TopologyFile(members=self.config_members, config_members=self.config_members)
        self._memberships: dict[tuple[str, ...], Membership] = {}
        self._view = self._make_view()
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.locked():
            self._adopt_or_restart()

    # Reading ------------------------------------------------------------------------------------

    def view(self, fresh: bool = False) -> View:
        """The topology now; re-read from the file when it changed (at most every REFRESH unless `fresh`)."""
        now = time.monotonic()
        if fresh or now - self._checked >= REFRESH:
            self._checked = now
            self._reload_if_changed()
        return self._view

    @property
    def document(self) -> TopologyFile:
        self.view(fresh=True)
        return self._document

    def _file_stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _reload_if_changed(self) -> None:
        stat = self._file_stat()
        if stat is None or stat == self._stat:
            return
        document = self._read()
        if document is not None:
            self._stat = stat
            self._set(document)

    def _read(self) -> TopologyFile | None:
        try:
            return TopologyFile.model_validate(json.loads(self.path.read_bytes()))
        except FileNotFoundError:
            return None
        except (ValueError, ValidationError) as err:
            log.warning("cluster topology file unreadable, starting over from the config", extra={"reason": str(err)})
            return None

    def _membership(self, members: list[str], self_index: int | None, identified: bool = False) -> Membership:
        # One Membership per list, so its owner cache survives re-reads of an unchanged list.
        key = tuple(members)
        membership = self._memberships.get(key)
        if membership is None:
            membership = Membership(_addresses(members), self.key, routing=self.routing)
            if len(self._memberships) > 8:
                self._memberships.clear()
            self._memberships[key] = membership
        if self_index is None and not identified and len(members) == 1:
            self_index = 0  # zot's rule: a single member is not clustered, it is always itself
        if self_index is not None:
            membership.self_index = self_index
            membership.reason = ""
        elif identified:
            # Told by the change that accepted this list: this member is not in it (it is leaving).
            membership.outside = True
            membership.reason = ""
        return membership

    def _make_view(self) -> View:
        doc = self._document
        # A list taken in place (epoch > 0) came with this member's index in it, found when it was accepted.
        current = self._membership(doc.members, doc.self_index, identified=doc.epoch > 0)
        following = self._membership(doc.change.to_members, doc.to_self, True) if doc.change is not None else None
        return View(doc.epoch, current, doc.change, following, doc.away)

    def _set(self, document: TopologyFile) -> None:
        self._document = document
        self._view = self._make_view()

    # Writing ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The lock of read-modify-write changes to the file (control requests, the copying task)."""
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def write(self, document: TopologyFile) -> None:
        """Replace the file (the caller holds `locked`); this worker sees it at once, the others within REFRESH."""
        write_atomic(self.path, json.dumps(document.model_dump(by_alias=True, mode="json"), indent=1).encode())
        self._stat = self._file_stat()
        self._set(document)

    def update(self, **changes: Any) -> TopologyFile:
        """Read, change and write the document under the lock; returns the new one."""
        with self.locked():
            current = self._read() or self._document
            document = current.model_copy(update=changes)
            self.write(document)
            return document

    def _adopt_or_restart(self) -> None:
        found = self._read()
        if found is not None and self.config_members in (found.members, found.config_members):
            self._stat = self._file_stat()
            self._set(found)
            return
        if found is not None:
            log.warning(
                "cluster.members in the config differ from the list this member last routed by: the config wins",
                extra={"config": self.config_members, "file": found.members},
            )
        self.write(TopologyFile(members=self.config_members, config_members=self.config_members))
