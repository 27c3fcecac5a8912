"""The ZotCluster's status, built as the `ZotClusterStatus` model the CRD's status schema is generated
from, so that what the operator writes and what the schema allows cannot drift apart. Pure: the phase,
the conditions, the status after a full pass and after a step that could not go on.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from .kube import is_subset
from .models import Condition, Phase, RebalanceStatus, VolumeState, VolumeStatus, ZotClusterStatus
from .plans import FailoverPlan, RestartPlan, iso, moved_share
from .rebalance import RebalanceCondition

# Phases a cluster reaches once it has been Running. The status keeps no other memory of that, so a
# Secret problem or a membership restart before the first Running counts too: the rule errs towards
# Degraded, which is never wrong while a member is not ready.
# Paused counts as one too: a pause can come at any time, and the first pass after it errs the same way.
_SEEN_READY: tuple[Phase, ...] = ("Running", "Restarting", "Degraded", "Paused")
PAUSED = "Paused"
VOLUMES_AT_SIZE = "VolumesAtSize"
# The reason of VolumesAtSize when members are below the size: the first of these that one of them is in.
_VOLUME_REASONS: tuple[VolumeState, ...] = (
    "ExpansionFailed",
    "ExpansionNotAllowed",
    "ClaimPending",
    "FileSystemResizePending",
    "Expanding",
)


@dataclass(frozen=True)
class Observed:
    """What one full pass saw and did, the inputs of the status besides the previous one."""

    generation: int | None
    members: list[str]  # the member list rendered this pass: the one the members route by
    epoch: int  # its epoch
    member_count: int  # members in that list (ordinals), the "of N" in the Ready condition
    ready: int  # of those, ready and not being restarted by this pass
    replicas: int  # pods of the StatefulSet, for the scale subresource
    selector: str
    hash_key_secret: str
    # A membership change leaves the repositories that change owner on their old member's volume
    # (storage local to each member, and changes made by restart): say how many.
    report_moved: bool
    failover: FailoverPlan
    restarts: RestartPlan
    rebalance: RebalanceStatus | None  # the change made in place under way
    rebalancing: RebalanceCondition
    routing: str = "Zot"  # spec.routing, for the share of repositories a change moves
    volumes: list[VolumeStatus] | None = None  # members below storage.local.size; None: storage is not local
    volume_size: str = ""  # storage.local.size


def condition(
    kind: str, ok: bool, reason: str, message: str, old: list[Condition], now: datetime.datetime
) -> Condition:
    """lastTransitionTime moves only when the condition's status flips."""
    status = "True" if ok else "False"
    previous = next((c for c in old if c.type == kind), None)
    since = previous.last_transition_time if previous and previous.status == status else iso(now)
    return Condition(type=kind, status=status, reason=reason, message=message, last_transition_time=since)


def phase(all_ready: bool, restarting: bool, dropped: bool, old: ZotClusterStatus) -> Phase:
    """Creating only while the cluster has never been fully ready; after that, a member not ready is Degraded,
    except while a restart the operator made (a membership change, a rolling update) is under way: it stays
    Restarting until every member is ready again, unless failover drops a member meanwhile."""
    if all_ready:
        return "Running"
    if restarting or (old.phase == "Restarting" and not dropped):
        return "Restarting"
    if not old.members:  # the first pass: no member has run yet
        return "Creating"
    return "Degraded" if dropped or old.phase in _SEEN_READY else "Creating"


def observed_status(seen: Observed, old: ZotClusterStatus, now: datetime.datetime) -> ZotClusterStatus:
    failed = seen.failover.failed
    restarting = bool(seen.restarts.pods)
    all_ready = seen.ready == seen.member_count and not restarting
    rolling = restarting or bool(seen.restarts.waiting)
    rebalancing = seen.rebalancing
    progressing = restarting or not all_ready or rebalancing.active
    if restarting:
        progress_reason, progress_message = "Restarting", seen.restarts.reason
    elif rebalancing.active:
        progress_reason, progress_message = "Rebalancing", rebalancing.message
    elif progressing:
        progress_reason, progress_message = "Converging", seen.restarts.reason or "waiting for members"
    else:
        progress_reason, progress_message = "Stable", seen.restarts.reason or "nothing to do"
    conditions = [
        condition(
            "Ready",
            all_ready,
            "AllMembersReady" if all_ready else "MembersNotReady",
            f"{seen.ready} of {seen.member_count} members ready",
            old.conditions,
            now,
        ),
        condition("Progressing", progressing, progress_reason, progress_message, old.conditions, now),
        condition(
            "Degraded",
            bool(failed),
            "MembersDropped" if failed else "AsExpected",
            f"members {failed} dropped by failover" if failed else "",
            old.conditions,
            now,
        ),
        condition("Rebalancing", rebalancing.active, rebalancing.reason, rebalancing.message, old.conditions, now),
    ]
    if seen.volumes is not None:
        conditions.append(volumes_condition(seen.volumes, seen.volume_size, old.conditions, now))
    moved = old.moved_repositories
    if old.members and old.members != seen.members and seen.report_moved:
        moved = moved_share(old.members, seen.members, seen.routing)
    extra: dict[str, Any] = {}
    if seen.volumes is not None:
        extra["volumes"] = seen.volumes  # also when empty: the patch replaces the list of the last pass
    if moved is not None:
        extra["moved_repositories"] = moved
        # Repositories whose owner changed stay on the old owner's volume: say so where users look.
        conditions.append(
            condition(
                "RepositoriesMoved",
                True,
                "MembershipChanged",
                f"{moved}; with storage local to each member they stay on their old member's volume until copied",
                old.conditions,
                now,
            )
        )
    return ZotClusterStatus(
        observed_generation=seen.generation,
        members=seen.members,
        epoch=seen.epoch,
        replicas=seen.replicas,
        ready_members=seen.ready,
        phase=phase(all_ready, rolling, bool(failed), old),
        selector=seen.selector,
        hash_key_secret=seen.hash_key_secret,
        failed_members=failed,
        not_ready_since=seen.failover.not_ready_since,
        running_since=seen.failover.running_since,
        rebalance=seen.rebalance,  # set also when None: the patch then removes a finished change
        conditions=conditions,
        **extra,
    )


def volumes_condition(
    volumes: list[VolumeStatus], size: str, old: list[Condition], now: datetime.datetime
) -> Condition:
    if not volumes:
        return condition(VOLUMES_AT_SIZE, True, "AtSize", f"every member's volume has {size}", old, now)
    reason = next(r for r in _VOLUME_REASONS if any(v.state == r for v in volumes))
    message = "; ".join(f"member {v.member}: {v.message}" for v in volumes)
    return condition(VOLUMES_AT_SIZE, False, reason, message, old, now)


def is_paused(status: ZotClusterStatus) -> bool:
    return any(c.type == PAUSED and c.status == "True" for c in status.conditions)


def paused_status(old: ZotClusterStatus, message: str, now: datetime.datetime) -> ZotClusterStatus:
    """Paused by annotation: the status as last observed (observedGeneration too: the spec is not acted on),
    but for the phase and the Paused condition."""
    kept = [c for c in old.conditions if c.type != PAUSED]
    paused = condition(PAUSED, True, "PausedByAnnotation", message, old.conditions, now)
    return old.model_copy(update={"phase": "Paused", "conditions": [*kept, paused]})


def resumed_status(old: ZotClusterStatus) -> ZotClusterStatus:
    """The status to go on from once the pause is over: without the Paused condition, which no pass keeps."""
    return old.model_copy(update={"conditions": [c for c in old.conditions if c.type != PAUSED]})


def already_reported(old: ZotClusterStatus, reason: str, message: str) -> bool:
    """The same problem as on the last pass: its event was sent then."""
    return any(c.type == "Degraded" and c.reason == reason and c.message == message for c in old.conditions)


def degraded_status(
    old: ZotClusterStatus, reason: str, message: str, generation: int | None, now: datetime.datetime
) -> ZotClusterStatus:
    """A step could not go on: the rest of the status stays as last observed, Ready and Degraded say why."""
    kept = [c for c in old.conditions if c.type not in ("Degraded", "Ready")]
    return old.model_copy(
        update={
            "phase": "Degraded",
            "observed_generation": generation,
            "conditions": [
                *kept,
                condition("Ready", False, reason, message, old.conditions, now),
                condition("Degraded", True, reason, message, old.conditions, now),
            ],
        }
    )


def as_patch(status: ZotClusterStatus) -> dict[str, Any]:
    """The status as the CRD spells it. Only the fields set: a degraded pass keeps what it did not observe
    as it was, and a field never written (movedRepositories) is not written as null. A field set to None
    (rebalance, once a change is done) is null in the patch, which removes it."""
    return status.model_dump(by_alias=True, exclude_unset=True)


def removing_left_out_keys(patch: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """`patch`, with a null for each key of a map in `current` that the same map in `patch` leaves out.

    The status is written as a JSON merge patch, which merges maps: a key left out stays. Without the
    nulls a member's notReadySince clock outlived its return to health, and the next time it was not
    ready for a moment, failover dropped it at once (its clock was older than `after`)."""
    merged = dict(patch)
    for key, value in patch.items():
        old = current.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            merged[key] = {**{k: None for k in old if k not in value}, **removing_left_out_keys(value, old)}
    return merged


def status_changed(patch: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether writing `patch` would change `current`: a null is a removal, no change where the field is absent."""
    present = {k: v for k, v in patch.items() if v is not None}
    return not (is_subset(present, current) and is_subset(current, present))
