"""What a user meets first, end to end on a Kubernetes whose pods run for real: the chart installed
(the operator as a pod, with its own RBAC), `examples/zotcluster.yaml` applied with an htpasswd
Secret, members Ready through their real probes, oras and skopeo through the client Service and
through each member, a resize 3 -> 5 -> 3, a member's pod killed and one kept away (failover),
and the ZotCluster deleted with everything it made.

One story, told on two platforms: kind (tests/e2e_kind, where Docker runs) and the node tier
(tests/node: a real kubelet with containerd in network namespaces of the test's own). A `Platform`
says how to reach that Kubernetes; the assertions are here, once.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import bcrypt
import yaml

from tests.support.images import write_oci_layout
from tests.support.kubectl import wait_for
from tests.support.paths import REPO_ROOT

NAMESPACE = "zot-e2e"
CLUSTER = "demo"
USER, PASSWORD = "admin", "change-me"
EXAMPLE = REPO_ROOT / "examples" / "zotcluster.yaml"
CHART = REPO_ROOT / "charts" / "zot-operator"


class Platform(Protocol):
    """How the story reaches one Kubernetes."""

    name: str

    def prepare(self) -> None:
        """The project's image where the nodes find it, and anything else the platform needs first."""

    def run(self, *argv: str, cwd: Path | None = None, check: bool = True, timeout: float = 300) -> str:
        """A command (kubectl, helm, oras, skopeo) where it reaches the API server and the cluster's
        Services and pods, with the platform's kubeconfig; its stdout."""
        ...

    def chart_values(self) -> list[str]:
        """`--set` values for helm (the image's pull policy, say)."""
        ...

    def adjust(self, cluster: dict[str, Any]) -> None:
        """Changes the platform needs to the example ZotCluster (how the client Service is exposed)."""

    def client_entry(self, port: int) -> str:
        """host:port through which clients reach the client Service."""
        ...

    def member_entry(self, pod: dict[str, Any], port: int) -> str:
        """host:port through which clients reach one member pod directly."""
        ...


@dataclass
class Figures:
    seconds: dict[str, float] = field(default_factory=dict)

    def took(self, what: str, started: float) -> None:
        self.seconds[what] = round(time.monotonic() - started, 1)
        print(f"[e2e] {what}: {self.seconds[what]} s", flush=True)


class Story:
    def __init__(self, platform: Platform, work: Path) -> None:
        self.platform, self.work, self.figures = platform, work, Figures()
        self.port = 5000
        self.repositories = [f"e2e/app-{i}" for i in range(6)]
        self.ca = work / "ca.crt"

    # -- kubectl --------------------------------------------------------------------------------

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> str:
        if stdin is None:
            return self.platform.run("kubectl", *args, check=check)
        path = self.work / f"stdin-{time.monotonic_ns()}.json"
        path.write_text(stdin)
        return self.platform.run("kubectl", *args, "-f", str(path), check=check)

    def get(self, *args: str) -> dict[str, Any] | None:
        out = self.platform.run("kubectl", "-n", NAMESPACE, "get", *args, "-o", "json", check=False)
        return json.loads(out) if out.strip().startswith("{") else None

    def status(self) -> dict[str, Any]:
        found: dict[str, Any] = (self.get("zc", CLUSTER) or {}).get("status") or {}
        return found

    def running(self, replicas: int) -> bool:
        status = self.status()
        return (
            status.get("phase") == "Running"
            and status.get("readyMembers") == replicas
            and len(status.get("members") or []) == replicas
            and not status.get("rebalance")
        )

    def pods(self) -> list[dict[str, Any]]:
        found = self.get("pods", "-l", f"app.kubernetes.io/instance={CLUSTER}") or {"items": []}
        return sorted(found["items"], key=lambda p: p["metadata"]["name"])

    # -- clients --------------------------------------------------------------------------------

    def oras(self, *args: str, check: bool = True) -> str:
        return self.platform.run(
            "oras", *args, "--ca-file", str(self.ca), "-u", USER, "-p", PASSWORD, cwd=self.work, check=check
        )

    def skopeo(self, source: str, destination: str) -> str:
        creds = f"{USER}:{PASSWORD}"
        return self.platform.run(
            "skopeo", "--insecure-policy", "copy", "--preserve-digests", "--src-cert-dir", str(self.work / "certs"),
            "--dest-cert-dir", str(self.work / "certs"), "--src-creds", creds, "--dest-creds", creds, source,
            destination,
        )  # fmt: skip

    def push(self, entry: str, repo: str) -> None:
        payload = self.work / f"{repo.replace('/', '-')}.txt"
        payload.write_text(f"hello from {repo}\n")
        # oras names the file by the path it is given: pushed from its folder, with a bare name.
        self.oras("push", f"{entry}/{repo}:v1", f"{payload.name}:text/plain")

    def pulls(self, entry: str, repo: str) -> bool:
        out = self.work / "out" / entry.replace(":", "_") / repo
        self.oras("pull", "-o", str(out), f"{entry}/{repo}:v1", check=False)
        file = out / f"{repo.replace('/', '-')}.txt"
        return file.is_file() and file.read_text() == f"hello from {repo}\n"

    def entries(self) -> list[str]:
        """The client Service, then each member directly."""
        return [self.platform.client_entry(self.port)] + [
            self.platform.member_entry(pod, self.port) for pod in self.pods()
        ]

    def unreadable(self, entries: list[str] | None = None) -> list[str]:
        return [
            f"{repo} via {e}"
            for e in entries or self.entries()
            for repo in self.repositories
            if not self.pulls(e, repo)
        ]

    # -- the story ------------------------------------------------------------------------------

    def install(self) -> None:
        started = time.monotonic()
        self.platform.prepare()
        self.figures.took("image where the nodes find it", started)
        started = time.monotonic()
        self.platform.run(
            "helm", "upgrade", "--install", "zo", str(CHART), "--namespace", "zot-system", "--create-namespace",
            *[arg for value in self.platform.chart_values() for arg in ("--set", value)],
            "--wait", "--timeout", "5m", timeout=400,
        )  # fmt: skip
        self.figures.took("helm install until the operator is ready", started)

    def apply_example(self) -> None:
        self.kubectl("create", "namespace", NAMESPACE, check=False)
        entry = f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt()).decode()}\n"
        self.kubectl(
            "-n", NAMESPACE, "create", "secret", "generic", "demo-htpasswd", f"--from-literal=htpasswd={entry}"
        )
        cluster = yaml.safe_load(EXAMPLE.read_text())
        cluster["metadata"]["namespace"] = NAMESPACE
        self.port = int(cluster["spec"].get("port", 5000))
        self.platform.adjust(cluster)
        started = time.monotonic()
        self.kubectl("apply", stdin=json.dumps(cluster))
        wait_for("3 members Ready", lambda: self.running(3), timeout=600, interval=2)
        self.figures.took("kubectl apply until 3 members Ready", started)
        assert all(self._ready(pod) for pod in self.pods())
        secret = self.get("secret", "demo-ca") or {}
        self.ca.write_bytes(base64.b64decode(secret["data"]["ca.crt"]))
        # skopeo takes a folder of CA files (per registry, or the one folder for all).
        (self.work / "certs").mkdir(exist_ok=True)
        (self.work / "certs" / "ca.crt").write_bytes(self.ca.read_bytes())

    @staticmethod
    def _ready(pod: dict[str, Any]) -> bool:
        conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
        return conditions.get("Ready") == "True"

    def push_and_pull_everywhere(self) -> None:
        entry = self.platform.client_entry(self.port)
        for repo in self.repositories:
            self.push(entry, repo)
        layout = self.work / "layout"
        write_oci_layout(layout, "v1", "e2e-skopeo", (100_000, 300_000))
        self.skopeo(f"oci:{layout}:v1", f"docker://{entry}/e2e/skopeo:v1")
        for member in self.entries()[1:]:
            back = self.work / f"back-{member.replace(':', '_')}"
            self.skopeo(f"docker://{member}/e2e/skopeo:v1", f"oci:{back}:v1")
            assert sorted(p.name for p in (back / "blobs" / "sha256").iterdir()) == sorted(
                p.name for p in (layout / "blobs" / "sha256").iterdir()
            )
        assert self.unreadable() == []

    def resize(self, replicas: int) -> None:
        started = time.monotonic()
        self.kubectl("-n", NAMESPACE, "scale", "zc", CLUSTER, f"--replicas={replicas}")
        wait_for(f"{replicas} members Ready", lambda: self.running(replicas), timeout=600, interval=2)
        self.figures.took(f"resize to {replicas} until every member is Ready", started)
        # A scale-down's leaving pods stop within their grace period (the registry drains first).
        wait_for(f"{replicas} member pods", lambda: len(self.pods()) == replicas, timeout=120, interval=2)
        assert self.unreadable() == []

    def kill_a_member(self) -> None:
        """A member's pod force-deleted: the StatefulSet starts it again and everything reads back."""
        before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in self.pods()}
        started = time.monotonic()
        self.kubectl("-n", NAMESPACE, "delete", "pod", f"{CLUSTER}-1", "--force", "--grace-period=0")

        def replaced() -> bool:
            pods = self.pods()
            renewed = [p for p in pods if p["metadata"]["name"] == f"{CLUSTER}-1"]
            return bool(renewed) and renewed[0]["metadata"]["uid"] != before[f"{CLUSTER}-1"] and self._ready(renewed[0])

        wait_for("the killed member back and Ready", replaced, timeout=300, interval=2)
        wait_for("3 members Ready again", lambda: self.running(3), timeout=300, interval=2)
        self.figures.took("a killed member's pod until Ready again", started)
        assert self.unreadable() == []

    def failover(self, after: str = "10s") -> None:
        """A member that cannot come back (its node cordoned, its pod deleted) is dropped after
        `after`: every other repository stays readable; uncordoned, it is re-admitted."""
        self.kubectl(
            "-n", NAMESPACE, "patch", "zc", CLUSTER, "--type=merge", "-p",
            json.dumps({"spec": {"failover": {"automatic": True, "after": after}}}),
        )  # fmt: skip
        pod = next(p for p in self.pods() if p["metadata"]["name"] == f"{CLUSTER}-2")
        node = pod["spec"]["nodeName"]
        # Every member is ready: failover keeps no clock (one left over would drop member 2 at once).
        wait_for("no failover clock", lambda: not self.status().get("notReadySince"), timeout=60, interval=2)
        self.kubectl("cordon", node)
        try:
            self.kubectl("-n", NAMESPACE, "delete", "pod", f"{CLUSTER}-2", "--force", "--grace-period=0")
            started = time.monotonic()

            def dropped() -> bool:
                status = self.status()
                return len(status.get("members") or []) == 2 and not status.get("rebalance")

            wait_for("member 2 dropped", dropped, timeout=300, interval=2)
            self.figures.took("member 2 away until dropped", started)
            assert self.status().get("failedMembers") == [2]
        finally:
            self.kubectl("uncordon", node)
        started = time.monotonic()
        wait_for("member 2 re-admitted", lambda: self.running(3), timeout=400, interval=2)
        self.figures.took("member 2 back until re-admitted", started)
        assert self.unreadable() == []

    def delete(self) -> None:
        started = time.monotonic()
        self.kubectl("-n", NAMESPACE, "delete", "zc", CLUSTER, "--wait=true")

        def gone() -> bool:
            left = []
            for kind in ("statefulset", "service", "configmap", "secret", "pod"):
                items = (self.get(kind, "-l", f"app.kubernetes.io/instance={CLUSTER}") or {"items": []})["items"]
                left += [f"{kind}/{i['metadata']['name']}" for i in items]
            return not left

        wait_for("everything the ZotCluster made gone", gone, timeout=300, interval=2)
        self.figures.took("kubectl delete until everything is gone", started)
        # The example keeps the members' volumes when scaled down and when deleted (Retain).
        claims = self.get("pvc", "-l", f"app.kubernetes.io/instance={CLUSTER}") or {"items": []}
        assert {f"data-{CLUSTER}-{i}" for i in range(5)} <= {c["metadata"]["name"] for c in claims["items"]}
        self.platform.run("helm", "uninstall", "zo", "--namespace", "zot-system", "--wait", timeout=300)

    def tell(self) -> Figures:
        self.install()
        self.apply_example()
        self.push_and_pull_everywhere()
        self.resize(5)
        self.resize(3)
        self.kill_a_member()
        self.failover()
        self.delete()
        return self.figures


def command(argv: list[str], env: dict[str, str], cwd: Path | None, check: bool, timeout: float) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout
