"""The identity of a ZotCluster's children: the `ClusterRef` they come from, their names, labels,
selectors and object metadata (owner reference included). Shared by `render` and `statefulset`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .crd import GROUP, KIND, VERSION
from .models import ZotClusterSpec


@dataclass(frozen=True)
class ClusterRef:
    """Identity of the ZotCluster that owns the children."""

    name: str
    namespace: str
    uid: str = ""
    spec: ZotClusterSpec = field(default_factory=ZotClusterSpec)
    # The ZotCluster's zot-operator.io/restartedAt annotation (annotations.py): in the pod template when set.
    restarted_at: str | None = None

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


# Names -------------------------------------------------------------------------------------------


def headless_service_name(name: str) -> str:
    return f"{name}-members"


def config_map_name(name: str) -> str:
    return f"{name}-config"


def hash_key_secret_name(ref: ClusterRef) -> str:
    return ref.spec.hash_key_secret or f"{ref.name}-hashkey"


def ca_secret_name(name: str) -> str:
    return f"{name}-ca"


def ldap_credentials_secret_name(name: str) -> str:
    """The operator's Secret with zot's LDAP credentials file (auth.py)."""
    return f"{name}-ldap-credentials"


def tls_secret_name(ref: ClusterRef) -> str:
    if ref.spec.tls.mode == "secret" and ref.spec.tls.secret_name:
        return ref.spec.tls.secret_name
    return f"{ref.name}-tls"


def labels(name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "zot",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": "zot-operator",
    }


def selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "zot", "app.kubernetes.io/instance": name}


def selector_string(name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in selector(name).items())


def object_metadata(
    ref: ClusterRef, name: str, extra_labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": ref.namespace,
        "labels": {**labels(ref.name), **(extra_labels or {})},
    }
    if ref.uid:
        meta["ownerReferences"] = [ref.owner_reference()]
    if annotations:
        meta["annotations"] = annotations
    return meta
