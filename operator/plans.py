"""The operator's decisions from what the member pods show, with no API call: whom failover drops or
re-admits, which pods to restart now, and how many repositories a membership change moves.

Each planner returns a small frozen result; the reconciliation writes what it says.
"""

from __future__ import annotations

import datetime
from collections.abc import Collection
from dataclasses import dataclass, field
from math import lcm
from typing import Any

from zot_registry.cluster.hashing import rendezvous_index
from zot_registry.durations import parse_duration

from .models import ZotClusterSpec
from .render import member_ordinals
from .statefulset import MEMBERS_ANNOTATION

# Re-admitting is a membership change (a restart of every member, or a copy in place): with a very
# short `after` (allowed with shared storage, where a drop moves no data) a member that starts but
# never stays ready would flap in and out at every check.
MIN_READMIT_AFTER = datetime.timedelta(seconds=30)


def iso(moment: datetime.datetime) -> str:
    """The status's time format (RFC 3339, UTC, whole seconds)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(moment: str) -> datetime.datetime:
    return datetime.datetime.strptime(moment, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


def pod_ordinal(pod: dict[str, Any]) -> int:
    return int(pod["metadata"]["name"].rsplit("-", 1)[1])


def pod_ready(pod: dict[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pod_running(pod: dict[str, Any]) -> bool:
    """The container runs and passed its startup probe. A dropped member is never ready (it is in no
    member list), so re-admission looks at this instead of readiness."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return bool(statuses) and all(
        "running" in (s.get("state") or {}) and (s.get("started") or s.get("ready")) for s in statuses
    )


@dataclass(frozen=True)
class FailoverPlan:
    """The members failover has dropped and the clocks it keeps (status failedMembers, notReadySince,
    runningSince): one pass's plan is what the next pass starts from."""

    failed: list[int] = field(default_factory=list)
    not_ready_since: dict[str, str] = field(default_factory=dict)  # member ordinal -> first seen not ready
    running_since: dict[str, str] = field(default_factory=dict)  # dropped ordinal -> its container runs since


@dataclass(frozen=True)
class RestartPlan:
    """The pods to delete now, and why (for the event and the Progressing condition); `waiting`, the
    pods of a rolling update still to restart once every member is ready again."""

    pods: list[str] = field(default_factory=list)
    reason: str = ""
    waiting: list[str] = field(default_factory=list)


def _held_for(
    ordinals: list[int], since: dict[str, str], wait: datetime.timedelta, now: datetime.datetime
) -> tuple[list[int], dict[str, str]]:
    """Of the ordinals in some state now, those in it for `wait` (by the clocks in `since`), and the clocks
    of the others, started now for those just seen in it. Ordinals no longer in the state lose their clock."""
    done: list[int] = []
    waiting: dict[str, str] = {}
    for ordinal in ordinals:
        started = since.get(str(ordinal), iso(now))
        if now - parse_time(started) >= wait:
            done.append(ordinal)
        else:
            waiting[str(ordinal)] = started
    return done, waiting


def plan_failover(
    spec: ZotClusterSpec,
    previous: FailoverPlan,
    pods: list[dict[str, Any]],
    now: datetime.datetime,
    routed: Collection[int] | None = None,
) -> FailoverPlan:
    """Members to drop: in the list and not ready for `after`; re-admitted once running for `after`.
    `routed`: while a membership change is made in place, the ordinals of the list the members route by;
    a member not in it yet (a new one, or one re-admitted) cannot be ready, so it is not judged until then."""
    failover = spec.failover
    failed = {i for i in previous.failed if i < spec.replicas}
    if not failover.automatic:
        return FailoverPlan()
    after = datetime.timedelta(seconds=parse_duration(failover.after))
    readmit_after = max(after, MIN_READMIT_AFTER)
    by_ordinal = {pod_ordinal(p): p for p in pods}
    judged = [i for i in member_ordinals(spec, failed) if routed is None or i in routed]
    not_ready = [i for i in judged if i not in by_ordinal or not pod_ready(by_ordinal[i])]
    dropped, not_ready_since = _held_for(not_ready, previous.not_ready_since, after, now)
    failed.update(dropped)
    running = [i for i in sorted(failed) if i in by_ordinal and pod_running(by_ordinal[i])]
    back, running_since = _held_for(running, previous.running_since, readmit_after, now)
    failed.difference_update(back)
    return FailoverPlan(sorted(failed), not_ready_since, running_since)


def plan_restarts(
    pods: list[dict[str, Any]], members: str | None, update_revision: str | None, replicas: int
) -> RestartPlan:
    """A new member list restarts every member together; any other change rolls one member at a time,
    highest ordinal first, only while all are ready. `members` None: a new list restarts no member (it
    is made in place, through the members' control API)."""
    stale = [
        p
        for p in pods
        if members is not None
        and (p["metadata"].get("annotations") or {}).get(MEMBERS_ANNOTATION) != members
        and not p["metadata"].get("deletionTimestamp")
    ]
    if stale:
        return RestartPlan(
            [p["metadata"]["name"] for p in stale], "membership changed: restarting all members together"
        )
    if not update_revision:
        return RestartPlan()
    outdated = [
        p for p in pods if (p["metadata"].get("labels") or {}).get("controller-revision-hash") != update_revision
    ]
    if outdated and len(pods) == replicas and all(pod_ready(p) for p in pods):
        newest_first = max(outdated, key=pod_ordinal)
        return RestartPlan([newest_first["metadata"]["name"]], "rolling update: one member at a time")
    return RestartPlan(waiting=[p["metadata"]["name"] for p in outdated])


def moved_share(before: list[str], after: list[str], routing: str = "Zot") -> str:
    """Zot's rule, owner = hash % len(members): over one period of lcm(len) hash values, count the values
    whose member address is the same under both lists (an excluded member in the middle shifts the rest).
    Rendezvous has no period: the share of a fixed sample of names whose owner changes."""
    if routing == "Rendezvous":
        names = [f"sample/repository-{i}" for i in range(RENDEZVOUS_SAMPLE)]
        key = b"moved-share-key!"
        kept = sum(
            1 for n in names if before[rendezvous_index(n, key, before)] == after[rendezvous_index(n, key, after)]
        )
        moved = round((1 - kept / len(names)) * 100)
    else:
        period = lcm(len(before), len(after))
        kept = sum(1 for h in range(period) if before[h % len(before)] == after[h % len(after)])
        moved = round((1 - kept / period) * 100)
    return f"about {moved}% of repositories moved owner ({len(before)} -> {len(after)} members)"


RENDEZVOUS_SAMPLE = 2000
