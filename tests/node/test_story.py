"""The end-to-end story (tests.support.e2e_story) on the node tier: the project's image, built here
without Docker, imported into the node's containerd; the chart, the operator and the registry
members as real pods of a real kubelet. The same assertions as tests/e2e_kind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zot_operator.models import DEFAULT_IMAGE

from tests.support.control_plane import ControlPlane
from tests.support.e2e_story import NAMESPACE, Story, command
from tests.support.node import DNS_IP, Node
from tests.support.paths import TOOLS_BIN
from tests.support.project_image import project_image_archive

STORAGE_CLASS = "node-local"
VOLUMES = 8  # 5 members at most, and a spare for each of the story's pod replacements


class NodePlatform:
    """kubectl and helm on the host (the API server is on 127.0.0.1); oras and skopeo inside the
    node's network namespace, where Service and pod addresses exist, resolving through cluster DNS."""

    name = "node"

    def __init__(self, control_plane: ControlPlane, node: Node, work: Path) -> None:
        self.cp, self.node, self.work = control_plane, node, work
        self.env = control_plane.env  # KUBECONFIG, and .tools/bin first on PATH
        # `ip netns exec` puts /etc/netns/<name>/resolv.conf over /etc/resolv.conf: the clients
        # resolve Service and member names through the cluster's DNS, as a pod would.
        self.resolv = Path("/etc/netns") / node.netns / "resolv.conf"

    def prepare(self) -> None:
        names = self.node.import_image(project_image_archive())
        assert DEFAULT_IMAGE in names, names
        self._storage()
        self.resolv.parent.mkdir(parents=True, exist_ok=True)
        self.resolv.write_text(f"nameserver {DNS_IP}\nsearch {NAMESPACE}.svc.cluster.local svc.cluster.local\n")

    def _storage(self) -> None:
        """A default StorageClass of local volumes on the node (nothing provisions volumes here):
        folders owned by root, which the kubelet hands to the members' fsGroup."""
        storage_class = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": "kubernetes.io/no-provisioner",
            "volumeBindingMode": "WaitForFirstConsumer",
        }
        items: list[dict[str, Any]] = [storage_class]
        for i in range(VOLUMES):
            folder = self.node.dir / "volumes" / f"pv-{i}"
            folder.mkdir(parents=True, exist_ok=True)
            items.append(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": f"node-local-{i}"},
                    "spec": {
                        "capacity": {"storage": "20Gi"},
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": STORAGE_CLASS,
                        "persistentVolumeReclaimPolicy": "Retain",
                        "local": {"path": str(folder)},
                        "nodeAffinity": {
                            "required": {
                                "nodeSelectorTerms": [
                                    {
                                        "matchExpressions": [
                                            {
                                                "key": "kubernetes.io/hostname",
                                                "operator": "In",
                                                "values": [self.node.name],
                                            }
                                        ]
                                    }
                                ]
                            }
                        },
                    },
                }
            )
        path = self.work / "storage.json"
        path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        self.run("kubectl", "apply", "-f", str(path))

    def run(self, *argv: str, cwd: Path | None = None, check: bool = True, timeout: float = 300) -> str:
        if argv[0] in ("oras", "skopeo"):
            program = str(TOOLS_BIN / argv[0]) if (TOOLS_BIN / argv[0]).is_file() else argv[0]
            netns = ["ip", "netns", "exec", self.node.netns, program, *argv[1:]]
            return command(netns, self.env, cwd, check, timeout)
        return command(list(argv), self.env, cwd, check, timeout)

    def chart_values(self) -> list[str]:
        return ["image.pullPolicy=Never"]

    def adjust(self, cluster: dict[str, Any]) -> None:
        cluster["spec"]["imagePullPolicy"] = "Never"  # nothing can be pulled here

    def client_entry(self, port: int) -> str:
        return f"demo.{NAMESPACE}.svc.cluster.local:{port}"

    def member_entry(self, pod: dict[str, Any], port: int) -> str:
        return f"{pod['metadata']['name']}.demo-members.{NAMESPACE}.svc.cluster.local:{port}"

    def close(self) -> None:
        self.resolv.unlink(missing_ok=True)
        self.resolv.parent.rmdir()


def test_chart_cluster_push_pull_resize_failover_delete(
    node_control_plane: ControlPlane, node: Node, tmp_path: Path
) -> None:
    platform = NodePlatform(node_control_plane, node, tmp_path)
    try:
        figures = Story(platform, tmp_path).tell()
    finally:
        platform.close()
    print(f"\nnode: {figures.seconds}")
