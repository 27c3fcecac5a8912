"""Fixtures for tests against a real API server (tests/support/control_plane.py, hack/build-k8s.sh):
the control plane, an admin client, namespaces that are deleted when their test ends, and for the
operator tests the CRD, an operator per module (`operator_with_hosts`: one that resolves member names)
and volumes to claim."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from tests.support.control_plane import BINARIES, KWOK_STAGES, TOOLS_BIN, ControlPlane
from tests.support.hosts import operator_hosts_env
from tests.support.kube_objects import persistent_volume
from tests.support.kubectl import Namespaces, get, wait_established
from tests.support.operators import operator_process
from tests.support.paths import REPO_ROOT


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok with 3 fake nodes,
    started once per session on 127.0.0.1 and stopped (temporary folder removed) at the end."""
    missing = [name for name in BINARIES if not (TOOLS_BIN / name).is_file()]
    if missing or not any(KWOK_STAGES.glob("*.yaml")):
        pytest.fail(
            f"control plane binaries missing ({', '.join(missing) or 'kwok stages'}): "
            "run `bash hack/tools.sh k8s` (or `make tools`)"
        )
    cp = ControlPlane().start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Iterator[kubernetes.client.ApiClient]:
    """A kubernetes.client.ApiClient for the admin user (system:masters) of `control_plane`."""
    with contextlib.closing(
        kubernetes.config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    ) as client:
        yield client


@pytest.fixture
def namespaces(control_plane: ControlPlane) -> Iterator[Namespaces]:
    """`namespaces.create(name, htpasswd=True)`: namespaces of this test, deleted when it ends."""
    with Namespaces(control_plane) as made:
        yield made


@pytest.fixture(scope="module")
def module_namespaces(control_plane: ControlPlane) -> Iterator[Namespaces]:
    """Namespaces shared by the tests of one module (a parametrized test's cases), deleted after the last."""
    with Namespaces(control_plane) as made:
        yield made


@pytest.fixture(scope="module")
def crd(control_plane: ControlPlane) -> None:
    """The ZotCluster CRD, established."""
    control_plane.kubectl("apply", "-f", str(REPO_ROOT / "crds" / "zotclusters.yaml"))
    wait_established(control_plane, "zotclusters.zot-operator.io")


def _operator(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    with operator_process(control_plane.kubeconfig, log, env=env) as process:
        yield process
    if os.environ.get("SHOW_OPERATOR_LOG"):
        print(log.read_text()[-5000:])


@pytest.fixture(scope="module")
def operator(
    control_plane: ControlPlane, crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.Popen[str]]:
    """The operator of this module (SHOW_OPERATOR_LOG=1 prints the end of its log)."""
    yield from _operator(control_plane, tmp_path_factory)


@pytest.fixture(scope="module")
def operator_with_hosts(
    control_plane: ControlPlane, crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.Popen[str]]:
    """`operator`, but member names (`<name>-<i>.<name>-members.<ns>.svc.cluster.local`, any namespace)
    resolve to 127.0.0.<i + 1> in it, where a PodRunner (tests.support.pod_runner) runs member <i>:
    for tests where the operator talks to the members. Never together with `operator` in one module:
    both would reconcile every cluster."""
    yield from _operator(control_plane, tmp_path_factory, operator_hosts_env())


VOLUMES = 64


@pytest.fixture(scope="module")
def volumes(control_plane: ControlPlane) -> None:
    """KWOK's fake nodes carry a taint, and nothing provisions volumes here: the clusters under test
    tolerate the taint and claim these pre-made PersistentVolumes of class "manual"."""
    # Claims outlive their namespaces' clusters (whenScaled/whenDeleted Retain), and a released volume
    # is never bound again: enough for every cluster of a session (the in-place tests claim 5 each).
    for i in range(VOLUMES):
        if get(control_plane, "pv", f"manual-{i}") is None:
            path = Path(control_plane.dir) / f"pv-{i}.json"
            path.write_text(json.dumps(persistent_volume(f"manual-{i}", "20Gi")))
            control_plane.kubectl("apply", "-f", str(path))
