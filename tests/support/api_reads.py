"""`kubectl get -o json` without kubectl: the same request to the API server, over one kept-open
connection per control plane.

Tests poll the API server every half second in their waits; as a kubectl process each read cost
about 0.1 CPU-s (a Go binary starting, reading its discovery cache), and reads were a thousand
kubectl runs per `make test`. What a test writes still goes through kubectl, as a user's would.

Resource names are resolved as kubectl resolves them, from the API server's discovery: plural,
singular, short names and kind (`zc`, `sts`, `pod`, `crd`...). Discovery is read once per control
plane and again when a name is not found (a CRD installed since).
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

import httpx

from tests.support.control_plane import ControlPlane


@dataclass(frozen=True)
class Resource:
    prefix: str  # /api/v1 or /apis/<group>/<version>
    plural: str
    namespaced: bool

    def path(self, namespace: str | None, name: str | None) -> str:
        where = f"/namespaces/{namespace}" if self.namespaced and namespace else ""
        return f"{self.prefix}{where}/{self.plural}" + (f"/{name}" if name else "")


class ApiReader:
    def __init__(self, cp: ControlPlane) -> None:
        self.http = cp.http()
        self.resources: dict[str, Resource] = {}
        self.lock = threading.Lock()

    def _discover(self) -> None:
        prefixes = ["/api/v1"]
        groups = self.http.get("/apis")
        groups.raise_for_status()
        prefixes += [f"/apis/{g['preferredVersion']['groupVersion']}" for g in groups.json()["groups"]]
        found: dict[str, Resource] = {}
        # Later groups do not take a name an earlier one has (kubectl prefers the core group too).
        for prefix in prefixes:
            listing = self.http.get(prefix)
            if listing.status_code != 200:
                continue  # an aggregated API that is not serving: kubectl skips it as well
            for entry in listing.json()["resources"]:
                if "/" in entry["name"]:
                    continue  # a subresource (pods/status)
                resource = Resource(prefix, entry["name"], entry["namespaced"])
                names = [entry["name"], entry.get("singularName"), entry["kind"], *entry.get("shortNames", [])]
                for alias in filter(None, names):
                    found.setdefault(alias.lower(), resource)
        self.resources = found

    def resource(self, kind: str) -> Resource | None:
        with self.lock:
            if kind.lower() not in self.resources:
                self._discover()
            return self.resources.get(kind.lower())

    def get(self, args: tuple[str, ...]) -> Any:
        namespace, selector, positional = _parse(args)
        resource = self.resource(positional[0])
        if resource is None:
            return None  # kubectl: "the server doesn't have a resource type"
        name = positional[1] if len(positional) > 1 else None
        params = {"labelSelector": selector} if selector else {}
        path = resource.path(namespace or "default", name)
        try:
            response = self.http.get(path, params=params)
            # As client-go (kubectl) does: an answer with Retry-After (429 while a new CRD's storage
            # starts, say) is waited out and asked again, up to 10 times.
            for _ in range(10):
                if "Retry-After" not in response.headers or response.status_code < 429:
                    break
                time.sleep(min(float(response.headers["Retry-After"] or 1), 1.0))
                response = self.http.get(path, params=params)
        except httpx.TransportError:
            return None  # the API server is not answering: kubectl would have failed too
        return _as_kubectl_prints(response.json()) if response.status_code == 200 else None


def _as_kubectl_prints(found: dict[str, Any]) -> dict[str, Any]:
    """kubectl leaves managedFields out (--show-managed-fields=false)."""
    for item in [found, *found.get("items", [])]:
        item.get("metadata", {}).pop("managedFields", None)
    return found


def _parse(args: tuple[str, ...]) -> tuple[str | None, str | None, list[str]]:
    """(namespace, label selector, [kind, name?]) of `get` arguments as tests pass them to kubectl."""
    namespace = selector = None
    positional: list[str] = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg in ("-n", "--namespace"):
            namespace = rest.pop(0)
        elif arg in ("-l", "--selector"):
            selector = rest.pop(0)
        elif arg.startswith("-"):
            raise ValueError(f"get: option {arg} is not supported here; use cp.kubectl")
        else:
            positional.extend(arg.split("/", 1))
    if not 1 <= len(positional) <= 2:
        raise ValueError(f"get: expected KIND [NAME], got {positional}")
    return namespace, selector, positional


_readers: weakref.WeakKeyDictionary[ControlPlane, ApiReader] = weakref.WeakKeyDictionary()
_readers_lock = threading.Lock()


def api_get(cp: ControlPlane, *args: str) -> Any:
    """What `kubectl get -o json ARGS` prints, parsed; None where kubectl fails (not found)."""
    with _readers_lock:
        reader = _readers.get(cp)
        if reader is None:
            reader = _readers[cp] = ApiReader(cp)
    return reader.get(args)
