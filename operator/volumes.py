"""Volume expansion: a larger `spec.storage.local.size` grows every member's claim, where its StorageClass allows.

A member's size is in three places, and only one of them can be changed in place:

- its claim, `data-<name>-<i>`: `spec.resources.requests.storage` may grow (never shrink) once the claim is
  bound, if its StorageClass has `allowVolumeExpansion: true` (the API server's PersistentVolumeClaimResize
  admission refuses it otherwise). The operator patches it; the storage driver (a CSI external-resizer, then
  the kubelet for the file system) does the rest, and the claim's status says how far it got;
- the StatefulSet's `volumeClaimTemplates`, from which the StatefulSet controller makes the claims of new
  members (a scale-up, or a claim deleted by hand): immutable, the API server refuses any change to it;
- `status.capacity` of the claim: what the driver made, read only.

**New members get the new size from a new StatefulSet.** Once the claims are asked for the new size, the
operator deletes the StatefulSet with `propagationPolicy: Orphan` (`kubectl delete --cascade=orphan`): the
garbage collector only removes the owner references of its pods, claims and ControllerRevisions, and nothing
stops. The next pass creates the StatefulSet as rendered, its template with the new size; the StatefulSet
controller adopts the pods and revisions its selector matches. The pod template is unchanged, so its revision
(a hash of the template alone) is the same, and no member restarts (ECK does the same for Elasticsearch).
Between the two passes (one drift check, 10 s) nothing recreates a pod that goes away; the next pass does.

The other way, patching each claim after the StatefulSet controller made it at the old size, was not taken:
with a StorageClass that cannot expand, every new member would stay at the old size for good; a new member
would start on the small volume and wait for a resize on every scale-up; and the template would keep saying a
size the spec no longer says.

**Never shrink.** The CRD refuses a smaller size (a CEL rule with the quantity library). Should one get through
(a CRD from before that rule), the operator compares it with the StatefulSet's template, the size the members'
claims were made with: smaller is `Degraded` (`StorageShrinkRefused`) and nothing changes. A claim grown by hand
beyond the spec is left as it is.

**Where a claim cannot grow**, `status.volumes` lists the member, with the claim's request and capacity, and the
`VolumesAtSize` condition is False with the worst reason: `ExpansionNotAllowed` (the StorageClass does not
allow it, has none or is missing, or the API server refused the patch), `ClaimPending` (not bound: only a bound
claim can grow), `ExpansionFailed` (the driver or the node reported an error), `FileSystemResizePending`
(the volume grew, the file system grows on the member's node: with a driver that cannot do it while mounted,
once the member restarts), `Expanding` (the driver is at it). The claims of members being removed by a
scale-down are not grown, nor those retained from earlier members: they grow when a member uses them again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kubernetes.client.rest import ApiException
from kubernetes.utils import parse_quantity

from .crd import SIZE_SHRINK_MESSAGE
from .kube import Kube
from .models import VolumeState, VolumeStatus, ZotClusterStatus
from .names import ClusterRef, selector_string
from .secret_steps import Degraded, Event
from .statefulset import DATA_CLAIM

# What StorageClass a claim's size can grow on: None, it can; else why not.
Refusal = Callable[[str | None], str | None]


def quantity(text: str) -> Decimal | None:
    """A Kubernetes quantity (10Gi, 500M, 1.5Ti) in bytes; None for text that is none."""
    try:
        return Decimal(parse_quantity(text))
    except (ValueError, TypeError, ArithmeticError):
        return None


def template_size(statefulset: dict[str, Any] | None) -> str | None:
    """The size the StatefulSet makes new members' claims with."""
    for claim in ((statefulset or {}).get("spec") or {}).get("volumeClaimTemplates") or []:
        if claim.get("metadata", {}).get("name") == DATA_CLAIM:
            size = claim.get("spec", {}).get("resources", {}).get("requests", {}).get("storage")
            return str(size) if size is not None else None
    return None


def check_size(ref: ClusterRef, statefulset: dict[str, Any] | None) -> None:
    """Before anything changes: a size below the one the members' claims were made with goes no further."""
    if ref.spec.storage.mode != "local":
        return
    size = ref.spec.storage.local.size
    wanted = quantity(size)  # the model refuses a size that is no quantity
    made = template_size(statefulset)
    made_size = quantity(made) if made else None
    if wanted is not None and made_size is not None and wanted < made_size:
        raise Degraded(
            "StorageShrinkRefused", f"{SIZE_SHRINK_MESSAGE}: the members' claims were made with {made}, not {size}"
        )


def member_claims(name: str, claims: Iterable[dict[str, Any]], replicas: int) -> dict[int, dict[str, Any]]:
    """Ordinal -> claim of each member the StatefulSet keeps: `data-<name>-<i>`, i below `replicas`."""
    pattern = re.compile(rf"{re.escape(DATA_CLAIM)}-{re.escape(name)}-(\d+)")
    found = {}
    for claim in claims:
        match = pattern.fullmatch(claim["metadata"]["name"])
        if match and int(match.group(1)) < replicas and not claim["metadata"].get("deletionTimestamp"):
            found[int(match.group(1))] = claim
    return found


def expansion_refusal(class_name: str | None, storage_class: dict[str, Any] | None) -> str | None:
    """Why a claim of `class_name` (its StorageClass object, None when missing) cannot grow; None if it can."""
    if not class_name:
        return "the claim has no StorageClass, and only a claim of one that allows expansion can grow"
    if storage_class is None:
        return f"StorageClass {class_name} does not exist"
    if not storage_class.get("allowVolumeExpansion"):
        return f"StorageClass {class_name} does not allow volume expansion (allowVolumeExpansion)"
    return None


def _progress(claim: dict[str, Any], requested: str, capacity: str) -> tuple[VolumeState, str]:
    """Where the resize of a claim that asks for enough, and does not have it yet, stands (its status)."""
    status = claim.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    # Where RecoverVolumeExpansionFailure is on (by default from Kubernetes 1.32) allocatedResourceStatuses says it too.
    resize = (status.get("allocatedResourceStatuses") or {}).get("storage", "")
    for kind in ("ControllerResizeError", "NodeResizeError"):
        if kind in conditions:
            return "ExpansionFailed", f"{kind}: {conditions[kind].get('message') or 'no message'}"
    if resize in ("ControllerResizeInfeasible", "NodeResizeInfeasible"):
        return "ExpansionFailed", f"the storage driver reports {resize}"
    if "FileSystemResizePending" in conditions or resize == "NodeResizePending":
        return "FileSystemResizePending", (
            f"the volume has grown to {requested}; its file system grows on the member's node (with a driver "
            "that cannot grow it while mounted, once the member restarts)"
        )
    detail = conditions.get("Resizing", {}).get("message")
    return "Expanding", f"the storage driver grows the volume to {requested} (has {capacity or 'nothing yet'})" + (
        f": {detail}" if detail else ""
    )


@dataclass(frozen=True)
class VolumePlan:
    expand: list[str] = field(default_factory=list)  # claims to ask for the spec's size
    volumes: list[VolumeStatus] = field(default_factory=list)  # members below it, those in `expand` as Expanding
    recreate: bool = False  # the StatefulSet's template has a smaller size: recreated, orphaning its pods


def member_volume(ordinal: int, claim: dict[str, Any], size: str, refusal: Refusal) -> VolumeStatus | None:
    """Member `ordinal`'s claim against the spec's `size`: None when it has it (or is bound to get it), else
    where it stands. State Expanding with `requested` the size: the claim is to be asked for it now."""
    wanted = quantity(size) or Decimal(0)
    name = claim["metadata"]["name"]
    spec, status = claim.get("spec") or {}, claim.get("status") or {}
    requested = str((spec.get("resources") or {}).get("requests", {}).get("storage", ""))
    capacity = str((status.get("capacity") or {}).get("storage", ""))
    bound = status.get("phase") == "Bound"
    state: VolumeState
    if (quantity(requested) or Decimal(0)) < wanted:
        why = refusal(spec.get("storageClassName")) if bound else None
        if not bound:
            state, message = "ClaimPending", f"{name} is not bound yet; it grows to {size} once bound"
        elif why:
            state, message = "ExpansionNotAllowed", f"{why}: {name} stays at {capacity or requested}"
        else:
            state, message, requested = "Expanding", f"{name} asked for {size} (was {requested})", size
    elif bound and (quantity(capacity) or Decimal(0)) < wanted:
        state, message = _progress(claim, requested, capacity)
    else:
        return None
    return VolumeStatus(
        member=ordinal, claim=name, requested=requested, capacity=capacity, state=state, message=message
    )


def plan_volumes(
    ref: ClusterRef,
    claims: Iterable[dict[str, Any]],
    replicas: int,
    statefulset: dict[str, Any] | None,
    refusal: Refusal,
) -> VolumePlan:
    """Pure, but for `refusal`, asked only about the classes of bound claims that must grow."""
    size = ref.spec.storage.local.size
    wanted = quantity(size)
    if wanted is None:  # the model refuses a size that is no quantity
        return VolumePlan()
    expand: list[str] = []
    volumes: list[VolumeStatus] = []
    for ordinal, claim in sorted(member_claims(ref.name, claims, replicas).items()):
        volume = member_volume(ordinal, claim, size, refusal)
        if volume is None:
            continue
        volumes.append(volume)
        # Expanding and still asking less: to be asked now (else the driver is at it already).
        if volume.state == "Expanding" and _asks_less(claim, wanted):
            expand.append(volume.claim)
    made = template_size(statefulset)
    made_size = quantity(made) if made else None
    terminating = bool((statefulset or {}).get("metadata", {}).get("deletionTimestamp"))
    recreate = made_size is not None and made_size < wanted and not terminating
    return VolumePlan(expand, volumes, recreate)


def _asks_less(claim: dict[str, Any], wanted: Decimal) -> bool:
    requested = ((claim.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage", "")
    return (quantity(str(requested)) or Decimal(0)) < wanted


@dataclass
class VolumeOutcome:
    volumes: list[VolumeStatus] | None = None  # None: storage is not local, nothing to report
    # The StatefulSet is being recreated (deleted now, or still going): not ensured, nor read, this pass.
    recreating: bool = False
    actions: list[str] = field(default_factory=list)


def _api_message(err: ApiException) -> str:
    try:
        return str(json.loads(err.body).get("message") or err.reason)
    except (TypeError, ValueError, AttributeError):
        return str(err.reason or err.status)


def _class_refusal(kube: Kube) -> Refusal:
    """Reads each StorageClass once per pass. Without the right to read them, no answer: the patch is tried,
    and the API server's admission says whether the class allows it."""
    seen: dict[str | None, str | None] = {}

    def refusal(class_name: str | None) -> str | None:
        if class_name not in seen:
            try:
                found = kube.get("StorageClass", "", class_name) if class_name else None
            except ApiException as err:
                if err.status != 403:
                    raise
                seen[class_name] = None
            else:
                seen[class_name] = expansion_refusal(class_name, found)
        return seen[class_name]

    return refusal


def expand_volumes(
    kube: Kube,
    ref: ClusterRef,
    statefulset: dict[str, Any] | None,
    replicas: int,
    old: ZotClusterStatus,
    event: Event,
) -> VolumeOutcome:
    """Grow the members' claims to the spec's size, and recreate the StatefulSet (orphaning its pods) whose
    template makes them smaller. `replicas`: the StatefulSet's (the members it keeps)."""
    if ref.spec.storage.mode != "local":
        return VolumeOutcome()
    size = ref.spec.storage.local.size
    claims = kube.list("PersistentVolumeClaim", ref.namespace, selector_string(ref.name))
    plan = plan_volumes(ref, claims, replicas, statefulset, _class_refusal(kube))
    volumes = {v.claim: v for v in plan.volumes}
    requested = {c["metadata"]["name"]: c.get("spec", {}).get("resources", {}).get("requests", {}) for c in claims}
    grown = []
    for name in plan.expand:
        patch = {"spec": {"resources": {"requests": {"storage": size}}}}
        try:
            kube.patch("PersistentVolumeClaim", ref.namespace, name, patch)
        except ApiException as err:
            if err.status == 404:  # gone meanwhile: the StatefulSet makes a new one
                volumes.pop(name)
                continue
            if err.status not in (403, 422):
                raise
            # Refused by the API server: the admission's word on the StorageClass (403), or the claim's (422).
            state: VolumeState = "ExpansionNotAllowed" if err.status == 403 else "ExpansionFailed"
            volumes[name] = volumes[name].model_copy(
                update={
                    "state": state,
                    "requested": str(requested[name].get("storage", "")),
                    "message": f"the API server refused {size} for {name}: {_api_message(err)}",
                }
            )
            continue
        grown.append(name)
    actions = []
    if grown:
        event("Normal", "ExpandingVolumes", f"asked for {size} on {', '.join(grown)}")
        actions.append(f"asked for {size} on {', '.join(grown)}")
    _report(list(volumes.values()), old, size, event)
    terminating = bool((statefulset or {}).get("metadata", {}).get("deletionTimestamp"))
    if plan.recreate:
        kube.delete("StatefulSet", ref.namespace, ref.name, propagation="Orphan")
        message = (
            f"StatefulSet {ref.name} deleted, its pods and claims left running (orphaned), to be created again "
            f"with claims of {size} for new members (its template made {template_size(statefulset)})"
        )
        event("Normal", "RecreatingStatefulSet", message)
        actions.append(message)
    return VolumeOutcome(list(volumes.values()), plan.recreate or terminating, actions)


_WARNED: tuple[VolumeState, ...] = ("ExpansionNotAllowed", "ExpansionFailed")


def _report(volumes: list[VolumeStatus], old: ZotClusterStatus, size: str, event: Event) -> None:
    """One event per member and problem, as it appears (the last status holds what was said), and one when
    every volume has the size again."""
    said = {(v.member, v.state, v.message) for v in old.volumes}
    for volume in volumes:
        if volume.state in _WARNED and (volume.member, volume.state, volume.message) not in said:
            reason = "VolumeExpansionNotAllowed" if volume.state == "ExpansionNotAllowed" else "VolumeExpansionFailed"
            event("Warning", reason, f"member {volume.member}: {volume.message}")
    if old.volumes and not volumes:
        event("Normal", "VolumesAtSize", f"every member's volume has {size}")
