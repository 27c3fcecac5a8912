"""The planner of a membership change made in place, with no I/O. From the list the members route by
(status.members at status.epoch), the list the spec asks for, the change under way (status.rebalance)
and what each member says (its MemberState, or why there is none): what to ask of each member now,
and the change's next record, condition and events.

A change goes through three steps (zot_registry.cluster.control_models), each asked of every member of
both lists, each idempotent, and each reached only when every member has finished the one before:

  copy    each member copies the repositories it holds and does not own under the new list to their
          new owner; next when every member reports copied;
  freeze  writes to those repositories wait while the rest is copied and the new owners publish;
          next when every member reports frozen;
  switch  each member routes by the new list; done when every member does, at the change's epoch.

Members failover dropped are excused: what they hold cannot be copied, so they are not waited for
(they are still asked, should they answer); one dropped during the switch is still in the new list,
which the next change leaves it out of. Any other member not answering holds the change where it
is: nothing advances without it. Until the switch, a new target replaces the change with a newer epoch
(the members drop the old one when they see it); from the switch on the change is finished first, and
the next one follows. At most one step per pass: each step is seen in the status and in an event.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from zot_registry.cluster.control_models import ChangeRequest, ChangeState, MemberState, Step

from .member_control import NotSupported, StateAnswer, Unreachable
from .models import RebalanceProgress, RebalanceStatus
from .plans import iso, parse_time
from .rebalance_mode import RESTARTS

STEPS: tuple[Step, ...] = ("copy", "freeze", "switch")
PHASES = ("copying", "copied", "freezing", "frozen")
# New pods take seconds to answer; a member silent for longer than this is worth a warning event.
WARN_AFTER = datetime.timedelta(seconds=60)

# Reasons of the Rebalancing condition.
IDLE = "Idle"
NOT_SUPPORTED = "NotSupported"  # not in place: restarts instead
STEP_REASONS: dict[Step, str] = {"copy": "Copying", "freeze": "Freezing", "switch": "Switching"}
STEP_MESSAGES: dict[Step, str] = {
    "copy": "copying the repositories that change owner",
    "freeze": "writes to the moving repositories wait while the rest is copied",
    "switch": "the members switch to the new list",
}
WAITING = "WaitingForMembers"
COPY_FAILING = "CopyFailing"
MEMBERS_NOT_SUPPORTED = "MembersNotSupported"
FAILING = (WAITING, COPY_FAILING, MEMBERS_NOT_SUPPORTED)

ABANDON: Literal["abandon"] = "abandon"
Request = ChangeRequest | Literal["abandon"]
EventTuple = tuple[str, str, str]  # (Normal/Warning, reason, message)


@dataclass(frozen=True)
class RebalanceCondition:
    active: bool
    reason: str
    message: str


@dataclass(frozen=True)
class RebalancePlan:
    members: list[str]  # the list the members route by after this pass (status.members)
    epoch: int  # its epoch (status.epoch)
    record: RebalanceStatus | None  # the change under way (status.rebalance)
    condition: RebalanceCondition
    requests: dict[str, Request] = field(default_factory=dict)  # member address -> what to ask it now
    events: list[EventTuple] = field(default_factory=list)
    completed: bool = False  # the change is done: render the new list, annotate the pods
    restart: bool = False  # no control API on a member: restart them all with the new list instead


def idle(epoch: int) -> RebalanceCondition:
    return RebalanceCondition(False, IDLE, f"no membership change under way; the members route by epoch {epoch}")


def plan_rebalance(
    current: list[str],
    epoch: int,
    target: list[str],
    record: RebalanceStatus | None,
    states: Mapping[str, StateAnswer],
    excused: set[str],
    now: datetime.datetime,
    keep_old_copies_seconds: float = 0.0,
    fall_back: bool = False,
) -> RebalancePlan:
    """`current` and `epoch`: the list the members route by; `states`: the answer of every member of
    current, target and the record's lists; `excused`: the addresses failover dropped; `fall_back`
    (mode Auto): restart all members instead when one has no control API."""
    if record is None and target == current:
        return RebalancePlan(current, epoch, None, idle(epoch))
    lists = [current, target, *((record.from_members, record.to_members) if record else ())]
    unsupported = [a for a in _union(*lists) if a not in excused and isinstance(states.get(a), NotSupported)]
    if unsupported and fall_back:
        return _restart_instead(target, epoch, states, unsupported)

    events: list[EventTuple] = []
    newest = max([epoch, record.epoch if record else 0, *_epochs(states.values())])
    under_way = _under_way(states.values(), current, target) if record is None else None
    if under_way is not None:
        # The members already run this very change (the status was written back from before it, or
        # lost): take it up where it is rather than start it again.
        record = _with(
            _fresh(under_way.epoch, current, target, now), step=_furthest_step(states.values(), under_way.epoch)
        )
        events.append(("Normal", "RebalanceResumed", f"epoch {record.epoch}: {_sizes(record)}; at {record.step}"))
    elif record is None:
        record = _fresh(newest + 1, current, target, now)
        events.append(("Normal", "RebalanceStarted", f"epoch {record.epoch}: {_sizes(record)}; copying"))
    elif record.step != "switch" and (record.to_members != target or _ahead(states.values(), record.epoch)):
        why = "the member list changed again" if record.to_members != target else "a member is at a newer epoch"
        old = record
        record = _fresh(newest + 1, current, target, now)
        message = f"epoch {old.epoch} -> {record.epoch}: {why} during {old.step}; {_sizes(record)}; copying again"
        events.append(("Normal", "RebalanceRetargeted", message))
    step = _advance(record, states, excused, now, keep_old_copies_seconds)
    if step.record is None:  # done: the members route by the new list, at the change's epoch
        return RebalancePlan(
            record.to_members,
            record.epoch,
            None,
            idle(record.epoch),
            step.requests,
            events + step.events,
            completed=True,
        )
    return RebalancePlan(current, epoch, step.record, step.condition, step.requests, events + step.events)


@dataclass(frozen=True)
class _Step:
    record: RebalanceStatus | None  # None: the change is done
    condition: RebalanceCondition
    requests: dict[str, Request]
    events: list[EventTuple]


def _advance(
    record: RebalanceStatus,
    states: Mapping[str, StateAnswer],
    excused: set[str],
    now: datetime.datetime,
    keep_old_copies_seconds: float,
) -> _Step:
    """The change's next step if every member it waits for has finished this one, what to ask of whom,
    and the record that says so."""
    epoch = record.epoch
    involved = _union(record.from_members, record.to_members)
    answers: dict[str, StateAnswer] = {a: states.get(a) or Unreachable("not asked") for a in involved}
    # A member dropped during the switch is in the new list and excused too: the others finish the
    # switch, and the next change drops it. If failover dropped everyone, all are waited for.
    required = [a for a in involved if a not in excused] or list(record.to_members)
    missing: dict[str, Unreachable | NotSupported] = {
        a: s for a in required if isinstance(s := answers[a], Unreachable | NotSupported)
    }
    reached = [s for a in required if isinstance(s := answers[a], MemberState)]
    finished = not missing and _finished(record.step, reached, epoch)
    step: Step = STEPS[STEPS.index(record.step) + 1] if finished and record.step != "switch" else record.step
    request = ChangeRequest.model_validate(
        {
            "epoch": epoch,
            "from": record.from_members,
            "to": record.to_members,
            "step": step,
            "keepOldCopiesSeconds": keep_old_copies_seconds,
            "absent": sorted(excused),
        }
    )
    # Asked only of members not there yet (an excused member too, should it answer).
    requests: dict[str, Request] = {
        a: request for a, s in answers.items() if isinstance(s, MemberState) and not _asked(s, epoch, step)
    }
    if finished and record.step == "switch":
        return _Step(None, idle(epoch), requests, [_done_event(record, now)])

    changes = [(a, c) for a, s in answers.items() if isinstance(s, MemberState) and (c := _change_of(s, epoch))]
    figures = _figures(record, [c for _, c in changes])
    events: list[EventTuple] = [_step_event(step, epoch, figures.progress)] if step != record.step else []
    reason, message = _reason(step, missing, changes, figures)
    waiting_since = (record.waiting_since or iso(now)) if missing else ""
    warn = (
        reason in FAILING
        and reason != record.last_warning
        and (reason != WAITING or now - parse_time(waiting_since) >= WARN_AFTER)
    )
    if warn:
        events.append(("Warning", "RebalanceFailing", f"epoch {epoch}, step {step}: {message}"))
    updated = _with(
        record,
        step=step,
        repositories=figures.repositories,
        bytes=figures.bytes,
        failures=figures.failures,
        progress=figures.progress,
        reason=reason,
        message=message,
        waiting_for=list(missing),
        waiting_since=waiting_since,
        last_warning=reason if warn else (record.last_warning if reason in FAILING else ""),
    )
    return _Step(updated, RebalanceCondition(True, reason, message), requests, events)


@dataclass(frozen=True)
class _Figures:
    repositories: RebalanceProgress
    bytes: RebalanceProgress
    failures: int

    @property
    def progress(self) -> str:
        repos, moved = self.repositories, self.bytes
        return f"{repos.done}/{repos.total} repos, {_size(moved.done)}/{_size(moved.total)}"


def _figures(record: RebalanceStatus, changes: list[ChangeState]) -> _Figures:
    """Summed over the members; kept as they were once the switch is asked (a switched member reports no
    change any more) and while no member reports this change yet."""
    if not changes or record.step == "switch":
        return _Figures(record.repositories, record.bytes, record.failures)
    return _Figures(
        RebalanceProgress(
            done=sum(c.repositories.done for c in changes), total=sum(c.repositories.total for c in changes)
        ),
        RebalanceProgress(done=sum(c.bytes.done for c in changes), total=sum(c.bytes.total for c in changes)),
        sum(c.failures for c in changes),
    )


def _reason(
    step: Step,
    missing: dict[str, Unreachable | NotSupported],
    changes: list[tuple[str, ChangeState]],
    figures: _Figures,
) -> tuple[str, str]:
    """The Rebalancing condition's reason and message: what holds the change, else how far it got."""
    unsupported = [a for a, s in missing.items() if isinstance(s, NotSupported)]
    if unsupported:
        return MEMBERS_NOT_SUPPORTED, (
            f"{', '.join(unsupported)} serve no control API: the change waits (spec.rebalance.mode Restart "
            "restarts all members with the new list instead, copying nothing)"
        )
    if missing:
        return WAITING, "waiting for " + "; ".join(f"{a} ({s.reason})" for a, s in missing.items())
    errors = [f"{a}: {c.error}" for a, c in changes if c.error]
    if errors:
        return COPY_FAILING, f"{'; '.join(errors)} ({figures.failures} failed copies so far; the members retry)"
    return STEP_REASONS[step], f"{STEP_MESSAGES[step]}: {figures.progress}"


def _done_event(record: RebalanceStatus, now: datetime.datetime) -> EventTuple:
    took = _duration(now - parse_time(record.started_at))
    retried = f"; {record.failures} failed copies were retried" if record.failures else ""
    return (
        "Normal",
        "RebalanceDone",
        f"epoch {record.epoch}: {_sizes(record)}; {record.repositories.done} repositories "
        f"({_size(record.bytes.done)}) moved to their new owners in {took}{retried}",
    )


def _step_event(step: Step, epoch: int, progress: str) -> EventTuple:
    if step == "freeze":
        return (
            "Normal",
            "RebalanceFreezing",
            f"epoch {epoch}: {progress} copied; writes to the moving repositories wait while the rest is copied",
        )
    return ("Normal", "RebalanceSwitching", f"epoch {epoch}: every copy is published; the members switch lists")


def _restart_instead(
    target: list[str], epoch: int, states: Mapping[str, StateAnswer], unsupported: list[str]
) -> RebalancePlan:
    """Mode Auto, and a member without the control API (an older image of ours): do what such members
    can do, restart them all with the new list, after dropping any change the others were asked for."""
    requests: dict[str, Request] = {
        a: ABANDON for a, s in states.items() if isinstance(s, MemberState) and s.change is not None
    }
    message = f"{', '.join(unsupported)} serve no control API: {RESTARTS}"
    return RebalancePlan(
        target,
        epoch,
        None,
        RebalanceCondition(False, NOT_SUPPORTED, message),
        requests,
        [("Warning", "RebalanceFailing", f"{message}; restarting all members with the new list")],
        restart=True,
    )


# Member states ------------------------------------------------------------------------------------


def _change_of(state: MemberState, epoch: int) -> ChangeState | None:
    return state.change if state.change is not None and state.change.epoch == epoch else None


def _switched(state: MemberState, epoch: int) -> bool:
    """Routes by the change's list: at its epoch (or a later one), with no change of that epoch left."""
    return state.epoch >= epoch and (state.change is None or state.change.epoch > epoch)


def _finished(step: Step, states: list[MemberState], epoch: int) -> bool:
    """Every member it waits for has finished `step` (a switched member has finished them all)."""
    wanted = {"copy": "copied", "freeze": "frozen"}
    for state in states:
        if _switched(state, epoch):
            continue
        change = _change_of(state, epoch)
        if step == "switch" or change is None or PHASES.index(change.phase) < PHASES.index(wanted[step]):
            return False
    return True


def _asked(state: MemberState, epoch: int, step: Step) -> bool:
    """The member knows this change at `step` or beyond (the furthest step asked of it)."""
    if _switched(state, epoch):
        return True
    change = _change_of(state, epoch)
    return change is not None and STEPS.index(change.step) >= STEPS.index(step)


def _epochs(states: Iterable[StateAnswer]) -> list[int]:
    found: list[int] = []
    for state in states:
        if isinstance(state, MemberState):
            found.append(state.epoch)
            if state.change is not None:
                found.append(state.change.epoch)
    return found


def _under_way(states: Iterable[StateAnswer], current: list[str], target: list[str]) -> ChangeState | None:
    """The newest change some member runs from `current` to `target`, if it is the newest epoch seen."""
    found = [
        s.change
        for s in states
        if isinstance(s, MemberState)
        and s.change is not None
        and (s.change.from_members, s.change.to_members) == (current, target)
    ]
    if not found:
        return None
    newest = max(found, key=lambda c: c.epoch)
    return newest if newest.epoch >= max(_epochs(states), default=0) else None


def _furthest_step(states: Iterable[StateAnswer], epoch: int) -> Step:
    asked = [s.change.step for s in states if isinstance(s, MemberState) and s.change and s.change.epoch == epoch]
    return max(asked, key=STEPS.index, default="copy")


def _ahead(states: Iterable[StateAnswer], epoch: int) -> bool:
    """A member at a newer epoch than the change's: someone else moved it on (a status written back from
    before, a second operator); the change starts again above it."""
    return any(e > epoch for e in _epochs(states))


# Records and words -------------------------------------------------------------------------------


def _union(*lists: list[str]) -> list[str]:
    """Every address once, in the order first seen."""
    return list(dict.fromkeys(a for members in lists for a in members))


def _fresh(epoch: int, current: list[str], target: list[str], now: datetime.datetime) -> RebalanceStatus:
    """A new change at its first step; `_advance` fills in the rest."""
    return _with(
        None, epoch=epoch, from_members=list(current), to_members=list(target), step="copy", started_at=iso(now)
    )


def _with(record: RebalanceStatus | None, **changes: object) -> RebalanceStatus:
    """A record with every field set explicitly: the status patch (exclude_unset) then writes them all."""
    fields = {name: getattr(record, name) for name in RebalanceStatus.model_fields} if record else {}
    return RebalanceStatus.model_validate({**fields, **changes})


def _sizes(record: RebalanceStatus) -> str:
    return f"{len(record.from_members)} -> {len(record.to_members)} members"


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    value = float(count)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} TiB"


def _duration(elapsed: datetime.timedelta) -> str:
    seconds = max(0, int(elapsed.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
