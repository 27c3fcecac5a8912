"""The operator against a real API server (etcd, kube-apiserver, controllers, scheduler, KWOK nodes)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from zot_registry.cluster.hashing import owner_index
from zot_registry.config import parse_config

from tests.support.control_plane import ControlPlane
from tests.support.images import make_image, push_image
from tests.support.kube_objects import member_pod_status
from tests.support.kubectl import Namespaces, absent, get, merge_patch, wait_for
from tests.support.operators import OPERATOR_RESYNC_SECONDS
from tests.support.pod_runner import PodRunner
from tests.support.ports import port_free_on_all
from tests.support.zotclusters import apply_cluster, example_cluster, wait_for_phase, write_document

pytestmark = pytest.mark.usefixtures("volumes")


def config_members(cp: ControlPlane, namespace: str, name: str = "demo") -> list[str]:
    configmap = get(cp, "-n", namespace, "configmap", f"{name}-config")
    # The drift test writes "{}" into the ConfigMap: until the operator puts it back, no members.
    return list(json.loads(configmap["data"]["config.json"]).get("cluster", {}).get("members", [])) if configmap else []


def pods(cp: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    found = get(cp, "-n", namespace, "pods", "-l", "app.kubernetes.io/instance=demo")
    return list(found["items"]) if found else []


def ready_pods(cp: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    return [
        p
        for p in pods(cp, namespace)
        if not p["metadata"].get("deletionTimestamp")
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    ]


def test_apply_scale_drift_and_delete(
    control_plane: ControlPlane, operator: subprocess.Popen[str], namespaces: Namespaces
) -> None:
    cp, ns = control_plane, namespaces.create("zot-lifecycle")
    apply_cluster(cp, ns)
    for kind, name in (
        ("configmap", "demo-config"),
        ("secret", "demo-hashkey"),
        ("secret", "demo-ca"),
        ("secret", "demo-tls"),
        ("service", "demo"),
        ("service", "demo-members"),
        ("statefulset", "demo"),
        ("poddisruptionbudget", "demo"),
    ):
        wait_for(f"{kind}/{name}", partial(get, cp, "-n", ns, kind, name))
    members = config_members(cp, ns)
    assert members == [f"demo-{i}.demo-members.{ns}.svc.cluster.local:5000" for i in range(3)]
    config_text = get(cp, "-n", ns, "configmap", "demo-config")["data"]["config.json"]
    assert parse_config(config_text, "operator-written config.json").config.cluster is not None
    sts = get(cp, "-n", ns, "statefulset", "demo")
    assert sts["spec"]["updateStrategy"]["type"] == "OnDelete"
    assert sts["metadata"]["ownerReferences"][0]["kind"] == "ZotCluster"
    wait_for("3 ready members", lambda: len(ready_pods(cp, ns)) == 3, timeout=90)
    zc = wait_for_phase(cp, ns, "Running")
    assert zc["status"]["members"] == members and zc["status"]["readyMembers"] == 3

    # An unchanged cluster costs no writes: two drift checks later, no object has a new resourceVersion.
    def versions() -> dict[str, str]:
        found = {}
        for kind in ("zc", "configmap", "secret", "service", "statefulset", "poddisruptionbudget", "pods"):
            for item in get(cp, "-n", ns, kind)["items"]:
                found[f"{kind}/{item['metadata']['name']}"] = item["metadata"]["resourceVersion"]
        return found

    time.sleep(3)  # let the last status write of the convergence land
    settled = versions()
    time.sleep(2 * OPERATOR_RESYNC_SECONDS + 2)  # two drift checks
    assert versions() == settled

    # Scale to 5: a new member list in the config, and every pod recreated with it.
    before = {p["metadata"]["uid"] for p in pods(cp, ns)}
    cp.kubectl("-n", ns, "scale", "zc", "demo", "--replicas", "5")
    wait_for("5 members in the config", lambda: len(config_members(cp, ns)) == 5)

    def five_new_ready_pods() -> bool:
        ready = ready_pods(cp, ns)
        return len(ready) == 5 and not before & {p["metadata"]["uid"] for p in ready}

    wait_for("5 ready pods, all new", five_new_ready_pods, timeout=120)
    five = config_members(cp, ns)

    def moved_condition() -> str:
        conditions = (get(cp, "-n", ns, "zc", "demo") or {}).get("status", {}).get("conditions", [])
        return next((c["message"] for c in conditions if c["type"] == "RepositoriesMoved"), "")

    assert "about 80% of repositories moved owner (3 -> 5 members)" in wait_for("moved condition", moved_condition)
    for pod in ready_pods(cp, ns):
        assert pod["metadata"]["annotations"]["zot-operator.io/members"] == ",".join(five)
    cp.kubectl("-n", ns, "scale", "zc", "demo", "--replicas", "2")
    wait_for("2 members", lambda: len(config_members(cp, ns)) == 2)
    wait_for("2 ready pods", lambda: len(ready_pods(cp, ns)) == 2, timeout=120)

    # Drift: a deleted Service and an edited ConfigMap come back.
    cp.kubectl("-n", ns, "delete", "service", "demo")
    cp.kubectl(
        "-n", ns, "patch", "configmap", "demo-config", "--type=merge", "-p", json.dumps({"data": {"config.json": "{}"}})
    )
    wait_for("service back", lambda: get(cp, "-n", ns, "service", "demo"), timeout=60)
    wait_for("config restored", lambda: len(config_members(cp, ns)) == 2, timeout=60)

    # Deleting the ZotCluster removes every child through owner references.
    cp.kubectl("-n", ns, "delete", "zc", "demo")
    for kind, name in (
        ("configmap", "demo-config"),
        ("statefulset", "demo"),
        ("service", "demo"),
        ("secret", "demo-tls"),
        ("secret", "demo-hashkey"),
    ):
        wait_for(f"{kind}/{name} gone", partial(absent, cp, "-n", ns, kind, name), timeout=90)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"replicas": 0}, "replicas"),
        ({"excludedMembers": [7]}, "excludedMembers"),
        ({"storage": {"mode": "nfs"}}, "mode"),
        ({"storage": {"mode": "s3", "s3": {"bucket": "b"}}}, "storage mode s3 needs a shared cache"),
        (
            {
                "storage": {"mode": "s3", "s3": {"bucket": "b"}},
                "cache": {"redis": {"url": "redis://r:6379"}, "dynamodb": {}},
            },
            "exactly one of redis or dynamodb",
        ),
        ({"cache": {"redis": {"url": "redis://r:6379"}}}, "cache is only used with storage mode s3"),
        (
            {"storage": {"mode": "s3", "s3": {"bucket": "b"}}, "cache": {"redis": {"url": "redis://user:pw@r:6379"}}},
            "url",
        ),
        (
            {"storage": {"mode": "s3", "s3": {"bucket": "b"}}, "cache": {"redis": {"keyPrefix": "z"}}},
            "redis needs exactly one of url or urlSecret",
        ),
        (
            {"rebalance": {"mode": "InPlace"}, "tls": {"mode": "secret", "secretName": "my-tls"}},
            "rebalance mode InPlace needs tls mode managed",
        ),
    ],
)
def test_invalid_clusters_are_rejected_by_the_api_server(
    control_plane: ControlPlane, crd: None, module_namespaces: Namespaces, change: dict[str, Any], message: str
) -> None:
    cp = control_plane
    ns = module_namespaces.create("zot-invalid", htpasswd=False, exist_ok=True)
    document = example_cluster(ns, "bad", tolerate=False)
    document["spec"].update(change)
    path = write_document(cp, document, "invalid.yaml")
    result = cp.kubectl("apply", "-f", str(path), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_hash_key_secret_is_immutable(control_plane: ControlPlane, crd: None, namespaces: Namespaces) -> None:
    cp, ns = control_plane, namespaces.create("zot-immutable", htpasswd=False)
    apply_cluster(cp, ns, auth=None, hashKeySecret="first-key")
    document = example_cluster(ns, tolerate=False)
    document["spec"].update(auth=None, hashKeySecret="second-key")
    path = write_document(cp, document, "immutable.yaml")
    result = cp.kubectl("apply", "-f", str(path), check=False)
    assert result.returncode != 0 and "hashKeySecret is immutable" in result.stderr


def test_missing_secret_degrades_and_deletes_nothing(
    control_plane: ControlPlane, operator: subprocess.Popen[str], namespaces: Namespaces
) -> None:
    cp, ns = control_plane, namespaces.create("zot-degraded", htpasswd=False)
    apply_cluster(cp, ns)  # references demo-htpasswd, which this namespace lacks
    zc = wait_for_phase(cp, ns, "Degraded")
    degraded = next(c for c in zc["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and "demo-htpasswd" in degraded["message"]
    events = get(cp, "-n", ns, "events")
    assert any("demo-htpasswd" in e.get("message", "") and e.get("type") == "Warning" for e in events["items"])
    assert get(cp, "-n", ns, "statefulset", "demo") is None


def test_failover_drops_a_member_kept_not_ready_and_readmits_it(
    control_plane: ControlPlane, operator: subprocess.Popen[str], namespaces: Namespaces
) -> None:
    cp, ns = control_plane, namespaces.create("zot-failover")
    apply_cluster(cp, ns, failover={"automatic": True, "after": "5s"})
    wait_for("3 ready members", lambda: len(ready_pods(cp, ns)) == 3, timeout=90)
    # What a hung member looks like to the API: not ready, container not running.
    not_ready = member_pod_status(healthy=False)
    cp.kubectl("-n", ns, "patch", "pod", "demo-1", "--subresource=status", "--type=merge", "-p", json.dumps(not_ready))

    def event_reasons() -> set[str]:
        return {e["reason"] for e in (get(cp, "-n", ns, "events") or {"items": []})["items"]}

    def dropped() -> bool:
        # The dropped state lasts only until the restarted member is healthy for `after` again,
        # so look for it in the status and the ConfigMap, or for the event that announced it.
        zc = get(cp, "-n", ns, "zc", "demo") or {}
        in_status = zc.get("status", {}).get("failedMembers") == [1] and len(config_members(cp, ns)) == 2
        return in_status or "MemberDropped" in event_reasons()

    wait_for("member 1 dropped", dropped, timeout=60)
    # The restart gives member 1 a fresh, healthy pod: after `after` (at least 30 s) of health it is back.
    wait_for("member 1 re-admitted", lambda: "MemberReadmitted" in event_reasons(), timeout=120)
    wait_for("3 members again", lambda: len(config_members(cp, ns)) == 3, timeout=30)
    dropped_events = [e for e in get(cp, "-n", ns, "events")["items"] if e["reason"] == "MemberDropped"]
    assert "member 1 not ready for 5s" in dropped_events[0]["message"]
    assert "Restarting" in event_reasons()


def test_a_member_ready_again_loses_its_not_ready_clock(
    control_plane: ControlPlane, operator: subprocess.Popen[str], namespaces: Namespaces
) -> None:
    """Failover's clocks go when their member is ready again. The status is a JSON merge patch, which
    keeps the map keys it leaves out: the clocks of a cluster's first start stayed, and much later a
    member's first moment of not being ready dropped it at once (found on a real node)."""
    cp, ns = control_plane, namespaces.create("zot-clock")
    apply_cluster(cp, ns, failover={"automatic": True, "after": "10m"})
    wait_for("3 ready members", lambda: len(ready_pods(cp, ns)) == 3, timeout=90)

    def clocks() -> dict[str, str]:
        found: dict[str, str] = ((get(cp, "-n", ns, "zc", "demo") or {}).get("status") or {}).get("notReadySince") or {}
        return found

    def clock_follows(healthy: bool) -> bool:
        return ("1" in clocks()) != healthy  # a clock while not ready, none once ready again

    wait_for("no clock once every member is ready", lambda: clocks() == {}, timeout=60)
    for healthy in (False, True):
        status = json.dumps(member_pod_status(healthy=healthy))
        cp.kubectl("-n", ns, "patch", "pod", "demo-1", "--subresource=status", "--type=merge", "-p", status)
        wait_for(f"member 1 clock, healthy={healthy}", partial(clock_follows, healthy), timeout=60)


def test_registry_processes_run_from_what_the_operator_wrote(
    control_plane: ControlPlane, operator: subprocess.Popen[str], namespaces: Namespaces, tmp_path: Path
) -> None:
    """The ConfigMap and Secrets in the API server, used as they are by three real registry processes
    (one per pod, started by tests.support.pod_runner as a kubelet would)."""
    cp, ns = control_plane, namespaces.create("zot-real")
    port = port_free_on_all(3)
    apply_cluster(cp, ns, port=port)
    with PodRunner(cp, ns, workdir=tmp_path, port=port, ordinals=3) as runner, contextlib.ExitStack() as stack:
        runner.wait_running([0, 1, 2])
        for i in range(3):
            runner.wait_ready(i)
        clients = [stack.enter_context(runner.client(i)) for i in range(3)]
        config = runner.member(0).config
        assert config["cluster"]["members"] == [f"{host}:{port}" for host in list(runner.hosts)[:3]]
        # The hash key is the operator's random one: pick names so that every member owns three.
        key = config["cluster"]["hashKey"].encode()
        owned: list[list[str]] = [[], [], []]
        for name in (f"real/app-{i}" for i in range(200)):
            if len(owned[owner_index(name, key, 3)]) < 3:
                owned[owner_index(name, key, 3)].append(name)
        images = {repo: make_image(repo) for names in owned for repo in names}
        for i, (repo, image) in enumerate(images.items()):
            assert push_image(clients[i % 3], repo, image, tag="v1").status_code == 201
        for repo, image in images.items():
            for client in clients:
                assert client.get(f"/v2/{repo}/manifests/v1").content == image.manifest
        roots = [runner.member(i).root for i in range(3)]
        stored = [{str(p.parent.relative_to(root)) for p in root.rglob("index.json")} for root in roots]
        assert stored == [set(names) for names in owned]


def test_image_change_rolls_one_member_at_a_time(
    control_plane: ControlPlane, operator: subprocess.Popen[str], namespaces: Namespaces
) -> None:
    cp, ns = control_plane, namespaces.create("zot-rolling")
    apply_cluster(cp, ns)
    wait_for("3 ready members", lambda: len(ready_pods(cp, ns)) == 3, timeout=90)
    merge_patch(cp, ns, "zc", "demo", {"spec": {"image": "example.org/zot-operator:next"}})
    worst = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        current = pods(cp, ns)
        updated = [p for p in current if p["spec"]["containers"][0]["image"] == "example.org/zot-operator:next"]
        worst = max(worst, 3 - len(ready_pods(cp, ns)))
        if len(updated) == 3 and len(ready_pods(cp, ns)) == 3:
            break
        time.sleep(0.3)
    else:
        raise AssertionError("the image change did not roll through all members in 120 s")
    assert worst <= 1, f"{worst} members were down at once during a rolling update"
    # The member list did not change, so no restart-all happened.
    restarts = [e for e in get(cp, "-n", ns, "events")["items"] if e["reason"] == "Restarting"]
    assert restarts and all("one member at a time" in e["message"] for e in restarts)
