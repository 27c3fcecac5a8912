"""Membership changes in place, on real member processes with storage local to each
(tests.support.local_fleet): the control API driven as the operator drives it (copy, freeze, switch),
while clients push and pull."""

from __future__ import annotations

import ssl
from functools import partial
from pathlib import Path

import httpx
import pytest
from zot_registry.cluster.hashing import owner_index

from tests.support.certs import make_certs
from tests.support.images import make_image
from tests.support.kubectl import wait_for
from tests.support.local_fleet import PASSWORD, USER, Fleet, kill, names_with, pause, resume
from tests.support.rebalance import Workload


def test_a_resize_moves_every_repository_and_loses_no_push(fleet: Fleet) -> None:
    """3 -> 5 at the members' level; the operator's test (tests/operator/test_rebalance_in_place.py)
    runs 3 -> 5 -> 2 -> 4 and a failover under the same load, end to end."""
    fleet.start_cluster(3)
    repositories = [f"team-{i // 10}/app-{i}" for i in range(40)]
    workload = Workload(fleet.urls, fleet.ca, (USER, PASSWORD), repositories)
    with workload.client() as http:
        for repo in repositories:
            assert workload.push(http, repo, "v1", make_image(repo, (2048, 4096))), workload.stats.failures
    workload.pause = 0.15  # seconds between two pushes of one client: enough load, a final check that ends
    workload.start(pushers=2, pullers=2)
    try:
        figures = fleet.resize(5)
    finally:
        workload.stop()
    stats = workload.stats
    print(
        f"\n{stats.pushes} pushes acknowledged, {stats.pulls} pulls, {stats.refused_writes} writes answered "
        f"'retry' at least once, {stats.retried} retryable answers; longest unwritable "
        f"{stats.longest_unwritable:.2f} s; steps (s): {figures}"
    )
    assert stats.failures == [], "\n".join(stats.failures[:20])
    assert stats.unavailable == 0
    assert workload.check_everything_pulls(fleet.urls()) == []
    # Each repository is stored by its owner under the final list, and by no other member once the old
    # copies are retired (changes.RETIRE_AFTER after the switch: a pull check faster than that sees them).
    for index in range(5):
        owned = {repo for repo, _ in workload.pushed if fleet.owner(repo) == index}
        wait_for(f"member {index} holds what it owns", partial(fleet.holds_exactly, index, owned), timeout=15)
    with httpx.Client(verify=ssl.create_default_context(cafile=str(fleet.ca)), auth=(USER, PASSWORD)) as http:
        catalog = http.get(f"{fleet.urls()[0]}/v2/_catalog", params={"n": 1000}).json()["repositories"]
    assert catalog == sorted(repositories)


def test_the_control_api_takes_only_the_cluster_ca(fleet: Fleet, tmp_path: Path) -> None:
    fleet.start_cluster(3)
    url = fleet.url(0)
    with httpx.Client(verify=ssl.create_default_context(cafile=str(fleet.ca))) as anonymous:
        refused = anonymous.get(f"{url}/_cluster/v1/state")
        assert refused.status_code == 401 and refused.json()["errors"][0]["code"] == "UNAUTHORIZED"
        # A user's credentials are no way in either.
        assert anonymous.get(f"{url}/_cluster/v1/state", auth=(USER, PASSWORD)).status_code == 401
    state = fleet.control.state(url)
    assert state["members"] == fleet.members and state["self"] == 0 and state["change"] is None
    other = make_certs(tmp_path / "other", ["127.0.0.1"], ca_name="some other CA")
    # A certificate of another CA fails the TLS handshake (the member trusts the cluster CA and the system's).
    context = ssl.create_default_context(cafile=str(fleet.ca))
    context.load_cert_chain(str(other.cert), str(other.key))
    with httpx.Client(verify=context) as stranger, pytest.raises(httpx.HTTPError):
        stranger.get(f"{url}/_cluster/v1/state")


@pytest.mark.parametrize("killed", ["new owner", "old owner"])
def test_a_member_killed_mid_copy_leaves_nothing_partial_and_the_change_completes(fleet: Fleet, killed: str) -> None:
    fleet.start_cluster(2)
    repositories = names_with(
        "big/app", 12, lambda r: fleet.owner(r) == 0 and owner_index(r, fleet.key, 3) == 2, at_least=3
    )
    workload = Workload(fleet.urls, fleet.ca, (USER, PASSWORD), repositories)
    with workload.client() as http:
        for repo in repositories:
            assert workload.push(http, repo, "v1", make_image(repo, (3 << 20, 1 << 20))), workload.stats.failures
    before, after = fleet.members, fleet.all_members[:3]
    moving_from_0 = [r for r in repositories if fleet.owner(r) == 0 and owner_index(r, fleet.key, 3) == 2]
    assert moving_from_0, "the hash key moves nothing from member 0 to member 2: pick other names"
    fleet.start(2, before)
    urls = [fleet.url(i) for i in range(3)]
    for url in urls:
        assert fleet.control.change(url, 1, before, after, "copy").status_code == 200

    # Freeze the new owner as soon as the first blob streams into its staging folder: the copy is then
    # held in its middle whatever the machine's speed (polling the old owner's progress, saved every
    # 0.5 s, could miss a copy that ends sooner).
    staging = Path(fleet.configs[2]["storage"]["rootDirectory"]) / ".cluster" / "staging"
    wait_for("a blob streaming into member 2", lambda: any(p.is_file() for p in staging.rglob("*")), interval=0.002)
    pause(fleet.processes[2])

    def copying() -> bool:
        change = fleet.control.state(fleet.url(0))["change"]
        return bool(change and change["phase"] == "copying" and change["repositories"]["total"] > 0)

    wait_for("member 0 in the middle of its copy", copying, timeout=30)
    victim = 2 if killed == "new owner" else 0
    kill(fleet.processes[victim])
    if killed == "old owner":
        resume(fleet.processes[2])
    # Whatever arrived at member 2 is staged out of sight: no repository there yet.
    assert fleet.stored(2) == set()
    fleet.processes[victim].start()
    if killed == "new owner":
        # The old owner's copies fail while the new owner is down, and say so, then succeed.
        wait_for(
            "the failure reported",
            lambda: (fleet.control.state(fleet.url(0))["change"] or {}).get("failures", 0) > 0,
            timeout=30,
        )
    fleet.control.run_change(urls, 1, before, after)
    fleet.members = after
    assert workload.check_everything_pulls(fleet.urls()) == []
    for index in range(3):
        owned = {r for r in repositories if fleet.owner(r) == index}
        wait_for(f"member {index} holds what it owns", partial(fleet.holds_exactly, index, owned), timeout=15)
    assert not list((Path(fleet.configs[2]["storage"]["rootDirectory"]) / ".cluster" / "staging").rglob("*"))


def test_a_member_back_with_an_old_list_takes_the_newer_one_and_its_repositories_say_retry(fleet: Fleet) -> None:
    """Member 2 joined in place, then died; the others dropped it (a failover). Restarted with the
    config it started with, it must not serve as the owner it was: it asks the others, routes by
    their newer list, and forwards. Meanwhile its repositories answer 503 with Retry-After, not 404."""
    fleet.start_cluster(2)
    fleet.resize(3)
    three = fleet.members
    repositories = names_with("away/app", 12, lambda r: fleet.owner(r) == 2, at_least=3)
    workload = Workload(fleet.urls, fleet.ca, (USER, PASSWORD), repositories)
    with workload.client() as http:
        for repo in repositories:
            assert workload.push(http, repo, "v1", make_image(repo)), workload.stats.failures
    held_by_2 = [r for r in repositories if fleet.owner(r) == 2]
    assert held_by_2, "the hash key gives member 2 nothing here: pick other names"
    kill(fleet.processes[2])
    two = three[:2]
    fleet.epoch += 1
    fleet.control.run_change([fleet.url(0), fleet.url(1)], fleet.epoch, three, two, absent=[three[2]])
    fleet.members = two
    with workload.client() as http:
        for url in fleet.urls():
            answer = http.get(f"{url}/v2/{held_by_2[0]}/manifests/v1")
            assert answer.status_code == 503 and answer.headers["Retry-After"], answer.text
            assert three[2] in answer.json()["errors"][0]["message"]
    fleet.processes[2].start()  # its config still lists the two members it started with
    # It asks the others as it starts (catch_up.py), and is ready once it has their answer.
    with httpx.Client(verify=ssl.create_default_context(cafile=str(fleet.ca))) as probe:
        wait_for("member 2 ready", lambda: probe.get(f"{fleet.url(2)}/readyz").status_code == 200, timeout=30)
    state = fleet.control.state(fleet.url(2))
    assert (state["epoch"], state["members"], state["self"]) == (fleet.epoch, two, None)
    through_2 = Workload(lambda: [fleet.url(2)], fleet.ca, (USER, PASSWORD), repositories)
    with workload.client() as http:
        image = make_image(f"{held_by_2[0]}-after")
        assert through_2.push(http, held_by_2[0], "after", image), through_2.stats.failures
        # Pushed through member 2, it is where the list says: it pulls through every member.
        for url in [*fleet.urls(), fleet.url(2)]:
            assert workload.pull(http, held_by_2[0], "after", image, url), workload.stats.failures


def test_old_copies_are_kept_for_the_time_asked_then_their_space_is_reclaimed(fleet: Fleet) -> None:
    fleet.start_cluster(2)
    repositories = names_with(
        "kept/app", 12, lambda r: fleet.owner(r) == 0 and owner_index(r, fleet.key, 3) != 0, at_least=3
    )
    workload = Workload(fleet.urls, fleet.ca, (USER, PASSWORD), repositories)
    with workload.client() as http:
        for repo in repositories:
            assert workload.push(http, repo, "v1", make_image(repo, (256 << 10,))), workload.stats.failures
    before, after = fleet.members, fleet.all_members[:3]
    leaving_0 = [r for r in repositories if fleet.owner(r) == 0 and owner_index(r, fleet.key, 3) != 0]
    assert leaving_0, "the hash key moves nothing away from member 0 here: pick other names"
    fleet.start(2, before)
    fleet.control.run_change([fleet.url(i) for i in range(3)], 1, before, after, keep=4)
    fleet.members = after
    retired = Path(fleet.configs[0]["storage"]["rootDirectory"]) / ".cluster" / "retired"

    def names_retired() -> set[str]:
        return {p.read_text() for p in retired.glob("*/*/name")}

    # Gone from member 0's repositories a moment after the switch, kept aside for 4 s, then deleted.
    wait_for("the old copies set aside", lambda: names_retired() == set(leaving_0), timeout=10)
    assert not set(leaving_0) & fleet.stored(0)
    wait_for("the old copies deleted", lambda: not names_retired(), timeout=30)
    assert workload.check_everything_pulls(fleet.urls()) == []


def test_rendezvous_routing_moves_only_what_the_new_member_wins(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path / "rendezvous", routing="rendezvous")
    try:
        fleet.start_cluster(3)
        repositories = [f"hrw/app-{i}" for i in range(40)]
        workload = Workload(fleet.urls, fleet.ca, (USER, PASSWORD), repositories)
        with workload.client() as http:
            for repo in repositories:
                assert workload.push(http, repo, "v1", make_image(repo)), workload.stats.failures
        four = fleet.all_members[:4]
        moving = [r for r in repositories if fleet.owner(r) != fleet.owner(r, four)]
        assert all(fleet.owner(r, four) == 3 for r in moving)  # only to the new member
        assert len(moving) < len(repositories) / 2  # zot's rule would move about 3/4
        workload.pause = 0.15
        workload.start(pushers=2, pullers=2)
        try:
            fleet.resize(4)
        finally:
            workload.stop()
        assert workload.stats.failures == [], "\n".join(workload.stats.failures[:10])
        assert workload.check_everything_pulls(fleet.urls()) == []
        for index in range(4):
            owned = {r for r, _ in workload.pushed if fleet.owner(r) == index}
            wait_for(f"member {index} holds what it owns", partial(fleet.holds_exactly, index, owned), timeout=15)
    finally:
        fleet.stop()
