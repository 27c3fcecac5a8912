"""`zot-operator run` without a reachable Kubernetes API: one line that says why, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.ports import free_port


def kubeconfig_for(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "test",
                "clusters": [{"name": "test", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
                "users": [{"name": "test", "user": {"token": "not-a-real-token"}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
            }
        )
    )
    return path


def run_operator(home: Path, kubeconfig: Path | None) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")
    }
    env["HOME"] = str(home)  # no ~/.kube/config to fall back on
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    # The liveness endpoint on loopback, should kopf ever get far enough to open it.
    return subprocess.run(
        [sys.executable, "-m", "zot_operator.cli", "run", f"--liveness=http://127.0.0.1:{free_port()}/healthz"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=home,
    )


@pytest.mark.parametrize("case", ["closed-port", "no-kubeconfig", "missing-kubeconfig-file", "malformed-kubeconfig"])
def test_run_without_a_reachable_api_is_one_clear_line(tmp_path: Path, case: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    closed = free_port()  # bound once and released: nothing listens there
    kubeconfig: Path | None = tmp_path / "kubeconfig"
    if case == "closed-port":
        kubeconfig_for(tmp_path / "kubeconfig", f"https://127.0.0.1:{closed}")
    elif case == "no-kubeconfig":
        kubeconfig = None
    elif case == "missing-kubeconfig-file":
        kubeconfig = tmp_path / "absent" / "kubeconfig"
    else:
        (tmp_path / "kubeconfig").write_text("clusters: [\n")
    result = run_operator(home, kubeconfig)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output
    lines = output.splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("error: ") and lines[0].endswith("; set KUBECONFIG or run in a cluster"), lines[0]
    expected = {
        "closed-port": f"error: cannot reach the Kubernetes API at https://127.0.0.1:{closed}: connection refused;",
        "no-kubeconfig": "error: no Kubernetes API configured: not in a cluster and no kubeconfig",
        "missing-kubeconfig-file": f"error: KUBECONFIG={kubeconfig}: no such file;",
        "malformed-kubeconfig": f"error: cannot use the kubeconfig {kubeconfig}: ",
    }[case]
    assert lines[0].startswith(expected), lines[0]
