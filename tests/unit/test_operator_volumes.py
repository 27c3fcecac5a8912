"""Volume expansion without an API server: what each claim's status means for its member, what the operator
asks, and one reconciliation end to end against the in-memory API (the StatefulSet recreated, the claims grown)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from zot_operator.crd import SIZE_SHRINK_MESSAGE, SPEC_RULES
from zot_operator.member_control import MemberApi
from zot_operator.models import ZotClusterSpec
from zot_operator.names import ClusterRef, labels
from zot_operator.reconcile import reconcile
from zot_operator.render import render
from zot_operator.secret_steps import Degraded
from zot_operator.status import as_patch
from zot_operator.volumes import check_size, expansion_refusal, plan_volumes, quantity
from zot_registry.certs import KeyPair

from tests.support.memory_kube import MemoryKube

NOW = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.UTC)
GROWS: dict[str, Any] = {"metadata": {"name": "grow"}, "allowVolumeExpansion": True}
FIXED: dict[str, Any] = {"metadata": {"name": "fixed"}}
CLASSES = {"grow": GROWS, "fixed": FIXED}


def ref(size: str = "20Gi", replicas: int = 3, **local: Any) -> ClusterRef:
    storage = {"local": {"size": size, "storageClassName": "grow", **local}}
    spec = ZotClusterSpec.model_validate({"replicas": replicas, "storage": storage})
    return ClusterRef("demo", "default", "u-1", spec)


def claim(
    ordinal: int,
    requested: str = "10Gi",
    capacity: str | None = "10Gi",
    storage_class: str = "grow",
    conditions: list[dict[str, str]] | None = None,
    **status: Any,
) -> dict[str, Any]:
    """Member `ordinal`'s claim as the StatefulSet controller makes it and the PV controller binds it."""
    body: dict[str, Any] = {
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": f"data-demo-{ordinal}", "namespace": "default", "labels": labels("demo")},
        "spec": {"storageClassName": storage_class, "resources": {"requests": {"storage": requested}}},
        "status": {"phase": "Bound" if capacity else "Pending", **status},
    }
    if capacity:
        body["status"]["capacity"] = {"storage": capacity}
    if conditions:
        body["status"]["conditions"] = conditions
    return body


def classes(name: str | None) -> str | None:
    return expansion_refusal(name, CLASSES.get(name or ""))


def statefulset(size: str, deleting: bool = False) -> dict[str, Any]:
    body = by_kind(render(ref(size), "k" * 16).objects, "StatefulSet")
    if deleting:
        body["metadata"]["deletionTimestamp"] = "2026-11-28T11:59:00Z"
    return body


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind)


def test_quantities_compare_by_bytes() -> None:
    small, two = quantity("1536Mi"), quantity("2Gi")
    assert small is not None and two is not None and small < two
    assert small == quantity("1.5Gi") and two == quantity("2147483648")
    assert quantity("20GB") is None and quantity("") is None  # no Kubernetes quantity


def test_claims_below_the_size_are_grown_and_the_template_recreated() -> None:
    plan = plan_volumes(ref(), [claim(0), claim(1), claim(2)], 3, statefulset("10Gi"), classes)
    assert plan.expand == ["data-demo-0", "data-demo-1", "data-demo-2"]
    assert [(v.member, v.state, v.requested, v.capacity) for v in plan.volumes] == [
        (i, "Expanding", "20Gi", "10Gi") for i in range(3)
    ]
    assert plan.recreate


def test_claims_at_the_size_need_nothing_and_are_not_listed() -> None:
    plan = plan_volumes(ref(), [claim(i, "20Gi", "20Gi") for i in range(3)], 3, statefulset("20Gi"), classes)
    assert plan.expand == [] and plan.volumes == [] and not plan.recreate
    # A claim grown by hand beyond the spec stays as it is: never shrunk.
    bigger = plan_volumes(ref(), [claim(0, "50Gi", "50Gi")], 3, statefulset("20Gi"), classes)
    assert bigger.expand == [] and bigger.volumes == []


def test_a_class_without_expansion_is_reported_and_never_asked() -> None:
    claims = [claim(0, storage_class="fixed"), claim(1, storage_class="gone"), claim(2, storage_class="")]
    plan = plan_volumes(ref(), claims, 3, statefulset("10Gi"), classes)
    assert plan.expand == []
    assert [(v.state, v.message) for v in plan.volumes] == [
        (
            "ExpansionNotAllowed",
            "StorageClass fixed does not allow volume expansion (allowVolumeExpansion): data-demo-0 stays at 10Gi",
        ),
        ("ExpansionNotAllowed", "StorageClass gone does not exist: data-demo-1 stays at 10Gi"),
        (
            "ExpansionNotAllowed",
            "the claim has no StorageClass, and only a claim of one that allows expansion can grow: "
            "data-demo-2 stays at 10Gi",
        ),
    ]
    assert plan.recreate  # new members still get the new size: their volumes are new


@pytest.mark.parametrize(
    ("status", "conditions", "state", "words"),
    [
        ({}, [], "Expanding", "grows the volume to 20Gi (has 10Gi)"),
        ({}, [{"type": "Resizing", "status": "True", "message": "waiting"}], "Expanding", "(has 10Gi): waiting"),
        ({}, [{"type": "FileSystemResizePending", "status": "True"}], "FileSystemResizePending", "file system"),
        ({"allocatedResourceStatuses": {"storage": "NodeResizePending"}}, [], "FileSystemResizePending", "node"),
        (
            {},
            [{"type": "ControllerResizeError", "status": "True", "message": "quota exceeded"}],
            "ExpansionFailed",
            "ControllerResizeError: quota exceeded",
        ),
        ({"allocatedResourceStatuses": {"storage": "NodeResizeInfeasible"}}, [], "ExpansionFailed", "Infeasible"),
        # A condition that is not True says nothing.
        ({}, [{"type": "FileSystemResizePending", "status": "False"}], "Expanding", "grows the volume"),
    ],
)
def test_a_resize_under_way_is_read_from_the_claims_status(
    status: dict[str, Any], conditions: list[dict[str, str]], state: str, words: str
) -> None:
    grown = claim(0, "20Gi", "10Gi", conditions=conditions, **status)
    plan = plan_volumes(ref(), [grown], 3, statefulset("20Gi"), classes)
    (volume,) = plan.volumes
    assert plan.expand == [] and volume.state == state and words in volume.message, volume.message


def test_an_unbound_claim_waits_and_claims_of_leaving_members_are_left_alone() -> None:
    claims = [claim(0, capacity=None), claim(1, "20Gi", None), claim(3), claim(4, "1Gi")]
    plan = plan_volumes(ref(replicas=3), claims, 3, statefulset("20Gi"), classes)
    assert plan.expand == []
    assert [(v.member, v.state) for v in plan.volumes] == [(0, "ClaimPending")]  # 1 will bind at 20Gi


def test_a_statefulset_already_going_is_not_deleted_again() -> None:
    assert not plan_volumes(ref(), [], 3, statefulset("10Gi", deleting=True), classes).recreate
    assert not plan_volumes(ref(), [], 3, None, classes).recreate  # none yet: it is created with the size


def test_a_smaller_size_than_the_claims_were_made_with_changes_nothing() -> None:
    with pytest.raises(Degraded) as refused:
        check_size(ref("1536Mi"), statefulset("2Gi"))
    assert refused.value.reason == "StorageShrinkRefused"
    assert refused.value.message == f"{SIZE_SHRINK_MESSAGE}: the members' claims were made with 2Gi, not 1536Mi"
    check_size(ref("2048Mi"), statefulset("2Gi"))  # the same size, spelled otherwise


def test_the_crd_refuses_a_smaller_size_with_the_quantity_library() -> None:
    (rule,) = SPEC_RULES["storage.local"]
    assert "quantity(self.size).compareTo(quantity(oldSelf.size)) >= 0" in rule["rule"]
    assert rule["message"] == SIZE_SHRINK_MESSAGE


# One reconciliation against the in-memory API ------------------------------------------------------------


def no_members(ca: KeyPair) -> MemberApi:
    raise AssertionError("a member was asked something")


def body(size: str, status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "demo", "namespace": "default", "uid": "u-1", "generation": 1},
        "spec": {"replicas": 3, "storage": {"local": {"size": size, "storageClassName": "grow"}}},
        "status": status or {},
    }


def run(kube: MemoryKube, document: dict[str, Any], events: list[tuple[str, str, str]]) -> dict[str, Any]:
    return as_patch(reconcile(kube, document, lambda *e: events.append(e), NOW, connect=no_members).status)


def claim_template(kube: MemoryKube) -> str:
    sts = kube.get("StatefulSet", "default", "demo")
    assert sts is not None
    return str(sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"])


def test_a_larger_size_grows_the_claims_and_recreates_the_statefulset() -> None:
    kube = MemoryKube()
    kube.objects[("StorageClass", "", "grow")] = GROWS
    events: list[tuple[str, str, str]] = []
    status = run(kube, body("10Gi"), events)
    for i in range(3):
        kube.objects[("PersistentVolumeClaim", "default", f"data-demo-{i}")] = claim(i)
    status = run(kube, body("10Gi", status), events)
    assert status["volumes"] == []
    at_size = next(c for c in status["conditions"] if c["type"] == "VolumesAtSize")
    assert (at_size["status"], at_size["message"]) == ("True", "every member's volume has 10Gi")

    events.clear()
    status = run(kube, body("20Gi", status), events)
    for i in range(3):
        assert kube.objects[("PersistentVolumeClaim", "default", f"data-demo-{i}")]["spec"]["resources"] == {
            "requests": {"storage": "20Gi"}
        }
    assert ("StatefulSet", "default", "demo") not in kube.objects  # deleted, its pods orphaned
    assert [e[1] for e in events] == ["ExpandingVolumes", "RecreatingStatefulSet"]
    assert [(v["member"], v["state"]) for v in status["volumes"]] == [(i, "Expanding") for i in range(3)]
    at_size = next(c for c in status["conditions"] if c["type"] == "VolumesAtSize")
    assert (at_size["status"], at_size["reason"]) == ("False", "Expanding")

    # The next pass creates it again, new members' claims made with the new size; the claims are not asked again.
    writes = kube.writes
    status = run(kube, body("20Gi", status), events)
    assert claim_template(kube) == "20Gi" and kube.writes == writes + 1
    # The driver did its work: every member has the size, said once.
    for i in range(3):
        kube.objects[("PersistentVolumeClaim", "default", f"data-demo-{i}")] = claim(i, "20Gi", "20Gi")
    events.clear()
    status = run(kube, body("20Gi", status), events)
    assert status["volumes"] == [] and [e[1] for e in events] == ["VolumesAtSize"]


def test_a_class_without_expansion_warns_once_per_member() -> None:
    kube = MemoryKube()
    kube.objects[("StorageClass", "", "fixed")] = FIXED
    events: list[tuple[str, str, str]] = []
    status = run(kube, body("10Gi"), events)
    for i in range(2):
        kube.objects[("PersistentVolumeClaim", "default", f"data-demo-{i}")] = claim(i, storage_class="fixed")
    for _ in range(3):
        status = run(kube, body("20Gi", status), events)
    assert [e for e in events if e[0] == "Warning"] == [
        (
            "Warning",
            "VolumeExpansionNotAllowed",
            f"member {i}: StorageClass fixed does not allow volume expansion (allowVolumeExpansion): "
            f"data-demo-{i} stays at 10Gi",
        )
        for i in range(2)
    ]
    assert kube.objects[("PersistentVolumeClaim", "default", "data-demo-0")]["spec"]["resources"]["requests"] == {
        "storage": "10Gi"
    }
    assert claim_template(kube) == "20Gi"  # recreated all the same: a new member's volume is new
    at_size = next(c for c in status["conditions"] if c["type"] == "VolumesAtSize")
    assert (at_size["status"], at_size["reason"]) == ("False", "ExpansionNotAllowed")


def test_a_shrink_past_the_crd_is_degraded_and_changes_nothing() -> None:
    kube = MemoryKube()
    events: list[tuple[str, str, str]] = []
    status = run(kube, body("20Gi"), events)
    before = {key: dict(value) for key, value in kube.objects.items()}
    writes = kube.writes
    status = run(kube, body("10Gi", status), events)
    assert status["phase"] == "Degraded" and kube.writes == writes and kube.objects.keys() == before.keys()
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "StorageShrinkRefused" and "made with 20Gi, not 10Gi" in degraded["message"]
    assert claim_template(kube) == "20Gi"


def test_shared_storage_reports_no_volumes() -> None:
    spec = {
        "replicas": 1,
        "storage": {"mode": "s3", "s3": {"bucket": "b"}},
        "cache": {"redis": {"url": "redis://r:6379"}},
    }
    document = {"metadata": {"name": "demo", "namespace": "default", "uid": "u-1", "generation": 1}, "spec": spec}
    status = run(MemoryKube(), document, [])
    assert "volumes" not in status and not [c for c in status["conditions"] if c["type"] == "VolumesAtSize"]
