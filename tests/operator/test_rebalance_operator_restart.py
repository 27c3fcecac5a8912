"""The operator killed (SIGKILL) in the middle of a membership change made in place, and started again:
the members hold their step meanwhile, the new operator takes the change up where it was, and the end
state is the same as without the kill (every repository whole through every member, on its owner).

Its own module: it starts and kills its own operators, which must not meet the module-wide one."""

from __future__ import annotations

import base64
import os
import signal
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from zot_registry.cluster.hashing import owner_index

from tests.support.control_plane import ControlPlane
from tests.support.hosts import operator_hosts_env
from tests.support.images import make_image
from tests.support.kubectl import Namespaces, get, wait_for
from tests.support.local_fleet import stored_repositories
from tests.support.operators import operator_process
from tests.support.pod_runner import PodRunner
from tests.support.ports import port_free_on_all
from tests.support.rebalance import Workload
from tests.support.zotclusters import apply_cluster

pytestmark = pytest.mark.usefixtures("volumes", "crd")
ADMIN = ("admin", "change-me")


def status(cp: ControlPlane, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = (get(cp, "-n", namespace, "zc", "demo") or {}).get("status") or {}
    return found


def test_an_operator_killed_mid_change_is_taken_over_where_it_was(
    control_plane: ControlPlane, namespaces: Namespaces, tmp_path: Path
) -> None:
    cp, ns = control_plane, namespaces.create("zot-operator-killed")
    port = port_free_on_all(8)
    env = operator_hosts_env()
    apply_cluster(cp, ns, port=port, replicas=2, rebalance={"mode": "InPlace"})
    with PodRunner(cp, ns, workdir=tmp_path / "pods", port=port) as runner:
        with operator_process(cp.kubeconfig, tmp_path / "operator-1.log", env=env) as first:
            runner.wait_running([0, 1], timeout=120)
            wait_for("2 members running", lambda: status(cp, ns).get("phase") == "Running", timeout=120)
            repositories = [f"heavy/app-{i}" for i in range(16)]
            workload = Workload(lambda: [runner.url(0), runner.url(1)], Path("-"), ADMIN, repositories)
            workload.context = runner.ssl_context()
            with workload.client() as http:
                for repo in repositories:
                    assert workload.push(http, repo, "v1", make_image(repo, (3 << 20, 1 << 20)))
            cp.kubectl("-n", ns, "scale", "zc", "demo", "--replicas=3")
            wait_for("the change recorded", lambda: (status(cp, ns).get("rebalance") or {}).get("epoch"), timeout=60)
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
        record = status(cp, ns)["rebalance"]
        # Nobody drives the change now: the members stay at their step, writes to what moves may wait.
        with runner.client(0) as http:
            assert http.get("/v2/heavy/app-0/manifests/v1").status_code == 200
        with operator_process(cp.kubeconfig, tmp_path / "operator-2.log", env=env):

            def settled() -> bool:
                found = status(cp, ns)
                return len(found.get("members") or []) == 3 and not found.get("rebalance")

            wait_for("the change finished by the second operator", settled, timeout=240)
        assert status(cp, ns)["epoch"] == record["epoch"]  # the same change, not a second one
        events = [e for e in (get(cp, "-n", ns, "events") or {"items": []})["items"]]
        started = [e for e in events if e["reason"] in ("RebalanceStarted", "RebalanceRetargeted")]
        assert len(started) == 1 and sum(e.get("count", 1) for e in started) == 1, started
        workload.urls = lambda: [runner.url(i) for i in range(3)]
        assert workload.check_everything_pulls([runner.url(i) for i in range(3)]) == []
        hash_key = base64.b64decode((get(cp, "-n", ns, "secret", "demo-hashkey") or {})["data"]["hashKey"])
        for index in range(3):
            root = tmp_path / "pods" / "data" / f"member-{index}"
            owned = {r for r in repositories if owner_index(r, hash_key, 3) == index}
            # The old copies go a moment after the switch.
            wait_for(f"member {index} holds exactly what it owns", partial(holds_exactly, root, owned))


def holds_exactly(root: Path, owned: set[str]) -> bool:
    return stored_repositories(root) == owned
