"""The ZotCluster's annotations against a real API server: `zot-operator.io/paused` leaves the cluster as it is
(drift, a resize) and says so until it is removed; `zot-operator.io/restartedAt` restarts the members one at
a time, as `kubectl rollout restart` does for a Deployment."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest
from zot_operator.annotations import PAUSED_ANNOTATION, RESTARTED_AT_ANNOTATION

from tests.support.control_plane import ControlPlane
from tests.support.kubectl import Namespaces, absent, get, wait_for
from tests.support.operators import OPERATOR_RESYNC_SECONDS
from tests.support.zotclusters import apply_cluster, wait_for_phase

pytestmark = pytest.mark.usefixtures("volumes")


def pods(cp: ControlPlane, ns: str) -> dict[str, dict[str, Any]]:
    found = get(cp, "-n", ns, "pods", "-l", "app.kubernetes.io/instance=demo") or {"items": []}
    return {p["metadata"]["name"]: p for p in found["items"] if not p["metadata"].get("deletionTimestamp")}


def ready_pods(cp: ControlPlane, ns: str) -> dict[str, dict[str, Any]]:
    return {
        name: pod
        for name, pod in pods(cp, ns).items()
        if any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))
    }


def config_members(cp: ControlPlane, ns: str) -> list[str]:
    configmap = get(cp, "-n", ns, "configmap", "demo-config")
    return list(json.loads(configmap["data"]["config.json"])["cluster"]["members"])


def cluster(cp: ControlPlane, ns: str) -> dict[str, Any]:
    found: dict[str, Any] = get(cp, "-n", ns, "zc", "demo")
    return found


def conditions(cp: ControlPlane, ns: str) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in cluster(cp, ns).get("status", {}).get("conditions", [])}


def events(cp: ControlPlane, ns: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in (get(cp, "-n", ns, "events") or {"items": []})["items"] if e["reason"] == reason]


def test_a_paused_cluster_is_left_as_it_is_until_resumed(
    control_plane: ControlPlane, operator: subprocess.Popen[str], namespaces: Namespaces
) -> None:
    cp, ns = control_plane, namespaces.create("zot-paused")
    apply_cluster(cp, ns)
    wait_for("3 ready members", lambda: len(ready_pods(cp, ns)) == 3, timeout=90)
    wait_for_phase(cp, ns, "Running")
    cp.kubectl("-n", ns, "annotate", "zc", "demo", f"{PAUSED_ANNOTATION}=true")
    zc = wait_for_phase(cp, ns, "Paused")
    paused = conditions(cp, ns)["Paused"]
    assert (paused["status"], paused["reason"]) == ("True", "PausedByAnnotation")
    assert f"{PAUSED_ANNOTATION}=true" in paused["message"]
    assert [e["type"] for e in events(cp, ns, "Paused")] == ["Normal"]

    # Paused: a deleted Service stays deleted, a resize is not made, and the status says which spec was acted on.
    uids = {name: pod["metadata"]["uid"] for name, pod in pods(cp, ns).items()}
    cp.kubectl("-n", ns, "delete", "service", "demo")
    cp.kubectl("-n", ns, "scale", "zc", "demo", "--replicas", "4")
    time.sleep(2 * OPERATOR_RESYNC_SECONDS + 2)  # two drift checks, which would have put both right
    assert absent(cp, "-n", ns, "service", "demo")
    assert get(cp, "-n", ns, "statefulset", "demo")["spec"]["replicas"] == 3 and len(config_members(cp, ns)) == 3
    assert {name: pod["metadata"]["uid"] for name, pod in pods(cp, ns).items()} == uids
    zc = cluster(cp, ns)
    assert zc["status"]["phase"] == "Paused"
    assert zc["status"]["observedGeneration"] < zc["metadata"]["generation"]
    assert len(events(cp, ns, "Paused")) == 1

    # Resumed: the drift is put right and the resize made.
    cp.kubectl("-n", ns, "annotate", "zc", "demo", f"{PAUSED_ANNOTATION}-")
    wait_for("the Service back", lambda: get(cp, "-n", ns, "service", "demo"), timeout=60)
    wait_for("4 members", lambda: len(config_members(cp, ns)) == 4, timeout=60)
    wait_for("4 ready members", lambda: len(ready_pods(cp, ns)) == 4, timeout=120)
    zc = wait_for_phase(cp, ns, "Running", timeout=60)
    assert zc["status"]["observedGeneration"] == zc["metadata"]["generation"]
    assert "Paused" not in conditions(cp, ns)
    assert len(events(cp, ns, "Resumed")) == 1


def test_restarted_at_restarts_the_members_one_at_a_time(
    control_plane: ControlPlane, operator: subprocess.Popen[str], namespaces: Namespaces
) -> None:
    cp, ns = control_plane, namespaces.create("zot-restart")
    apply_cluster(cp, ns)
    wait_for("3 ready members", lambda: len(ready_pods(cp, ns)) == 3, timeout=90)
    members = config_members(cp, ns)
    before = {pod["metadata"]["uid"] for pod in pods(cp, ns).values()}
    when = "2026-12-01T10:00:00Z"
    cp.kubectl("-n", ns, "annotate", "zc", "demo", f"{RESTARTED_AT_ANNOTATION}={when}")
    worst = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        current = pods(cp, ns)
        worst = max(worst, 3 - len(ready_pods(cp, ns)))
        restarted = [p for p in current.values() if p["metadata"]["uid"] not in before]
        if len(restarted) == 3 and len(ready_pods(cp, ns)) == 3:
            break
        time.sleep(0.3)
    else:
        raise AssertionError("the restart did not go through every member in 120 s")
    assert worst <= 1, f"{worst} members were down at once during the restart"
    for pod in pods(cp, ns).values():
        assert pod["metadata"]["annotations"][RESTARTED_AT_ANNOTATION] == when
    assert config_members(cp, ns) == members  # a restart, not a membership change
    (requested,) = events(cp, ns, "RestartRequested")
    assert requested["message"].startswith(f"{RESTARTED_AT_ANNOTATION}={when}: the members restart one at a time")
    restarts = [e["message"] for e in events(cp, ns, "Restarting")]
    assert sorted(restarts) == [f"rolling update: one member at a time: deleted demo-{i}" for i in range(3)]
