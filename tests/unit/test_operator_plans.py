"""The operator's decisions, without an API server: who restarts, who is dropped, who comes back."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from pydantic import ValidationError
from zot_operator.models import ZotClusterSpec
from zot_operator.plans import FailoverPlan, moved_share, plan_failover, plan_restarts
from zot_operator.statefulset import MEMBERS_ANNOTATION

NOW = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.UTC)


def pod(
    ordinal: int, members: str = "a,b,c", revision: str = "r1", ready: bool = True, running: bool = True
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"demo-{ordinal}",
            "annotations": {MEMBERS_ANNOTATION: members},
            "labels": {"controller-revision-hash": revision},
        },
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"started": running, "state": {"running": {}} if running else {}}],
        },
    }


def test_membership_change_restarts_every_member_together() -> None:
    pods = [pod(0), pod(1), pod(2)]
    plan = plan_restarts(pods, "a,b,c,d", "r2", 3)
    assert plan.pods == ["demo-0", "demo-1", "demo-2"] and "membership" in plan.reason


def test_other_changes_roll_one_member_at_a_time_highest_first() -> None:
    pods = [pod(0), pod(1), pod(2)]
    assert plan_restarts(pods, "a,b,c", "r2", 3).pods == ["demo-2"]
    pods[2] = pod(2, revision="r2", ready=False)
    assert plan_restarts(pods, "a,b,c", "r2", 3).pods == []  # wait for the restarted member
    pods[2] = pod(2, revision="r2")
    assert plan_restarts(pods, "a,b,c", "r2", 3).pods == ["demo-1"]
    assert plan_restarts([pod(0, revision="r2")], "a,b,c", "r2", 1).pods == []


def test_failover_drops_after_the_delay_and_readmits() -> None:
    spec = ZotClusterSpec.model_validate({"replicas": 3, "failover": {"automatic": True, "after": "1m"}})
    pods = [pod(0), pod(1, ready=False, running=False), pod(2)]
    plan = plan_failover(spec, FailoverPlan(), pods, NOW)
    assert plan.failed == [] and plan.not_ready_since == {"1": "2026-11-28T12:00:00Z"}
    later = NOW + datetime.timedelta(seconds=61)
    plan = plan_failover(spec, FailoverPlan(not_ready_since=plan.not_ready_since), pods, later)
    assert plan.failed == [1] and plan.not_ready_since == {}
    # running again, but not for long enough
    pods[1] = pod(1, ready=False, running=True)
    plan = plan_failover(spec, FailoverPlan(failed=[1]), pods, later)
    assert plan.failed == [1] and plan.running_since == {"1": "2026-11-28T12:01:01Z"}
    plan = plan_failover(
        spec, FailoverPlan(failed=[1], running_since=plan.running_since), pods, later + datetime.timedelta(seconds=61)
    )
    assert plan.failed == []


def test_zero_after_drops_at_once_but_readmits_only_after_a_minimum() -> None:
    spec = ZotClusterSpec.model_validate({"replicas": 3, "failover": {"automatic": True, "after": "0s"}})
    plan = plan_failover(spec, FailoverPlan(), [pod(0), pod(1, ready=False, running=False), pod(2)], NOW)
    assert plan.failed == [1]
    restarted = [pod(0), pod(1, ready=False, running=True), pod(2)]
    plan = plan_failover(spec, FailoverPlan(failed=[1]), restarted, NOW)
    assert plan.failed == [1]
    running = plan.running_since
    plan = plan_failover(
        spec, FailoverPlan(failed=[1], running_since=running), restarted, NOW + datetime.timedelta(seconds=29)
    )
    assert plan.failed == [1]
    plan = plan_failover(
        spec, FailoverPlan(failed=[1], running_since=running), restarted, NOW + datetime.timedelta(seconds=30)
    )
    assert plan.failed == []


def test_failover_off_drops_nobody() -> None:
    spec = ZotClusterSpec.model_validate({"replicas": 3})
    assert plan_failover(spec, FailoverPlan(), [pod(0, ready=False)], NOW).failed == []


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
