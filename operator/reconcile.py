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

from .kube import Kube
from .models import ZotClusterSpec
from .plans import FailoverPlan, iso, moved_share, plan_failover, plan_restarts, pod_ordinal, pod_ready
from .render import (
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
    since = previous["lastTransitionTime"] if previous and previous.get("status") == status else iso(now)
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
    previous = FailoverPlan([int(i) for i in old_status.get("failedMembers") or []],
                            dict(old_status.get("notReadySince") or {}), dict(old_status.get("runningSince") or {}))
    failover = plan_failover(spec, previous, pods, now)
    failed = failover.failed
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
    restarts = plan_restarts(pods, ",".join(rendered.members), update_revision, spec.replicas)
    to_delete, why = restarts.pods, restarts.reason
    for name in to_delete:
        kube.delete("Pod", ref.namespace, name)
    if to_delete:
        event("Normal", "Restarting", f"{why}: deleted {', '.join(to_delete)}")
        outcome.actions.append(f"restarted {', '.join(to_delete)}")

    ordinals = set(member_ordinals(spec, failed))
    ready = sum(1 for p in pods
                if pod_ready(p) and pod_ordinal(p) in ordinals and p["metadata"]["name"] not in to_delete)
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
        "notReadySince": failover.not_ready_since,
        "runningSince": failover.running_since,
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

