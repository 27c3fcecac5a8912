"""Kubernetes objects the test control plane is made of: a kubeconfig for a token, KWOK's fake Nodes
(annotated for KWOK, tainted so only tolerating pods land there) and the toleration such pods carry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

FAKE_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
FAKE_NODE_TAINT = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}
# What a pod needs to run on the fake nodes.
KWOK_TOLERATION = {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}


def kubeconfig(server: str, ca_file: Path, user: str, token: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": user}}],
        "current-context": "test",
    }


def fake_node(name: str, cpu: str = "32", memory: str = "256Gi", pods: str = "110") -> dict[str, Any]:
    """A Node that KWOK manages (annotation) and only tolerating pods land on (taint)."""
    resources = {"cpu": cpu, "memory": memory, "pods": pods}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {FAKE_NODE_ANNOTATION[0]: FAKE_NODE_ANNOTATION[1], "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/role": "agent",
                "node-role.kubernetes.io/agent": "",
                "type": "kwok",
            },
        },
        "spec": {"taints": [dict(FAKE_NODE_TAINT)]},
        "status": {
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
                "containerRuntimeVersion": "fake",
                "osImage": "kwok",
                "kernelVersion": "fake",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        },
    }


def persistent_volume(name: str, storage: str, storage_class: str = "manual") -> dict[str, Any]:
    """A PersistentVolume of `storage_class` on a host path named after it: what claims bind to where
    nothing provisions volumes."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": storage_class,
            "hostPath": {"path": f"/tmp/{name}"},
        },
    }


def storage_class(name: str, expandable: bool) -> dict[str, Any]:
    """A StorageClass whose provisioner nobody runs (claims bind to pre-made volumes of the class), with or
    without `allowVolumeExpansion`, which the API server's PersistentVolumeClaimResize admission reads."""
    body: dict[str, Any] = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": "example.org/no-provisioner",
        "volumeBindingMode": "Immediate",
    }
    if expandable:
        body["allowVolumeExpansion"] = True
    return body


def member_pod_status(healthy: bool, restart_count: int = 0) -> dict[str, Any]:
    """A status patch for a member pod (`kubectl patch --subresource=status`): what a hung member looks
    like to the API (not ready, container waiting), or a healthy one (ready, running)."""
    state: dict[str, Any] = (
        {"running": {"startedAt": "2026-01-01T00:00:00Z"}} if healthy else {"waiting": {"reason": "Hung"}}
    )
    return {
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if healthy else "False"}],
            "containerStatuses": [
                {
                    "name": "zot",
                    "ready": healthy,
                    "restartCount": restart_count,
                    "image": "x",
                    "imageID": "",
                    "started": healthy,
                    "state": state,
                }
            ],
        }
    }
