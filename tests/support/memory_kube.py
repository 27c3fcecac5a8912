"""An in-memory Kubernetes API for the reconciliation's unit tests: the `Kube` calls the steps make, on a
dict of objects, with the API server's merge-patch rules; `ensure` is the real one on top of them."""

from __future__ import annotations

import base64
import copy
from typing import Any

from kubernetes.client.rest import ApiException
from zot_operator.kube import Kube
from zot_operator.names import labels
from zot_operator.statefulset import MEMBERS_ANNOTATION


def merge_patch(stored: dict[str, Any], patch: dict[str, Any]) -> None:
    """RFC 7386, as the API server applies `application/merge-patch+json`: objects merge key by key,
    null removes a key, anything else (lists included) replaces."""
    for key, value in patch.items():
        if value is None:
            stored.pop(key, None)
        elif isinstance(value, dict) and isinstance(stored.get(key), dict):
            merge_patch(stored[key], value)
        else:
            stored[key] = copy.deepcopy(value)


class MemoryKube(Kube):
    def __init__(self, namespace: str = "default", cluster: str = "demo") -> None:
        # No API client: nothing here leaves the process.
        self.writes = 0
        self.namespace, self.cluster = namespace, cluster
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        self.writes += 1
        stored = self.objects[(body["kind"], body["metadata"]["namespace"], body["metadata"]["name"])] = {}
        return self._apply(stored, body)

    def patch(self, kind: str, namespace: str, name: str, patch: dict[str, Any], sub: str = "") -> dict[str, Any]:
        self.writes += 1
        if (kind, namespace, name) not in self.objects:
            raise ApiException(status=404, reason="Not Found")
        return self._apply(self.objects[(kind, namespace, name)], patch)

    @staticmethod
    def _apply(stored: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
        """A Secret's stringData is stored as data, as the API server does."""
        change = copy.deepcopy(change)
        text = change.pop("stringData", None)
        merge_patch(stored, change)
        if text is not None:
            stored["data"] = {
                **stored.get("data", {}),
                **{k: base64.b64encode(v.encode()).decode() for k, v in text.items()},
            }
        return copy.deepcopy(stored)

    def delete(self, kind: str, namespace: str, name: str, propagation: str | None = None) -> None:
        """Whatever `propagation` says, nothing else goes: no garbage collector here (an orphaning delete)."""
        self.writes += 1
        self.objects.pop((kind, namespace, name), None)

    def add_pod(self, ordinal: int, members: list[str] | None, ready: bool) -> None:
        """A member pod as the StatefulSet controller makes it and the kubelet reports it; `members`: its
        members annotation (None: none, as the template of a cluster changed in place has none)."""
        annotations = {MEMBERS_ANNOTATION: ",".join(members)} if members is not None else {}
        self.objects[("Pod", self.namespace, f"{self.cluster}-{ordinal}")] = {
            "kind": "Pod",
            "metadata": {
                "name": f"{self.cluster}-{ordinal}",
                "namespace": self.namespace,
                "labels": labels(self.cluster),
                "annotations": annotations,
            },
            "status": {
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                "containerStatuses": [{"started": True, "state": {"running": {}}}],
            },
        }

    def pods(self) -> dict[int, dict[str, Any]]:
        return {int(name.rsplit("-", 1)[1]): o for (k, _, name), o in sorted(self.objects.items()) if k == "Pod"}

    # Last: below this line `list` in an annotation would name this method, not the builtin.
    def list(self, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        wanted = dict(pair.split("=", 1) for pair in selector.split(","))
        return [
            copy.deepcopy(o)
            for (k, ns, _), o in sorted(self.objects.items())
            if k == kind and ns == namespace and wanted.items() <= (o["metadata"].get("labels") or {}).items()
        ]
