"""ZotCluster documents for the operator tests: the repository's examples, placed in a namespace and
made to run on KWOK's fake nodes, applied through kubectl, and waits on their status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.support.control_plane import ControlPlane
from tests.support.kube_objects import KWOK_TOLERATION
from tests.support.kubectl import get, wait_for
from tests.support.paths import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "zotcluster.yaml"
S3_EXAMPLE = REPO_ROOT / "examples" / "zotcluster-s3.yaml"


def example_cluster(
    namespace: str, name: str = "demo", example: Path = EXAMPLE, tolerate: bool = True
) -> dict[str, Any]:
    """`example` named `name` in `namespace`; with `tolerate`, its pods tolerate the fake nodes' taint."""
    document: dict[str, Any] = yaml.safe_load(example.read_text())
    document["metadata"] = {"name": name, "namespace": namespace}
    if tolerate:
        document["spec"]["tolerations"] = [KWOK_TOLERATION]
    return document


def write_document(cp: ControlPlane, document: dict[str, Any], file_name: str) -> Path:
    """`document` as YAML in the control plane's folder, for `kubectl apply -f`."""
    path = Path(cp.dir) / file_name
    path.write_text(yaml.safe_dump(document))
    return path


def apply_document(cp: ControlPlane, document: dict[str, Any], file_name: str) -> dict[str, Any]:
    cp.kubectl("apply", "-f", str(write_document(cp, document, file_name)))
    return document


# KWOK's pods run no registry: a membership change made in place would wait for ever for members to
# answer. Tests of the restart behaviour (and of anything that changes the member list) ask for it.
BY_RESTART = {"mode": "Restart"}


def apply_cluster(cp: ControlPlane, namespace: str, name: str = "demo", **spec: Any) -> dict[str, Any]:
    """The local-storage example on pre-made volumes of class "manual", membership changes by restart,
    `spec` keys replaced."""
    document = example_cluster(namespace, name)
    document["spec"]["storage"]["local"]["storageClassName"] = "manual"
    document["spec"]["rebalance"] = BY_RESTART
    document["spec"].update(spec)
    return apply_document(cp, document, f"{namespace}-{name}.yaml")


def wait_for_phase(
    cp: ControlPlane, namespace: str, phase: str, name: str = "demo", timeout: float = 60
) -> dict[str, Any]:
    """The ZotCluster once its status.phase is `phase`."""
    found: dict[str, Any] = wait_for(
        phase,
        lambda: (z := get(cp, "-n", namespace, "zc", name)) and z.get("status", {}).get("phase") == phase and z,
        timeout=timeout,
    )
    return found
