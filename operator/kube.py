"""The few API calls the operator makes, and the rule that keeps them few: write only what differs."""

from __future__ import annotations

import json
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from .annotations import RESTARTED_AT_ANNOTATION
from .statefulset import MEMBERS_ANNOTATION, SECRETS_ANNOTATION

# kind -> (api prefix, plural)
RESOURCES: dict[str, tuple[str, str]] = {
    "ConfigMap": ("/api/v1", "configmaps"),
    "Secret": ("/api/v1", "secrets"),
    "Service": ("/api/v1", "services"),
    "Pod": ("/api/v1", "pods"),
    "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims"),
    "StorageClass": ("/apis/storage.k8s.io/v1", "storageclasses"),
}
# Kinds without a namespace: their namespace argument is ignored (the callers pass "").
CLUSTER_SCOPED = frozenset({"StorageClass"})
# Fields of a StatefulSet's spec that the API server refuses to change.
STATEFULSET_IMMUTABLE = ("selector", "serviceName", "podManagementPolicy", "volumeClaimTemplates")
# What is rendered only for some specs: when it is no longer rendered, the patch removes it (a merge
# patch keeps what it does not mention; an init container left behind would mount a volume that is gone).
STATEFULSET_OPTIONAL = (
    ("spec", "template", "spec", "initContainers"),
    ("spec", "template", "metadata", "annotations", SECRETS_ANNOTATION),
    # Only with membership changes by restart: in place, the operator annotates the pods themselves.
    ("spec", "template", "metadata", "annotations", MEMBERS_ANNOTATION),
    # Only while the ZotCluster has the annotation: removing it is a new template too (one more roll).
    ("spec", "template", "metadata", "annotations", RESTARTED_AT_ANNOTATION),
)


def is_subset(desired: Any, actual: Any) -> bool:
    """True when everything `desired` says is already in `actual` (the server adds defaults we ignore)."""
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(k in actual and is_subset(v, actual[k]) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(actual, list)
            and len(desired) == len(actual)
            and all(is_subset(d, a) for d, a in zip(desired, actual, strict=True))
        )
    if isinstance(desired, int) and isinstance(actual, str):
        return str(desired) == actual
    return bool(desired == actual)


def _left_over(
    wanted: dict[str, Any], existing: dict[str, Any], optional: tuple[tuple[str, ...], ...]
) -> list[tuple[str, ...]]:
    """The optional paths that `existing` has and `wanted` does not."""
    found = []
    for path in optional:
        want: Any = wanted
        have: Any = existing
        for key in path[:-1]:
            want = want.get(key) if isinstance(want, dict) else None
            have = have.get(key) if isinstance(have, dict) else None
        if isinstance(have, dict) and path[-1] in have and not (isinstance(want, dict) and path[-1] in want):
            found.append(path)
    return found


def _comparable(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """What of a desired object is ours to keep true."""
    meta = body["metadata"]
    kept: dict[str, Any] = {"metadata": {"labels": meta.get("labels", {})}}
    if meta.get("annotations"):
        kept["metadata"]["annotations"] = meta["annotations"]
    if meta.get("ownerReferences"):
        kept["metadata"]["ownerReferences"] = meta["ownerReferences"]
    for key in ("spec", "data"):
        if key in body:
            kept[key] = body[key]
    return kept


class Kube:
    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self.writes = 0  # counted for the "zero writes per unchanged check" promise

    def _path(self, kind: str, namespace: str, name: str | None = None, sub: str = "") -> str:
        prefix, plural = RESOURCES[kind]
        path = f"{prefix}/{plural}" if kind in CLUSTER_SCOPED else f"{prefix}/namespaces/{namespace}/{plural}"
        return f"{path}/{name}{sub}" if name else path

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        query: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any]:
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        response: Any
        if hasattr(self.client, "param_serialize"):  # the client's generator since 37
            serialized = self.client.param_serialize(
                method, path, query_params=query or [], body=body, header_params=headers, auth_settings=["BearerToken"]
            )
            response = self.client.call_api(
                serialized[0], serialized[1], header_params=serialized[2], body=serialized[3]
            )
        else:  # up to 36, which the S3 client's python-dateutil pin keeps us on
            try:
                response = self.client.call_api(
                    path,
                    method,
                    query_params=query or [],
                    header_params=headers,
                    body=body,
                    auth_settings=["BearerToken"],
                    _preload_content=False,
                )
            except ApiException as err:
                if isinstance(err.body, bytes):
                    err.body = err.body.decode(errors="replace")
                raise
        data = response.read() if hasattr(response, "read") else response.data
        if response.status >= 400:
            raise ApiException(status=response.status, reason=response.reason, body=data.decode(errors="replace"))
        return json.loads(data) if data else {}

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", self._path(kind, namespace, name))
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def list(self, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._call(
            "GET", self._path(kind, namespace), query=[("labelSelector", selector)]
        ).get("items", [])
        return items

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        self.writes += 1
        return self._call("POST", self._path(body["kind"], body["metadata"]["namespace"]), body)

    def patch(self, kind: str, namespace: str, name: str, patch: dict[str, Any], sub: str = "") -> dict[str, Any]:
        self.writes += 1
        return self._call("PATCH", self._path(kind, namespace, name, sub), patch, "application/merge-patch+json")

    def delete(self, kind: str, namespace: str, name: str, propagation: str | None = None) -> None:
        """`propagation` "Orphan": the object goes, what it owns stays (`kubectl delete --cascade=orphan`)."""
        self.writes += 1
        options = None
        if propagation:
            options = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        try:
            self._call("DELETE", self._path(kind, namespace, name), options)
        except ApiException as err:
            if err.status != 404:
                raise

    def ensure(self, body: dict[str, Any]) -> str:
        """Create the object, or patch what differs; returns "created", "updated" or "" (nothing written)."""
        kind, meta = body["kind"], body["metadata"]
        existing = self.get(kind, meta["namespace"], meta["name"])
        if existing is None:
            self.create(body)
            return "created"
        wanted = _comparable(kind, body)
        left_over: list[tuple[str, ...]] = []
        if kind == "StatefulSet":
            wanted["spec"] = {k: v for k, v in wanted["spec"].items() if k not in STATEFULSET_IMMUTABLE}
            left_over = _left_over(wanted, existing, STATEFULSET_OPTIONAL)
        if is_subset(wanted, existing) and not left_over:
            return ""
        if left_over:
            wanted = json.loads(json.dumps(wanted))  # a copy: `body` stays as rendered
        for path in left_over:  # null removes a key in a merge patch
            node = wanted
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = None
        self.patch(kind, meta["namespace"], meta["name"], wanted)
        return "updated"
