"""Volume expansion against a real API server: the operator asks each member's claim for a larger
`storage.local.size` where the StorageClass allows it, reports per member where it does not, recreates the
StatefulSet (its pods orphaned, none restarted) so that new members are made with the new size, and the CRD
refuses a smaller size.

No CSI driver runs here: the kube-controller-manager's expand controller sees each request and waits for one
(`ExternalExpanding`). What a driver then writes (the volume's capacity, `FileSystemResizePending`, the claim's
capacity) is played by tests.support.storage_driver, to show the operator following a resize to its end; that a
real driver grows a real file system is not shown here.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from zot_operator.crd import SIZE_SHRINK_MESSAGE

from tests.support.control_plane import ControlPlane
from tests.support.kubectl import Namespaces, get, merge_patch, wait_for
from tests.support.storage_driver import grow_file_system, grow_volume, storage
from tests.support.zotclusters import apply_cluster, example_cluster, wait_for_phase, write_document


def local(size: str, storage_class: str, when_deleted: str = "Retain") -> dict[str, Any]:
    return {"mode": "local", "local": {"size": size, "storageClassName": storage_class, "whenDeleted": when_deleted}}


def owner_uids(obj: dict[str, Any]) -> set[str]:
    return {ref["uid"] for ref in obj["metadata"].get("ownerReferences", [])}


def pods(cp: ControlPlane, ns: str) -> dict[str, dict[str, Any]]:
    found = get(cp, "-n", ns, "pods", "-l", "app.kubernetes.io/instance=demo") or {"items": []}
    return {p["metadata"]["name"]: p for p in found["items"] if not p["metadata"].get("deletionTimestamp")}


def ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def ready_count(cp: ControlPlane, ns: str) -> int:
    return sum(1 for p in pods(cp, ns).values() if ready(p))


def requested(cp: ControlPlane, ns: str, claim: str) -> str | None:
    pvc = get(cp, "-n", ns, "pvc", claim)
    return pvc["spec"]["resources"]["requests"]["storage"] if pvc else None


def template_size(cp: ControlPlane, ns: str) -> str | None:
    sts = get(cp, "-n", ns, "statefulset", "demo")
    return sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] if sts else None


def status(cp: ControlPlane, ns: str) -> dict[str, Any]:
    found: dict[str, Any] = (get(cp, "-n", ns, "zc", "demo") or {}).get("status") or {}
    return found


def volume_states(cp: ControlPlane, ns: str) -> dict[int, str]:
    return {v["member"]: v["state"] for v in status(cp, ns).get("volumes", [])}


def at_size(cp: ControlPlane, ns: str) -> dict[str, Any]:
    return next((c for c in status(cp, ns).get("conditions", []) if c["type"] == "VolumesAtSize"), {})


def events(cp: ControlPlane, ns: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in (get(cp, "-n", ns, "events") or {"items": []})["items"] if e["reason"] == reason]


def test_a_larger_size_grows_every_claim_and_reaches_new_members(
    control_plane: ControlPlane, operator: subprocess.Popen[str], namespaces: Namespaces
) -> None:
    cp, ns = control_plane, namespaces.create("zot-grow")
    # Three volumes for the first members, one of the new size for the member a scale-up adds.
    with storage(cp, "zot-grow", expandable=True, sizes=["1Gi", "1Gi", "1Gi", "2Gi"]):
        # whenDeleted Delete: the claims are owned by the StatefulSet, and must be by the new one after.
        apply_cluster(cp, ns, storage=local("1Gi", "zot-grow", when_deleted="Delete"))
        wait_for("3 ready members", lambda: ready_count(cp, ns) == 3, timeout=90)
        wait_for_phase(cp, ns, "Running")
        assert at_size(cp, ns)["status"] == "True" and status(cp, ns)["volumes"] == []
        before = {name: pod["metadata"]["uid"] for name, pod in pods(cp, ns).items()}
        old_set = get(cp, "-n", ns, "statefulset", "demo")["metadata"]["uid"]

        merge_patch(cp, ns, "zc", "demo", {"spec": {"storage": {"local": {"size": "2Gi"}}}})
        claims = [f"data-demo-{i}" for i in range(3)]
        wait_for("every claim asks for 2Gi", lambda: all(requested(cp, ns, c) == "2Gi" for c in claims))
        # A new StatefulSet, whose template makes claims of 2Gi; the pods are the same ones (none restarted).
        wait_for(
            "the StatefulSet recreated with 2Gi",
            lambda: template_size(cp, ns) == "2Gi" and get(cp, "-n", ns, "sts", "demo")["metadata"]["uid"] != old_set,
        )
        new_set = get(cp, "-n", ns, "statefulset", "demo")["metadata"]["uid"]
        wait_for(
            "the pods adopted by the new StatefulSet",
            lambda: all(owner_uids(p) == {new_set} for p in pods(cp, ns).values()),
        )
        wait_for(
            "the claims owned by the new StatefulSet",
            lambda: all(owner_uids(get(cp, "-n", ns, "pvc", c)) == {new_set} for c in claims),
        )
        assert {name: pod["metadata"]["uid"] for name, pod in pods(cp, ns).items()} == before
        assert ready_count(cp, ns) == 3
        expanding = {i: "Expanding" for i in range(3)}
        wait_for("3 members expanding", lambda: volume_states(cp, ns) == expanding)
        assert at_size(cp, ns)["status"] == "False" and at_size(cp, ns)["reason"] == "Expanding"
        assert all(v["capacity"] == "1Gi" and v["requested"] == "2Gi" for v in status(cp, ns)["volumes"])
        (asked,) = events(cp, ns, "ExpandingVolumes")
        assert asked["message"] == f"asked for 2Gi on {', '.join(claims)}"
        assert len(events(cp, ns, "RecreatingStatefulSet")) == 1
        # The real expand controller saw each request, and waits for a driver that is not there.
        wait_for(
            "ExternalExpanding on every claim",
            lambda: {e["involvedObject"]["name"] for e in events(cp, ns, "ExternalExpanding")} == set(claims),
        )

        # What a driver would write: the volume grows, then the file system.
        grow_volume(cp, ns, "data-demo-0")
        wait_for("member 0's file system pending", lambda: volume_states(cp, ns).get(0) == "FileSystemResizePending")
        grow_file_system(cp, ns, "data-demo-0")
        wait_for("member 0 at size", lambda: volume_states(cp, ns) == {1: "Expanding", 2: "Expanding"})
        for claim in claims[1:]:
            grow_volume(cp, ns, claim)
            grow_file_system(cp, ns, claim)
        wait_for("every member at size", lambda: at_size(cp, ns).get("status") == "True")
        assert status(cp, ns)["volumes"] == [] and at_size(cp, ns)["message"] == "every member's volume has 2Gi"
        assert len(events(cp, ns, "VolumesAtSize")) == 1

        # A scale-up: the StatefulSet controller makes the new member's claim with the new size.
        cp.kubectl("-n", ns, "scale", "zc", "demo", "--replicas", "4")
        wait_for("member 3's claim", lambda: requested(cp, ns, "data-demo-3"), timeout=60)
        assert requested(cp, ns, "data-demo-3") == "2Gi"
        wait_for("4 ready members", lambda: ready_count(cp, ns) == 4, timeout=120)
        assert get(cp, "-n", ns, "pvc", "data-demo-3")["spec"]["volumeName"] == "zot-grow-3"
        assert at_size(cp, ns)["status"] == "True"


def test_a_class_without_expansion_is_reported_per_member(
    control_plane: ControlPlane, operator: subprocess.Popen[str], namespaces: Namespaces
) -> None:
    cp, ns = control_plane, namespaces.create("zot-fixed")
    with storage(cp, "zot-fixed", expandable=False, sizes=["1Gi", "1Gi", "2Gi"]):
        apply_cluster(cp, ns, replicas=2, storage=local("1Gi", "zot-fixed"))
        wait_for("2 ready members", lambda: ready_count(cp, ns) == 2, timeout=90)
        merge_patch(cp, ns, "zc", "demo", {"spec": {"storage": {"local": {"size": "2Gi"}}}})
        refused = {0: "ExpansionNotAllowed", 1: "ExpansionNotAllowed"}
        wait_for("both members reported", lambda: volume_states(cp, ns) == refused)
        for volume in status(cp, ns)["volumes"]:
            assert volume["message"] == (
                "StorageClass zot-fixed does not allow volume expansion (allowVolumeExpansion): "
                f"{volume['claim']} stays at 1Gi"
            )
            assert (volume["requested"], volume["capacity"]) == ("1Gi", "1Gi")
        assert at_size(cp, ns)["reason"] == "ExpansionNotAllowed"
        assert requested(cp, ns, "data-demo-0") == requested(cp, ns, "data-demo-1") == "1Gi"
        # The operator did not ask, and the API server would have said no (its PersistentVolumeClaimResize).
        grow = '{"spec": {"resources": {"requests": {"storage": "2Gi"}}}}'
        result = cp.kubectl("-n", ns, "patch", "pvc", "data-demo-0", "--type=merge", "-p", grow, check=False)
        assert result.returncode != 0 and "must support resize" in result.stderr, result.stderr

        # New members still get the new size: their volumes are new.
        wait_for("the StatefulSet recreated with 2Gi", lambda: template_size(cp, ns) == "2Gi")
        cp.kubectl("-n", ns, "scale", "zc", "demo", "--replicas", "3")
        wait_for("3 ready members", lambda: ready_count(cp, ns) == 3, timeout=120)
        assert requested(cp, ns, "data-demo-2") == "2Gi"
        assert volume_states(cp, ns) == refused
        # Said once per member, over the many passes of the scale-up.
        warned = events(cp, ns, "VolumeExpansionNotAllowed")
        assert sorted(e["message"].split(":")[0] for e in warned) == ["member 0", "member 1"]
        assert all(e["type"] == "Warning" and e.get("count", 1) == 1 for e in warned)


@pytest.mark.usefixtures("crd")
def test_the_api_server_refuses_a_smaller_size(control_plane: ControlPlane, namespaces: Namespaces) -> None:
    cp, ns = control_plane, namespaces.create("zot-shrink", htpasswd=False)
    document = example_cluster(ns, tolerate=False)

    def apply(size: str) -> subprocess.CompletedProcess[str]:
        document["spec"]["storage"]["local"]["size"] = size
        return cp.kubectl("apply", "-f", str(write_document(cp, document, "shrink.yaml")), check=False)

    assert apply("2Gi").returncode == 0
    for smaller in ("1Gi", "1536Mi", "2000Mi", "2G"):  # compared as quantities: 2G is 2*10^9 bytes < 2Gi
        result = apply(smaller)
        assert result.returncode != 0 and SIZE_SHRINK_MESSAGE in result.stderr, (smaller, result.stderr)
    for same_or_larger in ("2048Mi", "3Gi"):
        assert apply(same_or_larger).returncode == 0, same_or_larger
    assert SIZE_SHRINK_MESSAGE in apply("2Gi").stderr  # below 3Gi now
