"""The rules of an in-place membership change, without a server: routing while members switch one by
one (decision.decide with epochs), which writes wait, which list a restarted member takes, and how a
copy merges into a repository its new owner already holds."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
from zot_registry.api.requests import RegistryRequest
from zot_registry.api.routing import Route
from zot_registry.cluster.control_models import EPOCH_HEADER, ChangeState
from zot_registry.cluster.decision import Forward, Refuse, ServeHere, decide
from zot_registry.cluster.imports import merge_indexes
from zot_registry.cluster.membership import Membership
from zot_registry.cluster.proxy import HOP_HEADER
from zot_registry.cluster.topology import Topology, TopologyFile, View
from zot_registry.config.values import split_member
from zot_registry.errors import LoopDetected, MembersChanging
from zot_registry.storage.index import Index

from tests.support.registry_requests import registry_request

KEY = b"loremipsumdolors"
THREE = ["10.0.0.1:5000", "10.0.0.2:5000", "10.0.0.3:5000"]
FOUR = [*THREE, "10.0.0.4:5000"]


def _membership(members: list[str], me: int | None) -> Membership:
    membership = Membership([split_member(m) for m in members], KEY, self_index=me, reason="")
    membership.outside = me is None
    return membership


def _view(me: int, epoch: int = 3, change_to: list[str] | None = FOUR, me_next: int | None = None) -> View:
    change = (
        ChangeState(epoch=epoch + 1, from_members=THREE, to_members=change_to, step="freeze", phase="frozen")
        if change_to is not None
        else None
    )
    following = _membership(change_to, me if me_next is None else me_next) if change_to is not None else None
    return View(epoch, _membership(THREE, me), change, following)


def _request(hop: str | None = None, epoch: int | None = None) -> RegistryRequest:
    headers = {}
    if hop is not None:
        headers[HOP_HEADER] = hop
    if epoch is not None:
        headers[EPOCH_HEADER] = str(epoch)
    return registry_request(headers)


def _moving_name(from_owner: int, to_owner: int) -> str:
    """A name owned by `from_owner` of THREE and `to_owner` of FOUR."""
    old, new = _membership(THREE, 0), _membership(FOUR, 0)
    return next(n for i in range(5000) if old.owner(n := f"repo-{i}") == from_owner and new.owner(n) == to_owner)


def test_a_request_from_a_member_that_switched_is_routed_by_the_new_list() -> None:
    name = _moving_name(0, 3)
    # Member 3 joins: by the old list member 0 owns the repository, by the new one member 3 does.
    joining = _view(me=3, me_next=3)
    joining = View(3, _membership(THREE, None), joining.change, joining.next)
    assert decide(_request("1", 4), Route("manifest", name, "v1"), joining, False) == ServeHere()
    # The same request from a member that has not switched goes by the old list: to member 0.
    assert decide(_request(), Route("manifest", name, "v1"), joining, False) == Forward(THREE[0], epoch=3)


def test_a_newer_epoch_this_member_does_not_know_is_answered_retry() -> None:
    decision = decide(_request("1", 9), Route("blob", "x", "sha256:" + "0" * 64), _view(0), False)
    assert isinstance(decision, Refuse) and isinstance(decision.error, MembersChanging)
    assert decision.error.status == 503 and decision.error.headers == {"Retry-After": "1"}


def test_a_member_that_switched_passes_on_a_request_routed_by_the_old_list() -> None:
    name = _moving_name(0, 3)
    switched = View(4, _membership(FOUR, 0), None, None)
    # Member 1 (old list) forwarded to member 0; member 0 no longer owns it and passes it on once.
    assert decide(_request("1", 3), Route("tags", name), switched, False) == Forward(FOUR[3], hops=2, epoch=4)
    refused = decide(_request("2", 3), Route("tags", name), switched, False)
    assert isinstance(refused, Refuse) and isinstance(refused.error, LoopDetected)
    # zot members send no epoch: the same rule as before, a second hop is a loop.
    refused = decide(_request("1"), Route("tags", name), switched, False)
    assert isinstance(refused, Refuse) and isinstance(refused.error, LoopDetected)


def test_a_member_outside_the_list_forwards_everything() -> None:
    view = View(4, _membership(THREE, None), None, None)
    name = _moving_name(1, 1)
    assert decide(_request(), Route("manifest", name, "v1"), view, False) == Forward(THREE[1], epoch=4)


@pytest.mark.parametrize(
    ("me", "from_owner", "to_owner", "step", "waits"),
    [
        (0, 0, 3, "freeze", True),  # ours and moving, frozen: waits
        (0, 0, 3, "copy", False),  # still the bulk copy: writes go on
        (0, 0, 0, "freeze", False),  # ours and staying
        (1, 0, 3, "freeze", False),  # not ours: its owner decides
    ],
)
def test_only_writes_to_a_repository_leaving_this_member_wait_and_only_once_frozen(
    me: int, from_owner: int, to_owner: int, step: str, waits: bool
) -> None:
    view = _view(me)
    assert view.change is not None
    view = View(view.epoch, view.current, view.change.model_copy(update={"step": step}), view.next)
    assert view.writes_wait(_moving_name(from_owner, to_owner)) is waits


def _topology_file(path: Path, members: list[str], config_members: list[str], epoch: int) -> None:
    document = TopologyFile(epoch=epoch, members=members, config_members=config_members, self_index=0)
    (path / ".cluster").mkdir(parents=True, exist_ok=True)
    (path / ".cluster" / "topology.json").write_text(document.model_dump_json(by_alias=True))


@pytest.mark.parametrize(
    ("config", "kept"),
    [
        (THREE, True),  # the config this member started from: the switch it made since stands
        (FOUR, True),  # the config caught up with the switch
        (["10.0.0.1:5000", "10.0.0.2:5000"], False),  # a new list by restart: the config wins
    ],
)
def test_a_restarted_member_keeps_a_list_it_switched_to_unless_its_config_says_otherwise(
    tmp_path: Path, config: list[str], kept: bool
) -> None:
    _topology_file(tmp_path, FOUR, THREE, epoch=4)
    view = Topology(tmp_path, config, KEY).view()
    assert (view.epoch, [m for m in map(view.current.member, range(len(view.current.members)))]) == (
        (4, FOUR) if kept else (0, config)
    )


def _index(*entries: tuple[str, str | None]) -> Index:
    manifests = []
    for digest, tag in entries:
        descriptor: dict[str, object] = {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": 10,
        }
        if tag:
            descriptor["annotations"] = {"org.opencontainers.image.ref.name": tag}
        manifests.append(descriptor)
    return Index({"schemaVersion": 2, "manifests": manifests}, manifests=manifests)


def _tags(manifests: list[dict[str, object]]) -> dict[str, str]:
    return {
        str(cast(dict[str, str], m.get("annotations") or {}).get("org.opencontainers.image.ref.name")): str(m["digest"])
        for m in manifests
        if m.get("annotations")
    }


def test_a_copy_merged_into_an_existing_repository_keeps_both_and_the_newer_tag() -> None:
    a, b, c, d = (f"sha256:{x * 64}" for x in "abcd")
    existing = _index((a, "v1"), (b, "shared"), (c, None))  # what a member back from failover holds
    incoming = _index((d, "v2"), (a, "shared"))  # what the stand-in got meanwhile
    merged = merge_indexes(existing, incoming, {a: 100.0, b: 300.0, c: 50.0}, {d: 200.0, a: 100.0})
    assert _tags(merged) == {"v1": a, "v2": d, "shared": b}  # b was pushed after a
    assert {m["digest"] for m in merged} == {a, b, c, d}
    merged = merge_indexes(existing, incoming, {b: 100.0}, {a: 200.0})
    assert _tags(merged)["shared"] == a


def test_a_joining_member_not_in_the_current_list_forwards_instead_of_refusing() -> None:
    """A new pod starts with the current list, in which it is not (so it never identifies itself in it);
    once it knows the change it joins with, it is ready, and must forward by the current list."""
    unidentified = Membership([split_member(m) for m in THREE], KEY, reason="not in cluster.members")
    joining = View(3, unidentified, _view(0).change, _membership(FOUR, 3))
    name = _moving_name(1, 1)
    assert decide(_request(), Route("manifest", name, "v1"), joining, False) == Forward(THREE[1], epoch=3)
    # Before it knows of a change, it is not ready: it says so.
    alone = View(3, unidentified, None, None)
    refused = decide(_request(), Route("manifest", name, "v1"), alone, False)
    assert isinstance(refused, Refuse) and "not in cluster.members" in refused.error.message
