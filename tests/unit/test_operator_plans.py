"""The operator's decisions, without an API server: who restarts, who is dropped, who comes back."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from pydantic import ValidationError
from zot_operator.models import ZotClusterSpec
from zot_operator.reconcile import moved_share, plan_failover, plan_restarts
from zot_operator.render import MEMBERS_ANNOTATION

NOW = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.UTC)


def pod(ordinal: int, members: str = "a,b,c", revision: str = "r1", ready: bool = True,
        running: bool = True) -> dict[str, Any]:
    return {"metadata": {"name": f"demo-{ordinal}", "annotations": {MEMBERS_ANNOTATION: members},
                         "labels": {"controller-revision-hash": revision}},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                       "containerStatuses": [{"started": running, "state": {"running": {}} if running else {}}]}}


def test_membership_change_restarts_every_member_together() -> None:
    pods = [pod(0), pod(1), pod(2)]
    names, why = plan_restarts(pods, "a,b,c,d", "r2", 3)
    assert names == ["demo-0", "demo-1", "demo-2"] and "membership" in why


def test_other_changes_roll_one_member_at_a_time_highest_first() -> None:
    pods = [pod(0), pod(1), pod(2)]
    assert plan_restarts(pods, "a,b,c", "r2", 3)[0] == ["demo-2"]
    pods[2] = pod(2, revision="r2", ready=False)
    assert plan_restarts(pods, "a,b,c", "r2", 3)[0] == []  # wait for the restarted member
    pods[2] = pod(2, revision="r2")
    assert plan_restarts(pods, "a,b,c", "r2", 3)[0] == ["demo-1"]
    assert plan_restarts([pod(0, revision="r2")], "a,b,c", "r2", 1)[0] == []


def test_failover_drops_after_the_delay_and_readmits() -> None:
    spec = ZotClusterSpec.model_validate({"replicas": 3, "failover": {"automatic": True, "after": "1m"}})
    pods = [pod(0), pod(1, ready=False, running=False), pod(2)]
    failed, not_ready, _ = plan_failover(spec, {}, pods, NOW)
    assert failed == [] and not_ready == {"1": "2026-11-28T12:00:00Z"}
    later = NOW + datetime.timedelta(seconds=61)
    failed, not_ready, _ = plan_failover(spec, {"notReadySince": not_ready}, pods, later)
    assert failed == [1] and not_ready == {}
    # running again, but not for long enough
    pods[1] = pod(1, ready=False, running=True)
    failed, _, running = plan_failover(spec, {"failedMembers": [1]}, pods, later)
    assert failed == [1] and running == {"1": "2026-11-28T12:01:01Z"}
    failed, _, _ = plan_failover(spec, {"failedMembers": [1], "runningSince": running},
                                 pods, later + datetime.timedelta(seconds=61))
    assert failed == []


def test_zero_after_drops_at_once_but_readmits_only_after_a_minimum() -> None:
    spec = ZotClusterSpec.model_validate({"replicas": 3, "failover": {"automatic": True, "after": "0s"}})
    failed, _, _ = plan_failover(spec, {}, [pod(0), pod(1, ready=False, running=False), pod(2)], NOW)
    assert failed == [1]
    restarted = [pod(0), pod(1, ready=False, running=True), pod(2)]
    failed, _, running = plan_failover(spec, {"failedMembers": [1]}, restarted, NOW)
    assert failed == [1]
    failed, _, _ = plan_failover(spec, {"failedMembers": [1], "runningSince": running}, restarted,
                                 NOW + datetime.timedelta(seconds=29))
    assert failed == [1]
    failed, _, _ = plan_failover(spec, {"failedMembers": [1], "runningSince": running}, restarted,
                                 NOW + datetime.timedelta(seconds=30))
    assert failed == []


def test_failover_off_drops_nobody() -> None:
    spec = ZotClusterSpec.model_validate({"replicas": 3})
    assert plan_failover(spec, {}, [pod(0, ready=False)], NOW)[0] == []


def testmoved_share() -> None:
    assert moved_share(["a", "b", "c"], ["a", "b", "c", "d", "e"]).startswith("about 80%")
    assert moved_share(["a", "b"], ["a", "b", "c", "d"]).startswith("about 50%")


@pytest.mark.parametrize("after", ["90s", "1h30m", "1.5h", "0s"])
def test_failover_after_takes_what_zot_takes(after: str) -> None:
    spec = ZotClusterSpec.model_validate({"failover": {"automatic": True, "after": after}})
    assert spec.failover.after == after


@pytest.mark.parametrize("after", ["", "5", "-5m", "5 minutes", "1d"])
def test_failover_after_refuses_what_is_not_a_go_duration(after: str) -> None:
    with pytest.raises(ValidationError, match=r"duration|negative"):
        ZotClusterSpec.model_validate({"failover": {"automatic": True, "after": after}})
