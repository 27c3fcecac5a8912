"""The planner of a membership change made in place, rule by rule: from the lists, the record and what
each member says, what it asks of whom, and what the record, the condition and the events say."""

from __future__ import annotations

import datetime
from typing import Any

from zot_operator.member_control import NotSupported, StateAnswer, Unreachable
from zot_operator.models import RebalanceStatus
from zot_operator.rebalance import ABANDON, RebalancePlan, plan_rebalance
from zot_registry.cluster.control_models import ChangeRequest, MemberState

NOW = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.UTC)
A, B, C, D, E = (f"m{i}:5000" for i in range(5))
THREE, FOUR = [A, B, C], [A, B, C, D]


def member(
    members: list[str] = THREE, epoch: int = 0, change: dict[str, Any] | None = None, address: str | None = None
) -> MemberState:
    return MemberState.model_validate(
        {
            "epoch": epoch,
            "members": members,
            "self": members.index(address) if address in members else None,
            "change": change,
        }
    )


def change(
    epoch: int = 1,
    step: str = "copy",
    phase: str = "copying",
    to: list[str] = FOUR,
    repositories: tuple[int, int] = (0, 0),
    size: tuple[int, int] = (0, 0),
    failures: int = 0,
    error: str = "",
) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "from": THREE,
        "to": to,
        "step": step,
        "phase": phase,
        "repositories": {"done": repositories[0], "total": repositories[1]},
        "bytes": {"done": size[0], "total": size[1]},
        "failures": failures,
        "error": error,
    }


def all_at(addresses: list[str], **fields: Any) -> dict[str, StateAnswer]:
    return {a: member(change=change(**fields)) for a in addresses}


def plan(
    states: dict[str, StateAnswer],
    record: RebalanceStatus | None = None,
    target: list[str] = FOUR,
    current: list[str] = THREE,
    epoch: int = 0,
    excused: set[str] | None = None,
    now: datetime.datetime = NOW,
    fall_back: bool = False,
) -> RebalancePlan:
    return plan_rebalance(current, epoch, target, record, states, excused or set(), now, 30.0, fall_back)


def steps(result: RebalancePlan) -> dict[str, str]:
    return {a: r if isinstance(r, str) else f"{r.step}@{r.epoch}" for a, r in result.requests.items()}


def reasons(result: RebalancePlan) -> list[str]:
    return [e[1] for e in result.events]


def started() -> RebalanceStatus:
    """The record of a scale-up from three to four members, just started."""
    result = plan({**{a: member() for a in THREE}, D: member()})
    assert result.record is not None
    return result.record


def test_nothing_to_do_without_a_change_and_no_member_is_asked() -> None:
    result = plan({}, target=THREE)
    assert result.record is None and result.requests == {} and result.events == []
    assert result.members == THREE and not result.condition.active and result.condition.reason == "Idle"


def test_a_new_list_starts_a_change_at_the_next_epoch_and_asks_every_member_to_copy() -> None:
    result = plan({**{a: member() for a in THREE}, D: member()}, epoch=4)
    assert result.record is not None and result.record.epoch == 5 and result.record.step == "copy"
    assert result.record.from_members == THREE and result.record.to_members == FOUR
    assert result.record.started_at == "2026-11-28T12:00:00Z"
    assert steps(result) == {a: "copy@5" for a in FOUR}
    request = result.requests[A]
    assert isinstance(request, ChangeRequest) and request.keep_old_copies_seconds == 30.0
    # until it is done the members keep routing by the old list, at the old epoch
    assert result.members == THREE and result.epoch == 4 and not result.completed
    assert reasons(result) == ["RebalanceStarted"] and result.condition.reason == "Copying"


def test_the_next_epoch_is_above_any_a_member_reports() -> None:
    other = change(epoch=6, to=[A, B])  # a change to another list, left behind on a member
    states: dict[str, StateAnswer] = {A: member(epoch=3), B: member(), C: member(change=other), D: member()}
    result = plan(states, epoch=1)
    assert result.record is not None and result.record.epoch == 7
    assert reasons(result) == ["RebalanceStarted"]


def test_a_change_the_members_already_run_is_taken_up_where_it_is() -> None:
    """A status written back from before the change started (or lost): the members say where it is."""
    under_way = change(epoch=6, step="freeze", phase="freezing")
    states: dict[str, StateAnswer] = {a: member(change=under_way) for a in FOUR}
    result = plan(states, epoch=1)
    assert result.record is not None and (result.record.epoch, result.record.step) == (6, "freeze")
    assert result.requests == {} and reasons(result) == ["RebalanceResumed"]


def test_copy_freeze_switch_done_one_step_per_pass() -> None:
    record = started()
    # copying: nobody is asked again, nothing advances, the figures are the members' sums
    copying = plan(all_at(FOUR, phase="copying", repositories=(1, 3), size=(1024, 4096)), record)
    assert copying.record is not None and copying.record.step == "copy" and copying.requests == {}
    assert copying.record.repositories.done == 4 and copying.record.repositories.total == 12
    assert copying.record.progress == "4/12 repos, 4.0 KiB/16.0 KiB"
    # every member copied: freeze
    copied = plan(all_at(FOUR, phase="copied", repositories=(3, 3), size=(4096, 4096)), copying.record)
    assert copied.record is not None and copied.record.step == "freeze"
    assert steps(copied) == {a: "freeze@1" for a in FOUR} and reasons(copied) == ["RebalanceFreezing"]
    assert copied.condition.reason == "Freezing" and copied.members == THREE
    # every member frozen: switch
    frozen = plan(all_at(FOUR, step="freeze", phase="frozen", repositories=(3, 3), size=(4096, 4096)), copied.record)
    assert frozen.record is not None and frozen.record.step == "switch"
    assert steps(frozen) == {a: "switch@1" for a in FOUR} and reasons(frozen) == ["RebalanceSwitching"]
    # half switched: still switching, only the others asked; the figures stay
    half = {**{a: member(FOUR, epoch=1) for a in (A, B)}, **all_at([C, D], step="switch", phase="frozen")}
    switching = plan(half, frozen.record)
    assert switching.record is not None and switching.requests == {} and not switching.completed
    assert switching.record.repositories.done == 12
    # all switched: done, the new list at the change's epoch
    done = plan({a: member(FOUR, epoch=1) for a in FOUR}, switching.record, now=NOW + datetime.timedelta(seconds=75))
    assert done.completed and done.record is None and done.members == FOUR and done.epoch == 1
    assert reasons(done) == ["RebalanceDone"] and "12 repositories (16.0 KiB)" in done.events[0][2]
    assert "1m15s" in done.events[0][2] and done.condition.reason == "Idle" and not done.condition.active


def test_a_member_that_does_not_answer_holds_the_change_and_the_others_get_what_they_need() -> None:
    record = started()
    states: dict[str, StateAnswer] = {
        **all_at(THREE, phase="copied"),
        D: Unreachable("connection refused"),
    }
    result = plan(states, record)
    assert result.record is not None and result.record.step == "copy" and steps(result) == {}
    assert result.record.waiting_for == [D] and result.record.waiting_since == "2026-11-28T12:00:00Z"
    assert result.condition.reason == "WaitingForMembers" and "connection refused" in result.condition.message
    assert "RebalanceFailing" not in reasons(result)  # new pods take seconds: no warning yet
    # a member that lost the change (it restarted) is asked again, at the change's step
    states[B] = member()
    assert steps(plan(states, record)) == {B: "copy@1"}


def test_a_member_silent_for_a_minute_is_one_warning() -> None:
    record = started()
    states: dict[str, StateAnswer] = {**all_at(THREE), D: Unreachable("connection refused")}
    first = plan(states, record)
    assert first.record is not None
    later = plan(states, first.record, now=NOW + datetime.timedelta(seconds=61))
    assert reasons(later) == ["RebalanceFailing"] and "m3:5000" in later.events[0][2]
    assert later.record is not None and later.record.waiting_since == first.record.waiting_since
    again = plan(states, later.record, now=NOW + datetime.timedelta(seconds=62))
    assert reasons(again) == []


def test_a_member_failover_dropped_is_not_waited_for_but_asked_if_it_answers() -> None:
    current, target = THREE, [A, B]
    states: dict[str, StateAnswer] = {A: member(), B: member(), C: Unreachable("connection refused")}
    result = plan(states, target=target, current=current, excused={C})
    assert result.record is not None and result.record.waiting_for == [] and steps(result) == {A: "copy@1", B: "copy@1"}
    copied = {a: member(change=change(phase="copied", to=target)) for a in target}
    assert (frozen := plan({**copied, C: Unreachable("down")}, result.record, target, excused={C})).record is not None
    assert frozen.record.step == "freeze"
    back = plan({**copied, C: member()}, result.record, target, excused={C})
    assert steps(back)[C] == "freeze@1"  # it answers: it may copy what it holds


def test_a_member_dropped_during_the_switch_does_not_hold_it_and_the_next_change_leaves_it_out() -> None:
    record = started()
    frozen = plan(all_at(FOUR, phase="copied"), record)
    switch = plan(all_at(FOUR, step="freeze", phase="frozen"), frozen.record)
    assert switch.record is not None and switch.record.step == "switch"
    states: dict[str, StateAnswer] = {**{a: member(FOUR, epoch=1) for a in THREE}, D: Unreachable("gone")}
    done = plan(states, switch.record, target=THREE, excused={D})
    assert done.completed and done.members == FOUR
    following = plan(states, None, target=THREE, current=FOUR, epoch=1, excused={D})
    assert following.record is not None and following.record.to_members == THREE
    assert following.record.waiting_for == []


def test_if_failover_dropped_everyone_everyone_is_waited_for() -> None:
    record = started()
    states: dict[str, StateAnswer] = {a: Unreachable("down") for a in FOUR}
    result = plan(states, record, excused=set(FOUR))
    assert result.record is not None and result.record.waiting_for == FOUR


def test_a_new_target_during_copy_retargets_with_a_newer_epoch_from_the_current_list() -> None:
    record = started()
    five = [*FOUR, E]
    states: dict[str, StateAnswer] = {**all_at(FOUR, phase="copied"), E: member()}
    result = plan(states, record, target=five)
    assert result.record is not None and result.record.epoch == 2 and result.record.step == "copy"
    assert result.record.from_members == THREE and result.record.to_members == five
    assert steps(result) == {a: "copy@2" for a in five}  # the members replace the older change
    assert reasons(result) == ["RebalanceRetargeted"] and "epoch 1 -> 2" in result.events[0][2]


def test_back_to_the_current_list_during_freeze_is_a_change_to_the_same_list() -> None:
    record = started()
    copied = plan(all_at(FOUR, phase="copied"), record)
    assert copied.record is not None and copied.record.step == "freeze"
    back = plan(all_at(FOUR, step="freeze", phase="freezing"), copied.record, target=THREE)
    assert back.record is not None and back.record.epoch == 2 and back.record.to_members == THREE
    assert steps(back) == {a: "copy@2" for a in THREE}  # D is no longer involved
    assert back.members == THREE


def test_no_retarget_once_switching_the_change_finishes_and_the_next_one_follows() -> None:
    record = started()
    frozen = plan(all_at(FOUR, phase="copied"), record)
    switch = plan(all_at(FOUR, step="freeze", phase="frozen"), frozen.record)
    assert switch.record is not None and switch.record.step == "switch"
    five = [*FOUR, E]
    still = plan({**all_at(FOUR, step="switch", phase="frozen"), E: member()}, switch.record, target=five)
    assert still.record is not None and still.record.epoch == 1 and still.record.to_members == FOUR
    assert reasons(still) == []
    done = plan({**{a: member(FOUR, epoch=1) for a in FOUR}, E: member()}, still.record, target=five)
    assert done.completed and done.members == FOUR and done.epoch == 1
    following = plan({**{a: member(FOUR, epoch=1) for a in FOUR}, E: member()}, None, five, current=FOUR, epoch=1)
    assert following.record is not None and following.record.epoch == 2 and following.record.from_members == FOUR


def test_copy_failures_surface_with_the_error_and_warn_once_per_reason() -> None:
    record = started()
    states = all_at(FOUR, phase="copying", failures=2)
    states[B] = member(change=change(failures=3, error="PUT blob: 500 from m3:5000"))
    failing = plan(states, record)
    assert failing.record is not None and failing.record.failures == 9
    assert failing.condition.reason == "CopyFailing" and "m1:5000: PUT blob: 500" in failing.condition.message
    assert reasons(failing) == ["RebalanceFailing"] and failing.events[0][0] == "Warning"
    assert reasons(plan(states, failing.record)) == []
    states[B] = member(change=change(failures=3))
    recovered = plan(states, failing.record)
    assert recovered.condition.reason == "Copying" and recovered.record is not None
    assert recovered.record.last_warning == "" and recovered.record.failures == 9


def test_a_member_ahead_of_the_change_restarts_it_above_that_epoch() -> None:
    record = started()
    states = all_at(FOUR, phase="copied")
    states[C] = member(epoch=7)
    result = plan(states, record)
    assert result.record is not None and result.record.epoch == 8 and reasons(result) == ["RebalanceRetargeted"]


def test_without_a_control_api_auto_restarts_instead_and_in_place_waits() -> None:
    states: dict[str, StateAnswer] = {
        A: member(change=change()),
        B: member(),
        C: NotSupported("HTTP 404"),
        D: Unreachable("connection refused"),
    }
    instead = plan(states, fall_back=True)
    assert instead.restart and instead.record is None and instead.members == FOUR
    assert instead.requests == {A: ABANDON} and instead.condition.reason == "NotSupported"
    waits = plan(states, fall_back=False)
    assert not waits.restart and waits.record is not None and waits.record.waiting_for == [C, D]
    assert waits.condition.reason == "MembersNotSupported" and reasons(waits) == [
        "RebalanceResumed",  # member A runs it already
        "RebalanceFailing",
    ]
