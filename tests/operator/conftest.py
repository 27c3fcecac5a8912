"""Fixtures for tests against a real API server: see tests/k8s.py and hack/build-k8s.sh."""

from __future__ import annotations

from collections.abc import Iterator

import kubernetes
import pytest

from tests.k8s import BINARIES, KWOK_STAGES, TOOLS_BIN, ControlPlane


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok with 3 fake nodes,
    started once per session on 127.0.0.1 and stopped (temporary folder removed) at the end."""
    missing = [name for name in BINARIES if not (TOOLS_BIN / name).is_file()]
    if missing or not any(KWOK_STAGES.glob("*.yaml")):
        pytest.fail(f"control plane binaries missing ({', '.join(missing) or 'kwok stages'}): "
                    "run `bash hack/tools.sh k8s` (or `make tools`)")
    cp = ControlPlane().start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Iterator[kubernetes.client.ApiClient]:
    """A kubernetes.client.ApiClient for the admin user (system:masters) of `control_plane`."""
    client = kubernetes.config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    try:
        yield client
    finally:
        client.close()
