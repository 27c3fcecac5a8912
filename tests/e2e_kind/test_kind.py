"""End to end on a real Kubernetes (kind): image, chart, a ZotCluster, push and pull, resize, delete.

Needs Docker and kind. `make test` skips it (with the reason) where they are missing; `make test-kind`
(and the GitHub workflow) require them: ZOT_E2E_KIND=1 turns the skip into a failure.
Set ZOT_E2E_KEEP=1 to keep the kind cluster afterwards.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from zot_operator.models import DEFAULT_IMAGE
from zot_registry.cluster.hashing import owner_index

from tests.support.paths import REPO_ROOT

CLUSTER = "zot-e2e"
IMAGE = DEFAULT_IMAGE
NAMESPACE = "zot-e2e"
ENTRY = "localhost:5000"  # kind-config.yaml maps NodePort 30500 here
TOOLS = REPO_ROOT / ".tools" / "bin"


def _missing() -> str | None:
    for binary in ("docker", "kind", "kubectl"):
        if not shutil.which(binary) and not (TOOLS / binary).is_file():
            return f"{binary} is not installed"
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        return "the Docker daemon does not answer (docker info failed)"
    return None


@pytest.fixture(scope="module")
def kind_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    reason = _missing()
    if reason:
        if os.environ.get("ZOT_E2E_KIND") == "1":
            pytest.fail(f"kind end-to-end suite required but {reason}")
        pytest.skip(f"kind end-to-end suite skipped: {reason} (run `make test-kind` where Docker and kind exist)")
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    existing = run("kind", "get", "clusters").stdout.split()
    if CLUSTER not in existing:
        run("kind", "create", "cluster", "--config", str(REPO_ROOT / "kind-config.yaml"), "--wait", "120s", timeout=600)
    run("kind", "export", "kubeconfig", "--name", CLUSTER, "--kubeconfig", str(kubeconfig))
    try:
        yield kubeconfig
    finally:
        if os.environ.get("ZOT_E2E_KEEP") != "1":
            run("kind", "delete", "cluster", "--name", CLUSTER, check=False, timeout=300)


def run(
    *argv: str, check: bool = True, timeout: float = 300, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    path = f"{TOOLS}{os.pathsep}{os.environ.get('PATH', '')}"
    result = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        env={**os.environ, "PATH": path, **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def wait_for(what: str, check: Callable[[], Any], timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_chart_cluster_push_pull_resize_delete(kind_cluster: Path, tmp_path: Path) -> None:
    kube = {"KUBECONFIG": str(kind_cluster)}

    def kubectl(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run("kubectl", *args, check=check, env=kube, stdin=stdin)

    def zot_cluster() -> dict[str, Any]:
        return dict(json.loads(kubectl("-n", NAMESPACE, "get", "zc", "demo", "-o", "json").stdout))

    def running(replicas: int) -> bool:
        status = zot_cluster().get("status", {})
        return (
            status.get("phase") == "Running"
            and status.get("readyMembers") == replicas
            and len(status.get("members", [])) == replicas
        )

    # The image, built here and loaded into the nodes; the chart with it.
    run("docker", "build", "-t", IMAGE, str(REPO_ROOT), timeout=1200)
    run("kind", "load", "docker-image", IMAGE, "--name", CLUSTER, timeout=600)
    run(
        "helm",
        "upgrade",
        "--install",
        "zo",
        str(REPO_ROOT / "charts" / "zot-operator"),
        "--namespace",
        "zot-system",
        "--create-namespace",
        "--set",
        "image.pullPolicy=Never",
        "--wait",
        "--timeout",
        "5m",
        env=kube,
        timeout=400,
    )

    # A 3-member cluster with htpasswd auth, reachable from the host through the NodePort.
    kubectl("create", "namespace", NAMESPACE, check=False)
    import bcrypt

    entry = f"admin:{bcrypt.hashpw(b'change-me', bcrypt.gensalt()).decode()}\n"
    kubectl("-n", NAMESPACE, "create", "secret", "generic", "demo-htpasswd", f"--from-literal=htpasswd={entry}")
    manifest = {
        "apiVersion": "zot-operator.io/v1alpha1",
        "kind": "ZotCluster",
        "metadata": {"name": "demo", "namespace": NAMESPACE},
        "spec": {
            "replicas": 3,
            "imagePullPolicy": "Never",
            "auth": {"htpasswd": {"secretName": "demo-htpasswd"}},
            "service": {"type": "NodePort", "nodePort": 30500},
            "storage": {"local": {"size": "1Gi"}},
            # What this suite checks of a resize is the restart behaviour (RepositoriesMoved, kept owners
            # readable); a change made in place is tested where the members' control API is.
            "rebalance": {"mode": "Restart"},
        },
    }
    kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    wait_for("3 members running", lambda: running(3), timeout=600)
    ca = tmp_path / "ca.crt"
    ca.write_bytes(
        base64.b64decode(
            json.loads(kubectl("-n", NAMESPACE, "get", "secret", "demo-ca", "-o", "json").stdout)["data"]["ca.crt"]
        )
    )
    key = base64.b64decode(
        json.loads(kubectl("-n", NAMESPACE, "get", "secret", "demo-hashkey", "-o", "json").stdout)["data"]["hashKey"]
    )

    def oras(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run("oras", *args, "--ca-file", str(ca), "-u", "admin", "-p", "change-me", check=check)

    repos = [f"e2e/app-{i}" for i in range(6)]
    for repo in repos:
        payload = tmp_path / f"{repo.replace('/', '-')}.txt"
        payload.write_text(f"hello from {repo}\n")
        # oras names the file by the path it is given: push from its folder, with a bare name.
        pushed = subprocess.run(
            [
                str(TOOLS / "oras"),
                "push",
                "--ca-file",
                str(ca),
                "-u",
                "admin",
                "-p",
                "change-me",
                f"{ENTRY}/{repo}:v1",
                f"{payload.name}:text/plain",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert pushed.returncode == 0, pushed.stderr

    def pulled(repo: str) -> bool:
        out = tmp_path / "out" / repo
        result = oras("pull", "-o", str(out), f"{ENTRY}/{repo}:v1", check=False)
        return result.returncode == 0 and (out / f"{repo.replace('/', '-')}.txt").read_text() == f"hello from {repo}\n"

    assert all(pulled(repo) for repo in repos)

    # 3 -> 5: every member restarts with the new list; repositories that kept their owner stay readable
    # (with storage local to each member, the others stay on their old owner's volume).
    kubectl("-n", NAMESPACE, "scale", "zc", "demo", "--replicas", "5")
    wait_for("5 members running", lambda: running(5), timeout=600)
    kept = [r for r in repos if owner_index(r, key, 3) == owner_index(r, key, 5)]
    assert all(pulled(repo) for repo in kept)
    conditions = {c["type"]: c for c in zot_cluster()["status"]["conditions"]}
    assert "RepositoriesMoved" in conditions

    # 5 -> 3: the original list again, so every repository is back with its owner and its volume.
    kubectl("-n", NAMESPACE, "scale", "zc", "demo", "--replicas", "3")
    wait_for("3 members running again", lambda: running(3), timeout=600)
    assert all(pulled(repo) for repo in repos)

    # Deleting the ZotCluster removes its children through owner references.
    kubectl("-n", NAMESPACE, "delete", "zc", "demo", "--wait=true")
    wait_for(
        "StatefulSet gone",
        lambda: kubectl("-n", NAMESPACE, "get", "statefulset", "demo", check=False).returncode != 0,
        timeout=300,
    )
    run("helm", "uninstall", "zo", "--namespace", "zot-system", "--wait", env=kube, timeout=300)
