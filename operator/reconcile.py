"""One reconciliation of a ZotCluster, as a list of steps. kopf handlers call `reconcile` and nothing else.

Every step reads first and writes only what differs, so a cluster that is as it should be costs
reads and no writes. What only the operator can see (a missing Secret) marks the cluster Degraded
with a message and an event, and deletes nothing. The decisions live in `plans`, the status in `status`.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from . import member_control
from .annotations import PAUSED_ANNOTATION, RESTARTED_AT_ANNOTATION, paused, restarted_at
from .kube import Kube
from .member_control import Connect
from .models import ZotClusterSpec, ZotClusterStatus
from .names import ClusterRef, hash_key_secret_name, selector_string
from .plans import FailoverPlan, RestartPlan, plan_failover, plan_restarts, pod_ordinal, pod_ready
from .rebalance_mode import rebalance_mode
from .rebalance_steps import plan_membership
from .render import address_ordinal, member_address, member_addresses, render
from .secret_steps import (
    Degraded,
    Event,
    check_referenced_secrets,
    ensure_hash_key,
    ensure_ldap_credentials,
    ensure_tls,
    forget_ldap_credentials,
)
from .statefulset import MEMBERS_ANNOTATION
from .status import (
    Observed,
    already_reported,
    degraded_status,
    is_paused,
    observed_status,
    paused_status,
    resumed_status,
)
from .volumes import check_size, expand_volumes


@dataclass
class Outcome:
    status: ZotClusterStatus  # the handlers patch it in with `status.as_patch`
    actions: list[str] = field(default_factory=list)


def reconcile(
    kube: Kube,
    body: dict[str, Any],
    event: Event,
    now: datetime.datetime | None = None,
    connect: Connect = member_control.connect,
) -> Outcome:
    """`connect`: the cluster CA -> the members' control API (the unit tests give an in-memory fleet)."""
    now = now or datetime.datetime.now(datetime.UTC)
    meta = body["metadata"]
    generation = meta.get("generation")
    old = _previous_status(body, event)
    if paused(meta):
        return _paused(old, now, event)
    if is_paused(old):
        event("Normal", "Resumed", f"{PAUSED_ANNOTATION} is no longer true: reconciling again")
        old = resumed_status(old)
    try:
        spec = ZotClusterSpec.model_validate(body.get("spec") or {})
    except ValidationError as err:
        problem = "; ".join(f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        return _degraded(old, "InvalidSpec", problem, generation, now, event)
    ref = ClusterRef(meta["name"], meta["namespace"], meta["uid"], spec, restarted_at(meta))
    existing = kube.get("StatefulSet", ref.namespace, ref.name)
    try:
        check_size(ref, existing)  # first: a size that would shrink the volumes changes nothing at all
        hash_key = ensure_hash_key(kube, ref, event)
        referenced = check_referenced_secrets(kube, ref)
        # The one Secret the operator derives from a user's: zot's LDAP credentials file (auth.py).
        derived = ensure_ldap_credentials(kube, ref, event)
        ca = ensure_tls(kube, ref, event, now)
    except Degraded as err:
        return _degraded(old, err.reason, err.message, generation, now, event)

    pods = [
        p
        for p in kube.list("Pod", ref.namespace, selector_string(ref.name))
        if p["metadata"]["name"].rsplit("-", 1)[0] == ref.name
    ]
    in_place = rebalance_mode(spec).in_place
    # Made in place, a change keeps the members on the old list until the switch: a member not in it
    # yet cannot be ready, so failover judges only the members of the routed list.
    routed = _ordinals(ref, old.members) if in_place and old.members else None
    previous = FailoverPlan(old.failed_members, old.not_ready_since, old.running_since)
    failover = plan_failover(spec, previous, pods, now, routed)
    _report_failover(spec, old.failed_members, failover.failed, event)
    target = member_addresses(ref, failover.failed)
    excused = {member_address(ref, i) for i in failover.failed}
    membership = plan_membership(ref, ca, connect, old, target, excused, now, event)
    rendered = render(
        ref,
        hash_key,
        failover.failed,
        {**referenced.versions, **derived},
        membership.members,
        membership.replicas,
        secret_keys=referenced.keys,
    )
    volumes = expand_volumes(kube, ref, existing, membership.replicas, old, event)
    # A StatefulSet being recreated for a larger volume size is created again by the next pass, not patched.
    children = [o for o in rendered.objects if not (volumes.recreating and o["kind"] == "StatefulSet")]
    actions = _ensure_children(kube, children, event) + volumes.actions
    actions += forget_ldap_credentials(kube, ref, event)
    if membership.annotate:
        actions += _annotate_members(kube, ref, pods, membership.members, membership.replicas)

    statefulset = {} if volumes.recreating else kube.get("StatefulSet", ref.namespace, ref.name) or {}
    _report_restart_request(ref, existing, statefulset, event)
    sts_status = statefulset.get("status") or {}
    # No rolling update while a change runs in place: a restarted member would drop the step it is at.
    update_revision = (statefulset.get("status") or {}).get("updateRevision") if membership.record is None else None
    listed = ",".join(rendered.members) if membership.restart_on_change else None
    restarts = plan_restarts(pods, listed, update_revision, membership.replicas)
    actions += _restart(kube, ref, restarts, event)

    ordinals = _ordinals(ref, membership.members)
    ready = sum(
        1 for p in pods if pod_ready(p) and pod_ordinal(p) in ordinals and p["metadata"]["name"] not in restarts.pods
    )
    seen = Observed(
        generation=generation,
        members=rendered.members,
        epoch=membership.epoch,
        member_count=len(ordinals),
        ready=ready,
        # A StatefulSet its controller has not seen yet (just created, or recreated) counts no pods: the last
        # count stands until it has (the scale subresource reads it).
        replicas=sts_status.get("replicas", 0) if sts_status.get("observedGeneration") else old.replicas,
        selector=selector_string(ref.name),
        hash_key_secret=hash_key_secret_name(ref),
        report_moved=spec.storage.mode == "local" and membership.restart_on_change,
        routing=spec.routing,
        failover=failover,
        restarts=restarts,
        rebalance=membership.record,
        rebalancing=membership.condition,
        volumes=volumes.volumes,
        volume_size=spec.storage.local.size,
    )
    return Outcome(status=observed_status(seen, old, now), actions=actions)


def _ordinals(ref: ClusterRef, members: list[str]) -> set[int]:
    return {o for a in members if (o := address_ordinal(ref, a)) is not None}


def _annotate_members(
    kube: Kube, ref: ClusterRef, pods: list[dict[str, Any]], members: list[str], replicas: int
) -> list[str]:
    """In place, a pod's list changes without a restart: its members annotation says the list it routes by
    now (the template has none), so a later change of mode to Restart restarts no one for nothing."""
    joined = ",".join(members)
    annotated = []
    for pod in pods:
        meta = pod["metadata"]
        if (
            (meta.get("annotations") or {}).get(MEMBERS_ANNOTATION) == joined
            or meta.get("deletionTimestamp")
            or pod_ordinal(pod) >= replicas  # leaving with a scale-down
        ):
            continue
        try:
            kube.patch("Pod", ref.namespace, meta["name"], {"metadata": {"annotations": {MEMBERS_ANNOTATION: joined}}})
        except ApiException as err:
            if err.status != 404:  # gone meanwhile: nothing to annotate
                raise
            continue
        annotated.append(meta["name"])
    return [f"annotated {', '.join(annotated)} with the member list"] if annotated else []


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


def _paused(old: ZotClusterStatus, now: datetime.datetime, event: Event) -> Outcome:
    """Nothing read, nothing written but the status, which says so; the first paused pass sends an event."""
    message = (
        f"reconciliation paused by the annotation {PAUSED_ANNOTATION}=true: the operator changes nothing until "
        "it is removed, and the rest of the status is as last observed"
    )
    if old.rebalance:
        held = " (writes to the moving repositories wait)" if old.rebalance.step in ("freeze", "switch") else ""
        message += f"; the membership change under way is held at step {old.rebalance.step}{held}"
    if not is_paused(old):
        event("Normal", "Paused", message)
    return Outcome(status=paused_status(old, message, now))


def _report_restart_request(
    ref: ClusterRef, before: dict[str, Any] | None, after: dict[str, Any], event: Event
) -> None:
    """The pass that put a new restartedAt into the pod template says so (the roll's events follow)."""

    def template_value(statefulset: dict[str, Any] | None) -> str | None:
        template = ((statefulset or {}).get("spec") or {}).get("template") or {}
        value = (template.get("metadata", {}).get("annotations") or {}).get(RESTARTED_AT_ANNOTATION)
        return str(value) if value is not None else None

    if before and ref.restarted_at and template_value(before) != ref.restarted_at == template_value(after):
        event(
            "Normal",
            "RestartRequested",
            f"{RESTARTED_AT_ANNOTATION}={ref.restarted_at}: the members restart one at a time, highest ordinal "
            "first, each once every member is ready",
        )


def _ensure_children(kube: Kube, children: list[dict[str, Any]], event: Event) -> list[str]:
    actions = []
    for child in children:
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
