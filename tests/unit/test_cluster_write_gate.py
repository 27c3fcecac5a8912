"""The write gate across workers (write_gate.WriteGate): each worker has its own Topology on the one
file, as the hypercorn workers of a member do."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from zot_registry.cluster.control_models import ChangeState
from zot_registry.cluster.hashing import owner_index
from zot_registry.cluster.topology import Topology, TopologyFile, View
from zot_registry.cluster.write_gate import WriteGate
from zot_registry.errors import MembersChanging, RepositoryMoving

KEY = b"loremipsumdolors"
TWO = ["10.0.0.1:5000", "10.0.0.2:5000"]
THREE = [*TWO, "10.0.0.3:5000"]


def _name_moving_from_0_to_2() -> str:
    return next(n for i in range(5000) if owner_index(n := f"r-{i}", KEY, 2) == 0 and owner_index(n, KEY, 3) == 2)


def _owned_by_me(view: View, name: str) -> bool:
    return view.current.owner(name) == view.current.self_index


def test_a_write_routed_by_a_list_another_worker_switched_away_from_is_turned_back(tmp_path: Path) -> None:
    name = _name_moving_from_0_to_2()
    routing = Topology(tmp_path, TWO, KEY)  # the worker that routed the request
    switching = Topology(tmp_path, TWO, KEY)  # the worker that took the switch
    with switching.locked():
        switching.write(TopologyFile(epoch=1, members=TWO, self_index=0, config_members=TWO))
    routed_by = routing.view(fresh=True)
    assert _owned_by_me(routed_by, name)  # by its view, this member serves the write
    with switching.locked():
        switching.write(TopologyFile(epoch=2, members=THREE, self_index=0, config_members=TWO))

    async def write() -> None:
        async with WriteGate(routing).writing(name, lambda view: _owned_by_me(view, name)):
            raise AssertionError("the write went in after the switch")

    with pytest.raises(MembersChanging) as refused:
        asyncio.run(write())
    assert refused.value.status == 503 and refused.value.headers == {"Retry-After": "1"}


def test_writes_to_a_repository_leaving_this_member_wait_from_the_freeze(tmp_path: Path) -> None:
    name = _name_moving_from_0_to_2()
    topology = Topology(tmp_path, TWO, KEY)
    change = ChangeState(epoch=1, from_members=TWO, to_members=THREE, step="copy", phase="copying")
    with topology.locked():
        topology.write(TopologyFile(members=TWO, self_index=0, config_members=TWO, change=change, to_self=0))
    gate = WriteGate(topology)

    async def write() -> str:
        async with gate.writing(name, lambda view: True):
            return "written"

    assert asyncio.run(write()) == "written"  # the bulk copy: writes go on
    topology.update(change=change.model_copy(update={"step": "freeze"}))
    with pytest.raises(RepositoryMoving):
        asyncio.run(write())


def test_the_freeze_waits_for_a_write_in_flight(tmp_path: Path) -> None:
    topology = Topology(tmp_path, TWO, KEY)
    gate = WriteGate(topology)
    events: list[str] = []

    async def scenario() -> None:
        entered = asyncio.Event()

        async def slow_write() -> None:
            async with gate.writing("any", lambda view: True):
                entered.set()
                await asyncio.sleep(0.3)
                events.append("write done")

        writer = asyncio.create_task(slow_write())
        await entered.wait()
        await gate.drain()
        events.append("drained")
        await writer

    asyncio.run(scenario())
    assert events == ["write done", "drained"]
