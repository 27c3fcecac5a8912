"""Membership changes made in place, pass by pass against an in-memory API and an in-memory fleet of
members: what the children say while the change runs, what the members are asked, and that no member
restarts for it."""

from __future__ import annotations

import datetime
import json
from typing import Any

from zot_operator.reconcile import reconcile
from zot_operator.statefulset import CHECKSUM_ANNOTATION, MEMBERS_ANNOTATION
from zot_operator.status import as_patch, status_changed

from tests.support.member_fleet import MemberFleet
from tests.support.memory_kube import MemoryKube

NOW = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.UTC)


def address(ordinal: int) -> str:
    return f"demo-{ordinal}.demo-members.default.svc.cluster.local:5000"


def listed(*ordinals: int) -> list[str]:
    return [address(i) for i in ordinals]


class Cluster:
    """One ZotCluster reconciled pass after pass: its spec, the status each pass wrote, the events."""

    def __init__(self, **spec: Any) -> None:
        self.kube = MemoryKube()
        self.fleet = MemberFleet()
        self.spec: dict[str, Any] = {"replicas": 3, **spec}
        self.status: dict[str, Any] = {}
        self.events: list[tuple[str, str, str]] = []
        self.now = NOW

    def run(self, **spec: Any) -> dict[str, Any]:
        self.spec.update(spec)
        body = {
            "metadata": {"name": "demo", "namespace": "default", "uid": "u-1", "generation": 1},
            "spec": self.spec,
            "status": self.status,
        }
        outcome = reconcile(self.kube, body, lambda *e: self.events.append(e), self.now, self.fleet.connect)
        patch = as_patch(outcome.status)
        self.status = {k: v for k, v in {**self.status, **patch}.items() if v is not None}
        self.now += datetime.timedelta(seconds=2)
        return self.status

    def start_members(self, ordinals: range, members: list[str], ready: bool = True) -> None:
        """Their pods, started with `members` (the ConfigMap's list then), and their member processes."""
        for ordinal in ordinals:
            self.kube.add_pod(ordinal, None, ready=ready)
            self.fleet.start(address(ordinal), members)

    def running(self) -> dict[str, Any]:
        first = self.run()
        self.start_members(range(self.spec["replicas"]), first["members"])
        return self.run()

    def config_members(self) -> list[str]:
        config = json.loads(self.kube.objects[("ConfigMap", "default", "demo-config")]["data"]["config.json"])
        members: list[str] = config["cluster"]["members"]
        return members

    def statefulset(self) -> dict[str, Any]:
        return self.kube.objects[("StatefulSet", "default", "demo")]

    def reasons(self) -> list[str]:
        """The events of membership changes."""
        return [e[1] for e in self.events if e[1].startswith("Rebalance")]

    def condition(self, kind: str) -> dict[str, Any]:
        return next(c for c in self.status["conditions"] if c["type"] == kind)

    def asked(self) -> list[tuple[str, str, str]]:
        calls, self.fleet.calls = self.fleet.calls, []
        return calls


def test_a_running_cluster_annotates_its_pods_and_then_asks_nothing_and_writes_nothing() -> None:
    zc = Cluster()
    status = zc.running()
    assert status["phase"] == "Running" and status["epoch"] == 0 and "rebalance" not in status
    assert all(
        p["metadata"]["annotations"][MEMBERS_ANNOTATION] == ",".join(listed(0, 1, 2)) for p in zc.kube.pods().values()
    )
    assert zc.condition("Rebalancing")["status"] == "False" and zc.condition("Rebalancing")["reason"] == "Idle"
    writes = zc.kube.writes
    assert zc.run() == status and zc.kube.writes == writes and zc.asked() == []


def test_a_scale_up_in_place_starts_the_new_member_first_and_switches_without_a_restart() -> None:
    zc = Cluster()
    zc.running()
    template = json.dumps(zc.statefulset()["spec"]["template"], sort_keys=True)
    pods = set(zc.kube.pods())

    # The change starts: the StatefulSet makes the new pod, the config keeps the list members route by.
    status = zc.run(replicas=4)
    record = status["rebalance"]
    assert record["epoch"] == 1 and record["step"] == "copy" and record["to"] == listed(0, 1, 2, 3)
    assert status["members"] == listed(0, 1, 2) and status["epoch"] == 0
    assert zc.config_members() == listed(0, 1, 2) and zc.statefulset()["spec"]["replicas"] == 4
    assert record["waitingFor"] == [address(3)] and zc.condition("Rebalancing")["reason"] == "WaitingForMembers"
    assert sorted(zc.asked()) == [(address(i), "change", "copy@1") for i in range(3)]
    assert zc.reasons() == ["RebalanceStarted"]
    assert zc.condition("Progressing")["reason"] == "Rebalancing" and status["phase"] == "Running"

    # The new member starts with the old list (not in it), answers, and gets the change too.
    zc.start_members(range(3, 4), listed(0, 1, 2), ready=False)
    status = zc.run()
    assert status["rebalance"]["waitingFor"] == [] and zc.asked() == [(address(3), "change", "copy@1")]
    assert zc.condition("Rebalancing")["reason"] == "Copying"
    assert status["readyMembers"] == 3 and status["phase"] == "Running"  # of the list the members route by

    zc.fleet.advance()
    status = zc.run()
    assert status["rebalance"]["step"] == "freeze" and status["rebalance"]["progress"] == "8/8 repos, 12.0 MiB/12.0 MiB"
    assert {c[2] for c in zc.asked()} == {"freeze@1"} and zc.reasons()[-1] == "RebalanceFreezing"
    zc.fleet.advance()
    assert zc.run()["rebalance"]["step"] == "switch" and {c[2] for c in zc.asked()} == {"switch@1"}
    assert zc.config_members() == listed(0, 1, 2)  # still: a member that restarts now reads the old list
    zc.fleet.advance()

    # Done: the config and the status get the new list, every pod its annotation; nobody restarted.
    status = zc.run()
    assert "rebalance" not in status and status["members"] == listed(0, 1, 2, 3) and status["epoch"] == 1
    assert zc.config_members() == listed(0, 1, 2, 3) and zc.reasons()[-1] == "RebalanceDone"
    assert "8 repositories (12.0 MiB) moved" in next(e[2] for e in zc.events if e[1] == "RebalanceDone")
    assert set(zc.kube.pods()) == pods | {3}
    members = ",".join(listed(0, 1, 2, 3))
    assert all(p["metadata"]["annotations"][MEMBERS_ANNOTATION] == members for p in zc.kube.pods().values())
    assert json.dumps(zc.statefulset()["spec"]["template"], sort_keys=True) == template
    assert zc.condition("Rebalancing")["status"] == "False"

    # and the next pass asks nothing and writes nothing
    writes = zc.kube.writes
    assert zc.run() == status and zc.kube.writes == writes and zc.asked() == []


def test_a_scale_down_in_place_drains_first_and_shrinks_the_statefulset_after_the_switch() -> None:
    zc = Cluster()
    zc.running()
    status = zc.run(replicas=2)
    assert status["rebalance"]["to"] == listed(0, 1) and zc.statefulset()["spec"]["replicas"] == 3
    for _ in range(3):
        zc.fleet.advance()
        status = zc.run()
        assert zc.statefulset()["spec"]["replicas"] == (2 if "rebalance" not in status else 3)
    assert "rebalance" not in status and status["members"] == listed(0, 1)
    assert zc.statefulset()["spec"]["replicas"] == 2 and set(zc.kube.pods()) == {0, 1, 2}  # the controller's part
    # the leaving pod is not annotated: it goes
    assert zc.kube.pods()[2]["metadata"]["annotations"][MEMBERS_ANNOTATION] == ",".join(listed(0, 1, 2))


def test_a_member_failover_drops_is_excused_and_the_others_move_on() -> None:
    zc = Cluster()
    zc.running()
    zc.kube.add_pod(1, listed(0, 1, 2), ready=False)
    zc.fleet.members[address(1)].up = False
    status = zc.run(failover={"automatic": True, "after": "0s"})
    assert status["failedMembers"] == [1] and status["rebalance"]["to"] == listed(0, 2)
    assert status["rebalance"]["waitingFor"] == []
    zc.fleet.advance()
    assert zc.run()["rebalance"]["step"] == "freeze"


def test_a_new_target_during_the_copy_retargets_and_the_old_change_is_replaced() -> None:
    zc = Cluster()
    zc.running()
    zc.run(replicas=4)
    zc.start_members(range(3, 5), listed(0, 1, 2), ready=False)
    zc.run()
    zc.asked()
    status = zc.run(replicas=5)
    assert status["rebalance"]["epoch"] == 2 and status["rebalance"]["to"] == listed(0, 1, 2, 3, 4)
    assert zc.reasons()[-1] == "RebalanceRetargeted" and zc.statefulset()["spec"]["replicas"] == 5
    assert {c[2] for c in zc.asked()} == {"copy@2"}
    assert all(m.state.change is not None and m.state.change.epoch == 2 for m in zc.fleet.members.values())


def test_copy_failures_show_in_the_condition_and_one_warning() -> None:
    zc = Cluster()
    zc.running()
    zc.run(replicas=2)
    zc.fleet.members[address(2)].error = "PUT blob to demo-0: 500"
    zc.fleet.advance()
    zc.run()
    assert zc.condition("Rebalancing")["reason"] == "CopyFailing" and "500" in zc.condition("Rebalancing")["message"]
    zc.run()
    assert [e for e in zc.events if e[1] == "RebalanceFailing"] == [("Warning", "RebalanceFailing", zc.events[-1][2])]


def test_members_without_a_control_api_in_auto_restart_as_before() -> None:
    zc = Cluster()
    zc.running()
    for member in zc.fleet.members.values():
        member.supported = False  # an older image of ours
    status = zc.run(replicas=4)
    assert status["phase"] == "Restarting" and status["members"] == listed(0, 1, 2, 3) and "rebalance" not in status
    assert zc.kube.pods() == {}  # all restarted together, with the new list
    assert zc.condition("Rebalancing")["reason"] == "NotSupported" and "RebalanceFailing" in zc.reasons()


def test_by_restart_the_condition_says_why_and_no_member_is_asked() -> None:
    zc = Cluster(image="ghcr.io/project-zot/zot-linux-amd64:v2.1.0")
    zc.running()
    status = zc.run(replicas=4)
    assert status["phase"] == "Restarting" and zc.asked() == [] and zc.fleet.cas == []
    rebalancing = zc.condition("Rebalancing")
    assert rebalancing["status"] == "False" and rebalancing["reason"] == "NotSupported"
    assert "project-zot" in rebalancing["message"] and "moves no repositories" in rebalancing["message"]
    template = zc.statefulset()["spec"]["template"]["metadata"]["annotations"]
    assert template[MEMBERS_ANNOTATION] == ",".join(listed(0, 1, 2, 3)) and CHECKSUM_ANNOTATION in template


def test_a_finished_change_is_removed_from_the_status_and_an_absent_one_is_no_change() -> None:
    assert status_changed({"epoch": 1, "rebalance": None}, {"epoch": 1, "rebalance": {"epoch": 1}})
    assert not status_changed({"epoch": 1, "rebalance": None}, {"epoch": 1})
    assert status_changed({"epoch": 2, "rebalance": None}, {"epoch": 1})


def test_new_member_addresses_restart_every_member_instead() -> None:
    zc = Cluster()
    zc.running()
    status = zc.run(port=5001)
    assert status["members"] == [a.replace(":5000", ":5001") for a in listed(0, 1, 2)]
    assert status["phase"] == "Restarting" and zc.kube.pods() == {} and zc.asked() == []
    assert zc.condition("Rebalancing")["reason"] == "AddressesChanged"


def test_no_member_rolls_while_a_change_runs() -> None:
    zc = Cluster()
    zc.running()
    zc.run(replicas=2)
    sts = zc.statefulset()
    sts["status"] = {"updateRevision": "r2", "replicas": 3}
    for pod in zc.kube.pods().values():
        pod["metadata"]["labels"]["controller-revision-hash"] = "r1"  # every member on an older template
    status = zc.run()
    assert set(zc.kube.pods()) == {0, 1, 2} and status["rebalance"]["step"] == "copy"
    for _ in range(3):
        zc.fleet.advance()
        zc.run()
    assert "rebalance" not in zc.status and set(zc.kube.pods()) == {0, 1, 2}
    zc.kube.delete("Pod", "default", "demo-2")  # the StatefulSet controller's part of the scale-down
    zc.run()  # the change is done: the rolling update goes on, highest ordinal first
    assert set(zc.kube.pods()) == {0}


def test_in_place_with_a_tls_secret_is_an_invalid_spec() -> None:
    zc = Cluster(rebalance={"mode": "InPlace"}, tls={"mode": "secret", "secretName": "my-tls"})
    status = zc.run()
    degraded = zc.condition("Degraded")
    assert status["phase"] == "Degraded" and degraded["reason"] == "InvalidSpec" and "no CA key" in degraded["message"]
