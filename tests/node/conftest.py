"""Fixtures of the node tier (tests/support/node.py, hack/build-node.sh): a control plane ready for
real nodes and one real node joined to it, started once per module; the busybox image imported."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.control_plane import BINARIES, TOOLS_BIN, ControlPlane
from tests.support.kubectl import Namespaces
from tests.support.node import NODE_BINARIES, Node
from tests.support.node_images import BUSYBOX_IMAGE, busybox_image


@pytest.fixture(scope="module")
def node_control_plane() -> Iterator[ControlPlane]:
    """A control plane without KWOK nodes, with `node_support` (client CA, Node authorizer, egress)."""
    missing = [name for name in (*BINARIES, *NODE_BINARIES) if not (TOOLS_BIN / name).is_file()]
    if missing:
        pytest.fail(f"binaries missing ({', '.join(missing)}): run `bash hack/tools.sh k8s node` (or `make tools`)")
    with ControlPlane(nodes=0, node_support=True) as cp:
        print(f"\ncontrol plane started in {cp.startup_seconds:.1f}s")
        yield cp


@pytest.fixture(scope="module")
def node(node_control_plane: ControlPlane) -> Iterator[Node]:
    """One real node (containerd, kubelet, kube-proxy, CoreDNS) in a network namespace of its own."""
    with Node(node_control_plane) as started:
        print(f"\nnode {started.name} started in {started.startup_seconds:.1f}s: {started.timings}")
        yield started


@pytest.fixture(scope="module")
def busybox(node: Node, tmp_path_factory: pytest.TempPathFactory) -> str:
    """BUSYBOX_IMAGE, imported into the node's containerd; its name."""
    archive: Path = busybox_image(tmp_path_factory.mktemp("images") / "busybox.tar")
    names = node.import_image(archive)
    assert BUSYBOX_IMAGE in names, names
    return BUSYBOX_IMAGE


@pytest.fixture(scope="module")
def namespace(node_control_plane: ControlPlane) -> Iterator[str]:
    """A namespace for the module's objects (its default ServiceAccount made by the controllers)."""
    with Namespaces(node_control_plane) as made:
        yield made.create("node-smoke", htpasswd=False)
