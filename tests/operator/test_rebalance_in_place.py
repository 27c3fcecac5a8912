"""Membership changes in place, end to end: the operator against a real API server, every member pod
run as a real registry process (tests.support.pod_runner) from what the operator wrote, and clients
pushing and pulling throughout: resizes 3 -> 5 -> 2 -> 4, then a member failover drops and re-admits."""

from __future__ import annotations

import json
import subprocess
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from zot_registry.cluster.hashing import owner_index

from tests.support.control_plane import ControlPlane
from tests.support.images import make_image
from tests.support.kube_objects import member_pod_status
from tests.support.kubectl import Namespaces, get, wait_for
from tests.support.local_fleet import stored_repositories
from tests.support.pod_runner import PodRunner
from tests.support.ports import port_free_on_all
from tests.support.rebalance import Workload
from tests.support.zotclusters import apply_cluster

pytestmark = pytest.mark.usefixtures("volumes")
ADMIN = ("admin", "change-me")


def status(cp: ControlPlane, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = (get(cp, "-n", namespace, "zc", "demo") or {}).get("status") or {}
    return found


def ordinal(address: str) -> int:
    return int(address.split(".", 1)[0].rsplit("-", 1)[1])


def settled(found: dict[str, Any], ordinals: list[int]) -> bool:
    members = [ordinal(a) for a in found.get("members") or []]
    return members == ordinals and not found.get("rebalance") and found.get("phase") == "Running"


class Clients:
    """The members clients reach: those of the list the cluster routes by (a Service's endpoints)."""

    def __init__(self, runner: PodRunner, cp: ControlPlane, namespace: str) -> None:
        self.runner, self.cp, self.namespace = runner, cp, namespace
        self.ordinals = [0, 1, 2]

    def follow(self) -> dict[str, Any]:
        """The status now; the members clients reach follow it (during a change: the old list)."""
        found = status(self.cp, self.namespace)
        record = found.get("rebalance") or {}
        members = record.get("from") or found.get("members") or []
        if members:
            self.ordinals = [ordinal(a) for a in members]
        return found

    def urls(self) -> list[str]:
        return [self.runner.url(i) for i in self.ordinals]


def stores_exactly(runner: PodRunner, ordinal: int, owned: set[str]) -> bool:
    """Member `ordinal`'s volume holds the repositories `owned`, and no other."""
    return stored_repositories(Path(runner.member(ordinal).config["storage"]["rootDirectory"])) == owned


def scale(cp: ControlPlane, namespace: str, replicas: int) -> None:
    cp.kubectl("-n", namespace, "scale", "zc", "demo", f"--replicas={replicas}")


def test_resizes_and_a_failover_in_place_lose_no_push(
    control_plane: ControlPlane, operator_with_hosts: subprocess.Popen[str], namespaces: Namespaces, tmp_path: Path
) -> None:
    cp, ns = control_plane, namespaces.create("zot-in-place")
    port = port_free_on_all(8)
    apply_cluster(cp, ns, port=port, rebalance={"mode": "Auto"}, failover={"automatic": True, "after": "5s"})
    with PodRunner(cp, ns, workdir=tmp_path, port=port) as runner:
        runner.wait_running([0, 1, 2], timeout=120)
        clients = Clients(runner, cp, ns)
        wait_for("3 members running", lambda: settled(clients.follow(), [0, 1, 2]), timeout=120)
        repositories = [f"team-{i // 10}/app-{i}" for i in range(40)]
        workload = Workload(clients.urls, Path("unused"), ADMIN, repositories, context=runner.ssl_context())
        with workload.client() as http:
            for repo in repositories:
                assert workload.push(http, repo, "v1", make_image(repo, (2048, 4096))), workload.stats.failures
        # Seconds between two pushes, two pulls of one client: enough load, a final check that ends.
        workload.pause, workload.pull_pause = 0.15, 0.05
        workload.start(pushers=2, pullers=2)
        seen: list[str] = []
        try:
            for replicas in (5, 2, 4):
                scale(cp, ns, replicas)

                def done(replicas: int = replicas) -> bool:
                    found = clients.follow()
                    step = (found.get("rebalance") or {}).get("step")
                    if step and step not in seen:
                        seen.append(step)
                    return settled(found, list(range(replicas)))

                wait_for(f"{replicas} members in place", done, timeout=240)
                runner.wait_stopped(range(replicas, 8), timeout=60)
            # Failover: member 1 hangs (its process down, its pod not ready) and is dropped; its
            # repositories answer 'retry' meanwhile, every other one as before.
            runner.hold(1)
            runner.kill(1)
            hung = member_pod_status(healthy=False, restart_count=1)
            cp.kubectl(
                "-n", ns, "patch", "pod", "demo-1", "--subresource=status", "--type=merge", "-p", json.dumps(hung)
            )

            def dropped() -> bool:
                return settled(clients.follow(), [0, 2, 3])

            wait_for("member 1 dropped in place", dropped, timeout=120)
            away_answer = workload.stats.unavailable
            # Back: the process runs again, and KWOK's pod looks healthy; after `after` (30 s at least)
            # the operator re-admits it and moves its repositories home.
            runner.release(1)
            runner.wait_running([1], timeout=60)
            healthy = member_pod_status(healthy=True, restart_count=1)
            cp.kubectl(
                "-n", ns, "patch", "pod", "demo-1", "--subresource=status", "--type=merge", "-p", json.dumps(healthy)
            )

            def readmitted() -> bool:
                return settled(clients.follow(), [0, 1, 2, 3])

            wait_for("member 1 re-admitted in place", readmitted, timeout=180)
        finally:
            workload.stop()
        stats = workload.stats
        print(
            f"\n{stats.pushes} pushes acknowledged, {stats.pulls} pulls, {stats.refused_writes} writes answered "
            f"'retry' at least once (longest unwritable {stats.longest_unwritable:.2f} s), {stats.retried} "
            f"retries, {stats.unavailable} requests still 'retry' after 60 s ({away_answer} by the drop), "
            f"{stats.restarted_pushes} pushes made again after the failover; "
            f"steps seen {seen}"
        )
        assert stats.failures == [], "\n".join(stats.failures[:20])
        assert workload.check_everything_pulls(clients.urls()) == []
        assert seen[:3] == ["copy", "freeze", "switch"] or set(seen) >= {"copy", "switch"}
        events = {e["reason"] for e in (get(cp, "-n", ns, "events") or {"items": []})["items"]}
        assert {"RebalanceStarted", "RebalanceDone", "MemberDropped", "MemberReadmitted"} <= events
        # Each repository is stored by its owner under the final list and by no other member (copies
        # set aside after a move are under .cluster/ until they are reclaimed).
        key = runner.member(0).config["cluster"]["hashKey"].encode()
        members = status(cp, ns)["members"]
        for index in range(4):
            owned = {repo for repo, _ in workload.pushed if owner_index(repo, key, len(members)) == index}
            wait_for(f"member {index} stores what it owns", partial(stores_exactly, runner, index, owned), timeout=15)
        # No member restarted for a change (the runner counts each member's process starts): member 0
        # ran throughout, 1 once more after its kill, 2 and 3 once more after they left at 5 -> 2.
        assert [runner.starts(i) for i in range(5)] == [1, 2, 2, 2, 1]
