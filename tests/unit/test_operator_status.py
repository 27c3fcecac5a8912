"""The status rules alone: the phase, when a condition's time moves, what a status patch says."""

from __future__ import annotations

import datetime

import pytest
from zot_operator.models import Condition, Phase, ZotClusterStatus
from zot_operator.status import as_patch, condition, degraded_status, phase

NOW = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("old", "all_ready", "restarting", "dropped", "expected"),
    [
        (ZotClusterStatus(), True, False, False, "Running"),
        (ZotClusterStatus(), False, False, False, "Creating"),
        (ZotClusterStatus(), False, False, True, "Creating"),  # the first pass: nothing has run yet
        (ZotClusterStatus(members=["a"], phase="Creating"), False, False, False, "Creating"),
        (ZotClusterStatus(members=["a"], phase="Creating"), False, False, True, "Degraded"),
        (ZotClusterStatus(members=["a"], phase="Running"), False, True, False, "Restarting"),
        (ZotClusterStatus(members=["a"], phase="Running"), False, False, False, "Degraded"),
        # Restarted members coming back: still the planned restart, not a failure.
        (ZotClusterStatus(members=["a"], phase="Restarting"), False, False, False, "Restarting"),
        (ZotClusterStatus(members=["a"], phase="Restarting"), False, False, True, "Degraded"),
        (ZotClusterStatus(members=["a"], phase="Restarting"), True, False, False, "Running"),
        (ZotClusterStatus(members=["a"], phase="Degraded"), False, False, False, "Degraded"),
        (ZotClusterStatus(members=["a"], phase="Degraded"), True, False, False, "Running"),
    ],
)
def test_creating_until_first_ready_restarting_until_ready_again(
    old: ZotClusterStatus, all_ready: bool, restarting: bool, dropped: bool, expected: Phase
) -> None:
    assert phase(all_ready, restarting, dropped, old) == expected


def test_a_condition_keeps_its_time_until_its_status_flips() -> None:
    old = [Condition(type="Ready", status="False", last_transition_time="2026-11-28T11:00:00Z")]
    assert condition("Ready", False, "MembersNotReady", "", old, NOW).last_transition_time == "2026-11-28T11:00:00Z"
    assert condition("Ready", True, "AllMembersReady", "", old, NOW).last_transition_time == "2026-11-28T12:00:00Z"


def test_a_degraded_status_keeps_what_it_did_not_observe_and_writes_nothing_else() -> None:
    old = ZotClusterStatus.model_validate(
        {
            "members": ["a"],
            "phase": "Running",
            "readyMembers": 1,
            "conditions": [{"type": "Progressing", "status": "False"}],
        }
    )
    patch = as_patch(degraded_status(old, "HashKeyInvalid", "bad key", 2, NOW))
    assert set(patch) == {"members", "phase", "readyMembers", "conditions", "observedGeneration"}
    assert patch["phase"] == "Degraded" and patch["observedGeneration"] == 2
    assert [(c["type"], c["status"]) for c in patch["conditions"]] == [
        ("Progressing", "False"),
        ("Ready", "False"),
        ("Degraded", "True"),
    ]
    assert patch["conditions"][0] == {"type": "Progressing", "status": "False"}
