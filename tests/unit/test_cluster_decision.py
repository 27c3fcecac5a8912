"""Where a request is answered in a cluster (zot_registry.cluster.decision.decide), without a server."""

from __future__ import annotations

import pytest
from zot_registry.api.requests import RegistryRequest
from zot_registry.api.routing import Route
from zot_registry.cluster.decision import SERVE_HERE, Forward, Refuse, ServeHere, decide
from zot_registry.cluster.membership import Membership
from zot_registry.cluster.proxy import HOP_HEADER
from zot_registry.cluster.topology import View
from zot_registry.errors import LoopDetected, PeerUnavailable

from tests.support.registry_requests import registry_request

MEMBERS = [("10.0.0.1", 5000), ("10.0.0.2", 5000), ("10.0.0.3", 5000)]
KEY = b"loremipsumdolors"
REPOSITORY_ROUTES = ["tags", "manifest", "blob", "uploads", "upload", "referrers"]


def _request(headers: dict[str, str] | None = None, args: dict[str, str] | None = None) -> RegistryRequest:
    return registry_request(headers, args)


def _membership(self_index: int | None = 0) -> Membership:
    return Membership(MEMBERS, KEY, self_index=self_index, reason="" if self_index is not None else "no DNS yet")


def _view(membership: Membership) -> View:
    """One list, no change under way."""
    return View(0, membership, None, None)


def _name_owned_by(membership: Membership, index: int) -> str:
    return next(name for i in range(1000) if membership.owner(name := f"repo-{i}") == index)


@pytest.mark.parametrize("kind", REPOSITORY_ROUTES)
def test_a_repository_of_another_member_is_forwarded_to_it(kind: str) -> None:
    membership = _membership()
    name = _name_owned_by(membership, 2)
    assert decide(_request(), Route(kind, name), _view(membership), False) == Forward("10.0.0.3:5000")


@pytest.mark.parametrize("kind", REPOSITORY_ROUTES)
def test_a_repository_of_ours_is_served_here(kind: str) -> None:
    membership = _membership()
    name = _name_owned_by(membership, 0)
    assert decide(_request({HOP_HEADER: "1"}), Route(kind, name), _view(membership), False) == SERVE_HERE


def test_a_second_hop_is_refused_as_a_loop() -> None:
    membership = _membership()
    name = _name_owned_by(membership, 1)
    decision = decide(_request({HOP_HEADER: "1"}), Route("manifest", name, "latest"), _view(membership), False)
    assert isinstance(decision, Refuse) and isinstance(decision.error, LoopDetected)
    assert decision.error.status == 508 and decision.error.code == "UNSUPPORTED"
    assert "10.0.0.2:5000" in decision.error.message and "cluster.members differ" in decision.error.message


def test_a_member_that_does_not_know_itself_yet_refuses_repository_routes_only() -> None:
    membership = _membership(None)
    decision = decide(_request(), Route("blob", "repo", "sha256:" + "0" * 64), _view(membership), False)
    assert isinstance(decision, Refuse) and isinstance(decision.error, PeerUnavailable)
    assert decision.error.status == 503 and decision.error.message == "this member is not ready: no DNS yet"
    assert decide(_request(), Route("base"), _view(membership), False) == SERVE_HERE


@pytest.mark.parametrize(
    ("shared", "hop", "gathered"),
    [(False, False, True), (False, True, False), (True, False, False), (True, True, False)],
)
def test_the_catalog_is_gathered_only_from_storage_local_to_each_member(
    shared: bool, hop: bool, gathered: bool
) -> None:
    request = _request({HOP_HEADER: "1"} if hop else {})
    assert decide(request, Route("catalog"), _view(_membership()), shared) == ServeHere(gather_catalog=gathered)


@pytest.mark.parametrize(
    ("args", "across"),
    [
        ({"mount": "sha256:" + "a" * 64, "from": "other"}, True),
        ({"mount": "sha256:" + "a" * 64}, False),
        ({"mount": "", "from": "other"}, False),
        ({}, False),
    ],
)
def test_a_mount_with_from_may_copy_from_another_member(args: dict[str, str], across: bool) -> None:
    membership = _membership()
    name = _name_owned_by(membership, 0)
    decision = decide(_request(args=args), Route("uploads", name), _view(membership), False)
    assert decision == ServeHere(mount_across=across)
