"""End to end on kind (tests.support.e2e_story): the image built with Docker and loaded into the
nodes, then the story every real Kubernetes of this project tells.

Needs Docker and kind. `make test` skips it (with the reason) where they are missing; `make test-kind`
(and the GitHub workflow) require them: ZOT_E2E_KIND=1 turns the skip into a failure.
Set ZOT_E2E_KEEP=1 to keep the kind cluster afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from zot_operator.models import DEFAULT_IMAGE

from tests.support.e2e_story import NAMESPACE, Story, command
from tests.support.paths import REPO_ROOT

KIND_CLUSTER = "zot-e2e"
TOOLS = REPO_ROOT / ".tools" / "bin"
NODE_PORT = 30500  # kind-config.yaml maps it to 127.0.0.1:5000


def _missing() -> str | None:
    for binary in ("docker", "kind", "kubectl"):
        if not shutil.which(binary) and not (TOOLS / binary).is_file():
            return f"{binary} is not installed"
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        return "the Docker daemon does not answer (docker info failed)"
    return None


class Kind:
    """The story's platform on kind: clients on the host, through the NodePort and port-forwards."""

    name = "kind"

    def __init__(self, kubeconfig: Path) -> None:
        self.env = {
            **os.environ,
            "PATH": f"{TOOLS}{os.pathsep}{os.environ.get('PATH', '')}",
            "KUBECONFIG": str(kubeconfig),
        }
        self.forwards: dict[str, tuple[subprocess.Popen[str], str]] = {}

    def prepare(self) -> None:
        self.run("docker", "build", "-t", DEFAULT_IMAGE, str(REPO_ROOT), timeout=1200)
        self.run("kind", "load", "docker-image", DEFAULT_IMAGE, "--name", KIND_CLUSTER, timeout=600)

    def run(self, *argv: str, cwd: Path | None = None, check: bool = True, timeout: float = 300) -> str:
        return command(list(argv), self.env, cwd, check, timeout)

    def chart_values(self) -> list[str]:
        return ["image.pullPolicy=Never"]

    def adjust(self, cluster: dict[str, Any]) -> None:
        cluster["spec"]["imagePullPolicy"] = "Never"
        cluster["spec"]["service"] = {"type": "NodePort", "nodePort": NODE_PORT}

    def client_entry(self, port: int) -> str:
        return "localhost:5000"

    def member_entry(self, pod: dict[str, Any], port: int) -> str:
        """A port-forward to the pod (its address is inside kind's nodes), one per pod incarnation."""
        uid = pod["metadata"]["uid"]
        if uid not in self.forwards:
            forward = subprocess.Popen(
                ["kubectl", "-n", NAMESPACE, "port-forward", f"pod/{pod['metadata']['name']}", f":{port}"],
                stdout=subprocess.PIPE,
                text=True,
                env=self.env,
            )
            assert forward.stdout is not None
            line = forward.stdout.readline()  # "Forwarding from 127.0.0.1:NNNNN -> 5000"
            found = re.search(r"127\.0\.0\.1:(\d+)", line)
            assert found, f"kubectl port-forward said: {line!r}"
            self.forwards[uid] = (forward, f"127.0.0.1:{found.group(1)}")
        return self.forwards[uid][1]

    def close(self) -> None:
        for forward, _ in self.forwards.values():
            forward.terminate()
            forward.wait(timeout=30)


@pytest.fixture(scope="module")
def kind_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kind]:
    reason = _missing()
    if reason:
        if os.environ.get("ZOT_E2E_KIND") == "1":
            pytest.fail(f"kind end-to-end suite required but {reason}")
        pytest.skip(f"kind end-to-end suite skipped: {reason} (run `make test-kind` where Docker and kind exist)")
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    platform = Kind(kubeconfig)
    if KIND_CLUSTER not in platform.run("kind", "get", "clusters").split():
        platform.run(
            "kind", "create", "cluster", "--config", str(REPO_ROOT / "kind-config.yaml"), "--wait", "120s", timeout=600
        )
    platform.run("kind", "export", "kubeconfig", "--name", KIND_CLUSTER, "--kubeconfig", str(kubeconfig))
    try:
        yield platform
    finally:
        platform.close()
        if os.environ.get("ZOT_E2E_KEEP") != "1":
            platform.run("kind", "delete", "cluster", "--name", KIND_CLUSTER, check=False, timeout=300)


def test_chart_cluster_push_pull_resize_failover_delete(kind_cluster: Kind, tmp_path: Path) -> None:
    figures = Story(kind_cluster, tmp_path).tell()
    print(f"\nkind: {figures.seconds}")
