"""One reconciliation of a ZotCluster, as a list of steps. kopf handlers call `reconcile` and nothing else.

Every step reads first and writes only what differs, so a cluster that is as it should be costs
reads and no writes. What only the operator can see (a missing Secret) marks the cluster Degraded
with a message and an event, and deletes nothing. The decisions live in `plans`, the status in `status`.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .kube import Kube
from .models import ZotClusterSpec, ZotClusterStatus
from .names import ClusterRef, hash_key_secret_name, selector_string
from .plans import FailoverPlan, RestartPlan, plan_failover, plan_restarts, pod_ordinal, pod_ready
from .render import Rendered, member_ordinals, render
from .secret_steps import Degraded, Event, check_referenced_secrets, ensure_hash_key, ensure_tls
from .status import Observed, already_reported, degraded_status, observed_status


@dataclass
class Outcome:
    status: ZotClusterStatus  # the handlers patch it in with `status.as_patch`
    actions: list[str] = field(default_factory=list)


def reconcile(kube: Kube, body: dict[str, Any], event: Event, now: datetime.datetime | None = None) -> Outcome:
    now = now or datetime.datetime.now(datetime.UTC)
    meta = body["metadata"]
    generation = meta.get("generation")
    old = _previous_status(body, event)
    try:
        spec = ZotClusterSpec.model_validate(body.get("spec") or {})
    except ValidationError as err:
        problem = "; ".join(f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        return _degraded(old, "InvalidSpec", problem, generation, now, event)
    ref = ClusterRef(meta["name"], meta["namespace"], meta["uid"], spec)
    try:
        hash_key = ensure_hash_key(kube, ref, event)
        secret_versions = check_referenced_secrets(kube, ref)
        ensure_tls(kube, ref, event, now)
    except Degraded as err:
        return _degraded(old, err.reason, err.message, generation, now, event)

    pods = [
        p
        for p in kube.list("Pod", ref.namespace, selector_string(ref.name))
        if p["metadata"]["name"].rsplit("-", 1)[0] == ref.name
    ]
    failover = plan_failover(spec, FailoverPlan(old.failed_members, old.not_ready_since, old.running_since), pods, now)
    _report_failover(spec, old.failed_members, failover.failed, event)
    rendered = render(ref, hash_key, failover.failed, secret_versions)
    actions = _ensure_children(kube, rendered, event)

    statefulset = kube.get("StatefulSet", ref.namespace, ref.name) or {}
    update_revision = (statefulset.get("status") or {}).get("updateRevision")
    restarts = plan_restarts(pods, ",".join(rendered.members), update_revision, spec.replicas)
    actions += _restart(kube, ref, restarts, event)

    ordinals = set(member_ordinals(spec, failover.failed))
    ready = sum(
        1 for p in pods if pod_ready(p) and pod_ordinal(p) in ordinals and p["metadata"]["name"] not in restarts.pods
    )
    seen = Observed(
        generation=generation,
        members=rendered.members,
        member_count=len(ordinals),
        ready=ready,
        replicas=(statefulset.get("status") or {}).get("replicas", 0),
        selector=selector_string(ref.name),
        hash_key_secret=hash_key_secret_name(ref),
        local_storage=spec.storage.mode == "local",
        failover=failover,
        restarts=restarts,
    )
    return Outcome(status=observed_status(seen, old, now), actions=actions)


def _previous_status(body: dict[str, Any], event: Event) -> ZotClusterStatus:
    """The status as last written. The API server keeps only what the schema (generated from the model)
    allows, but a status written by hand through the status subresource may still not fit it (a wrong
    format inside a string): then this pass starts from nothing, says so, and writes a whole new status."""
    try:
        return ZotClusterStatus.model_validate(body.get("status") or {})
    except ValidationError as err:
        event(
            "Warning",
            "StatusUnreadable",
            f"the previous status was not readable and is rewritten: {err.errors()[0]['msg']}",
        )
        return ZotClusterStatus()


def _report_failover(spec: ZotClusterSpec, before: list[int], after: list[int], event: Event) -> None:
    for ordinal in sorted(set(after) - set(before)):
        event(
            "Warning",
            "MemberDropped",
            f"member {ordinal} not ready for {spec.failover.after}: dropped from the member list",
        )
    for ordinal in sorted(set(before) - set(after)):
        event("Normal", "MemberReadmitted", f"member {ordinal} healthy for {spec.failover.after}: re-admitted")


def _ensure_children(kube: Kube, rendered: Rendered, event: Event) -> list[str]:
    actions = []
    for child in rendered.objects:
        action = kube.ensure(child)
        if action:
            actions.append(f"{action} {child['kind']} {child['metadata']['name']}")
            event("Normal", action.capitalize(), f"{action} {child['kind']} {child['metadata']['name']}")
    return actions


def _restart(kube: Kube, ref: ClusterRef, restarts: RestartPlan, event: Event) -> list[str]:
    for name in restarts.pods:
        kube.delete("Pod", ref.namespace, name)
    if not restarts.pods:
        return []
    event("Normal", "Restarting", f"{restarts.reason}: deleted {', '.join(restarts.pods)}")
    return [f"restarted {', '.join(restarts.pods)}"]


def _degraded(
    old: ZotClusterStatus, reason: str, message: str, generation: int | None, now: datetime.datetime, event: Event
) -> Outcome:
    if not already_reported(old, reason, message):
        event("Warning", reason, message)
    return Outcome(status=degraded_status(old, reason, message, generation, now))
