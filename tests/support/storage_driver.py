"""Storage for the volume expansion tests: a StorageClass with pre-made volumes of it, and the part of a storage
driver that grows them, played by the test.

The test control plane runs no CSI driver. When a claim asks for more, the real kube-controller-manager's expand
controller finds no volume plugin that can grow a hostPath volume and only says so (event `ExternalExpanding`,
"waiting for an external controller to expand this PVC"): in a real cluster the CSI external-resizer grows the
volume and sets the claim's `FileSystemResizePending` condition, and the kubelet then grows the file system and
sets the claim's capacity. `grow_volume` and `grow_file_system` write those same fields, so that what the
operator reads of a resize under way is what a driver would have written.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.support.control_plane import ControlPlane
from tests.support.kube_objects import persistent_volume, storage_class
from tests.support.kubectl import get


@contextlib.contextmanager
def storage(cp: ControlPlane, name: str, expandable: bool, sizes: Sequence[str]) -> Iterator[str]:
    """StorageClass `name` and a volume of it for each of `sizes` (volumes `<name>-<i>`); both deleted after
    (without waiting: a volume goes once the claim bound to it is gone with its namespace)."""
    objects = [storage_class(name, expandable)]
    objects += [persistent_volume(f"{name}-{i}", size, name) for i, size in enumerate(sizes)]
    path = Path(cp.dir) / f"storage-{name}.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    cp.kubectl("apply", "-f", str(path))
    try:
        yield name
    finally:
        cp.kubectl("delete", "-f", str(path), "--wait=false", "--ignore-not-found", check=False)


def _merge(cp: ControlPlane, *args: str, patch: object) -> None:
    cp.kubectl("patch", *args, "--type=merge", "-p", json.dumps(patch))


def grow_volume(cp: ControlPlane, namespace: str, claim: str) -> None:
    """The external-resizer's part: the claim's volume grows to what the claim asks, and the claim waits for
    its file system to be grown on the node."""
    pvc = get(cp, "-n", namespace, "pvc", claim)
    size = pvc["spec"]["resources"]["requests"]["storage"]
    _merge(cp, "pv", pvc["spec"]["volumeName"], patch={"spec": {"capacity": {"storage": size}}})
    pending = {
        "type": "FileSystemResizePending",
        "status": "True",
        "message": "Waiting for user to (re-)start a pod to finish file system resize of volume on node.",
    }
    _merge(cp, "-n", namespace, "pvc", claim, "--subresource=status", patch={"status": {"conditions": [pending]}})


def grow_file_system(cp: ControlPlane, namespace: str, claim: str) -> None:
    """The kubelet's part: the file system has grown, the claim has its size."""
    size = get(cp, "-n", namespace, "pvc", claim)["spec"]["resources"]["requests"]["storage"]
    status = {"status": {"capacity": {"storage": size}, "conditions": None}}
    _merge(cp, "-n", namespace, "pvc", claim, "--subresource=status", patch=status)
