"""One reconciliation of a ZotCluster, as a list of steps. kopf handlers call `reconcile` and nothing else.

Every step reads first and writes only what differs, so a cluster that is as it should be costs
reads and no writes. What only the operator can see (a missing Secret) marks the cluster Degraded
with a message and an event, and deletes nothing.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from zot_registry.durations import parse_duration

from .kube import Kube
from .models import FailoverSpec, ZotClusterSpec
from .render import (
    MEMBERS_ANNOTATION,
    ClusterRef,
    hash_key_secret_name,
    member_ordinals,
    render,
    selector_string,
)
from .secret_steps import Degraded, Event, check_referenced_secrets, ensure_hash_key, ensure_tls


@dataclass
class Outcome:
    status: dict[str, Any]
    actions: list[str] = field(default_factory=list)


def _iso(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(moment: str) -> datetime.datetime:
    return datetime.datetime.strptime(moment, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


def _ordinal(pod: dict[str, Any]) -> int:
    return int(pod["metadata"]["name"].rsplit("-", 1)[1])


def _ready(pod: dict[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _running(pod: dict[str, Any]) -> bool:
    """The container runs and passed its startup probe. A dropped member is never ready (it is in no
    member list), so re-admission looks at this instead of readiness."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return bool(statuses) and all("running" in (s.get("state") or {}) and (s.get("started") or s.get("ready"))
                                  for s in statuses)


MIN_READMIT_AFTER = datetime.timedelta(seconds=30)


def plan_failover(spec: ZotClusterSpec, status: dict[str, Any], pods: list[dict[str, Any]],
                  now: datetime.datetime) -> tuple[list[int], dict[str, str], dict[str, str]]:
    """Members to drop: in the list and not ready for `after`; re-admitted once running for `after`."""
    failover: FailoverSpec = spec.failover
    failed = {int(i) for i in status.get("failedMembers") or [] if int(i) < spec.replicas}
    if not failover.automatic:
        return [], {}, {}
    after = datetime.timedelta(seconds=parse_duration(failover.after))
    # Re-admitting restarts every member: with a very short `after` (allowed with shared storage, where a
    # drop moves no data) a member that starts but never gets ready would flap in and out every check.
    readmit_after = max(after, MIN_READMIT_AFTER)
    by_ordinal = {_ordinal(p): p for p in pods}
    not_ready_since: dict[str, str] = {}
    running_since: dict[str, str] = {}
    previous_nr = status.get("notReadySince") or {}
    previous_rs = status.get("runningSince") or {}
    for ordinal in member_ordinals(spec, failed):
        pod = by_ordinal.get(ordinal)
        if pod is not None and _ready(pod):
            continue
        since = previous_nr.get(str(ordinal), _iso(now))
        if now - _parse(since) >= after:
            failed.add(ordinal)
        else:
            not_ready_since[str(ordinal)] = since
    for ordinal in sorted(failed):
        pod = by_ordinal.get(ordinal)
        if pod is None or not _running(pod):
            continue
        since = previous_rs.get(str(ordinal), _iso(now))
        if now - _parse(since) >= readmit_after:
            failed.discard(ordinal)
        else:
            running_since[str(ordinal)] = since
    return sorted(failed), not_ready_since, running_since


def plan_restarts(pods: list[dict[str, Any]], members: str, update_revision: str | None,
                  replicas: int) -> tuple[list[str], str]:
    """Pods to delete now and why. A new member list restarts every member together; any other
    change rolls one member at a time, highest ordinal first, only while all are ready."""
    stale = [p for p in pods if (p["metadata"].get("annotations") or {}).get(MEMBERS_ANNOTATION) != members
             and not p["metadata"].get("deletionTimestamp")]
    if stale:
        return [p["metadata"]["name"] for p in stale], "membership changed: restarting all members together"
    if not update_revision:
        return [], ""
    outdated = [p for p in pods if (p["metadata"].get("labels") or {}).get("controller-revision-hash")
                != update_revision]
    if outdated and len(pods) == replicas and all(_ready(p) for p in pods):
        newest_first = max(outdated, key=_ordinal)
        return [newest_first["metadata"]["name"]], "rolling update: one member at a time"
    return [], ""


# Phases a cluster reaches once it has been Running. The status keeps no other memory of that, so a
# Secret problem or a membership restart before the first Running counts too: Degraded, never wrongly Running.
_SEEN_READY = ("Running", "Restarting", "Degraded")


def _phase(all_ready: bool, restarting: bool, dropped: bool, old_status: dict[str, Any]) -> str:
    """Creating only while the cluster has never been fully ready; after that, a member not ready is Degraded."""
    if all_ready:
        return "Running"
    if restarting:
        return "Restarting"
    if not old_status.get("members"):  # the first pass: no member has run yet
        return "Creating"
    return "Degraded" if dropped or old_status.get("phase") in _SEEN_READY else "Creating"


def _condition(kind: str, ok: bool, reason: str, message: str, old: list[dict[str, Any]],
               now: datetime.datetime) -> dict[str, Any]:
    status = "True" if ok else "False"
    previous = next((c for c in old if c.get("type") == kind), None)
    since = previous["lastTransitionTime"] if previous and previous.get("status") == status else _iso(now)
    return {"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": since}


def reconcile(kube: Kube, body: dict[str, Any], event: Event, now: datetime.datetime | None = None) -> Outcome:
    now = now or datetime.datetime.now(datetime.UTC)
    meta = body["metadata"]
    old_status: dict[str, Any] = dict(body.get("status") or {})
    old_conditions = old_status.get("conditions") or []
    try:
        spec = ZotClusterSpec.model_validate(body.get("spec") or {})
    except ValidationError as err:
        problem = "; ".join(f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        return _degraded(old_status, "InvalidSpec", problem, old_conditions, now, event, meta)
    ref = ClusterRef(meta["name"], meta["namespace"], meta["uid"], spec)
    outcome = Outcome(status={})
    try:
        hash_key = ensure_hash_key(kube, ref, event)
        secret_versions = check_referenced_secrets(kube, ref)
        ensure_tls(kube, ref, event, now)
    except Degraded as err:
        return _degraded(old_status, err.reason, err.message, old_conditions, now, event, meta)

    pods = [p for p in kube.list("Pod", ref.namespace, selector_string(ref.name))
            if p["metadata"]["name"].rsplit("-", 1)[0] == ref.name]
    failed, not_ready_since, running_since = plan_failover(spec, old_status, pods, now)
    old_failed = old_status.get("failedMembers") or []
    for ordinal in sorted(set(failed) - set(old_failed)):
        event("Warning", "MemberDropped", f"member {ordinal} not ready for {spec.failover.after}: "
                                          "dropped from the member list")
    for ordinal in sorted(set(old_failed) - set(failed)):
        event("Normal", "MemberReadmitted", f"member {ordinal} healthy for {spec.failover.after}: re-admitted")

    rendered = render(ref, hash_key, failed, secret_versions)
    for child in rendered.objects:
        action = kube.ensure(child)
        if action:
            outcome.actions.append(f"{action} {child['kind']} {child['metadata']['name']}")
            event("Normal", action.capitalize(), f"{action} {child['kind']} {child['metadata']['name']}")

    statefulset = kube.get("StatefulSet", ref.namespace, ref.name) or {}
    update_revision = (statefulset.get("status") or {}).get("updateRevision")
    to_delete, why = plan_restarts(pods, ",".join(rendered.members), update_revision, spec.replicas)
    for name in to_delete:
        kube.delete("Pod", ref.namespace, name)
    if to_delete:
        event("Normal", "Restarting", f"{why}: deleted {', '.join(to_delete)}")
        outcome.actions.append(f"restarted {', '.join(to_delete)}")

    ordinals = set(member_ordinals(spec, failed))
    ready = sum(1 for p in pods if _ready(p) and _ordinal(p) in ordinals and p["metadata"]["name"] not in to_delete)
    all_ready = ready == len(ordinals) and not to_delete
    progressing = bool(to_delete) or not all_ready
    phase = _phase(all_ready, bool(to_delete), bool(failed), old_status)
    status: dict[str, Any] = {
        "observedGeneration": meta.get("generation"),
        "members": rendered.members,
        "replicas": (statefulset.get("status") or {}).get("replicas", 0),
        "readyMembers": ready,
        "phase": phase,
        "selector": selector_string(ref.name),
        "hashKeySecret": hash_key_secret_name(ref),
        "failedMembers": failed,
        "notReadySince": not_ready_since,
        "runningSince": running_since,
        "conditions": [
            _condition("Ready", all_ready, "AllMembersReady" if all_ready else "MembersNotReady",
                       f"{ready} of {len(ordinals)} members ready", old_conditions, now),
            _condition("Progressing", progressing, "Restarting" if to_delete else
                       ("Converging" if progressing else "Stable"), why or ("waiting for members" if progressing
                                                                            else "nothing to do"),
                       old_conditions, now),
            _condition("Degraded", bool(failed), "MembersDropped" if failed else "AsExpected",
                       f"members {failed} dropped by failover" if failed else "", old_conditions, now),
        ],
    }
    if old_status.get("members") and old_status["members"] != rendered.members and spec.storage.mode == "local":
        status["movedRepositories"] = moved_share(old_status["members"], rendered.members)
    elif "movedRepositories" in old_status:
        status["movedRepositories"] = old_status["movedRepositories"]
    if "movedRepositories" in status:
        # Repositories whose owner changed stay on the old owner's volume: say so where users look.
        status["conditions"].append(_condition(
            "RepositoriesMoved", True, "MembershipChanged",
            f"{status['movedRepositories']}; with storage local to each member they stay on their old "
            "member's volume until copied", old_conditions, now))
    outcome.status = status
    return outcome


def moved_share(before: list[str], after: list[str]) -> str:
    """Owner = hash % len(members): over one period of lcm(len) hash values, count the values whose
    member address is the same under both lists (an excluded member in the middle shifts the rest)."""
    from math import lcm

    period = lcm(len(before), len(after))
    kept = sum(1 for h in range(period) if before[h % len(before)] == after[h % len(after)])
    moved = round((1 - kept / period) * 100)
    return f"about {moved}% of repositories moved owner ({len(before)} -> {len(after)} members)"


def _degraded(old_status: dict[str, Any], reason: str, message: str, old_conditions: list[dict[str, Any]],
              now: datetime.datetime, event: Event, meta: dict[str, Any]) -> Outcome:
    if not any(c.get("type") == "Degraded" and c.get("reason") == reason and c.get("message") == message
               for c in old_conditions):
        event("Warning", reason, message)
    status = {**old_status, "phase": "Degraded", "observedGeneration": meta.get("generation")}
    kept = [c for c in old_conditions if c.get("type") not in ("Degraded", "Ready")]
    status["conditions"] = [*kept, _condition("Ready", False, reason, message, old_conditions, now),
                            _condition("Degraded", True, reason, message, old_conditions, now)]
    return Outcome(status=status)

