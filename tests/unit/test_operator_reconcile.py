"""One reconciliation end to end against an in-memory API: what the status says as members come and go."""

from __future__ import annotations

import datetime
from typing import Any

from zot_operator.kube import Kube
from zot_operator.member_control import MemberApi
from zot_operator.reconcile import reconcile
from zot_operator.secret_steps import Event
from zot_operator.status import as_patch
from zot_registry.certs import KeyPair

from tests.support.memory_kube import MemoryKube

NOW = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.UTC)


def cluster(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "demo", "namespace": "default", "uid": "u-1", "generation": 1},
        "spec": {"replicas": 3, **spec},
        "status": status or {},
    }


def quiet(kind: str, reason: str, message: str) -> None:
    pass


def no_members(ca: KeyPair) -> MemberApi:
    """These passes make no membership change in place: asking a member anything is a mistake."""
    raise AssertionError("a member was asked something")


def run(kube: Kube, body: dict[str, Any], event: Event = quiet) -> dict[str, Any]:
    """One pass; the status as the handlers patch it in."""
    return as_patch(reconcile(kube, body, event, NOW, connect=no_members).status)


def test_a_new_cluster_is_creating_until_every_member_is_ready() -> None:
    kube = MemoryKube()
    first = run(kube, cluster())
    assert first["phase"] == "Creating" and first["readyMembers"] == 0
    for ordinal in range(3):
        kube.add_pod(ordinal, first["members"], ready=ordinal != 1)
    second = run(kube, cluster(first))
    assert second["phase"] == "Creating" and second["readyMembers"] == 2
    kube.add_pod(1, first["members"], ready=True)
    assert run(kube, cluster(second))["phase"] == "Running"


def running(kube: MemoryKube) -> dict[str, Any]:
    """A new cluster whose three members all got ready: its status."""
    members = run(kube, cluster())["members"]
    for ordinal in range(3):
        kube.add_pod(ordinal, members, ready=True)
    return run(kube, cluster())


def test_a_running_cluster_with_a_member_not_ready_and_failover_off_is_degraded() -> None:
    kube = MemoryKube()
    status = running(kube)
    members = status["members"]
    assert status["phase"] == "Running"
    kube.add_pod(1, members, ready=False)
    status = run(kube, cluster(status))
    assert status["phase"] == "Degraded" and status["readyMembers"] == 2 and status["failedMembers"] == []
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["message"] == "2 of 3 members ready"
    # and it stays Degraded (not Creating) on the next check, until the member is back
    assert run(kube, cluster(status))["phase"] == "Degraded"
    kube.add_pod(1, members, ready=True)
    assert run(kube, cluster(status))["phase"] == "Running"


def test_an_unchanged_cluster_costs_no_writes() -> None:
    kube = MemoryKube()
    status = running(kube)
    writes = kube.writes
    assert run(kube, cluster(status)) == status
    assert kube.writes == writes


def test_a_missing_secret_degrades_with_a_message_and_one_event() -> None:
    kube = MemoryKube()
    events: list[tuple[str, str, str]] = []
    body = cluster(auth={"htpasswd": {"secretName": "demo-htpasswd"}})
    status = run(kube, body, lambda *e: events.append(e))
    assert status["phase"] == "Degraded" and "members" not in status
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "HtpasswdSecretMissing" and "demo-htpasswd" in degraded["message"]
    again = run(kube, cluster(status, auth={"htpasswd": {"secretName": "demo-htpasswd"}}), lambda *e: events.append(e))
    assert again == status
    assert [e[1] for e in events if e[0] == "Warning"] == ["HtpasswdSecretMissing"]


RESTART = {"mode": "Restart"}


def test_a_resize_by_restart_is_restarting_until_every_member_is_ready_again() -> None:
    kube = MemoryKube()
    status = running(kube)
    resized = run(kube, cluster(status, replicas=4, rebalance=RESTART))
    assert resized["phase"] == "Restarting" and len(resized["members"]) == 4
    assert not [k for k in kube.objects if k[0] == "Pod"]  # every member restarted together
    for ordinal in range(4):
        kube.add_pod(ordinal, resized["members"], ready=ordinal < 2)
    coming_back = run(kube, cluster(resized, replicas=4, rebalance=RESTART))
    assert coming_back["phase"] == "Restarting" and coming_back["readyMembers"] == 2
    for ordinal in range(4):
        kube.add_pod(ordinal, resized["members"], ready=True)
    assert run(kube, cluster(coming_back, replicas=4, rebalance=RESTART))["phase"] == "Running"


def test_a_status_that_does_not_fit_the_model_is_rewritten_with_a_warning() -> None:
    kube = MemoryKube()
    status = running(kube)
    events: list[tuple[str, str, str]] = []
    broken = {**status, "readyMembers": "three"}
    again = run(kube, cluster(broken), lambda *e: events.append(e))
    assert again["phase"] == "Running" and again["readyMembers"] == 3
    assert [e[1] for e in events if e[0] == "Warning"] == ["StatusUnreadable"]
