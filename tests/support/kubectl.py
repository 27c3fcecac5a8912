"""The operator tests' view of a test API server through kubectl: read an object as JSON, wait until
a check holds, and namespaces that are deleted again when the test (or module) that made them ends."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

import bcrypt

from tests.support.api_reads import api_get
from tests.support.control_plane import ControlPlane

# The password of the `admin` user in a namespace's demo-htpasswd Secret.
ADMIN_PASSWORD = "change-me"


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60, interval: float = 0.5) -> Any:
    """Polls `check` until it returns something truthy (and returns that); a failing kubectl counts as
    not yet. Raises AssertionError naming `what` and the last answer after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except subprocess.CalledProcessError as err:
            last = err.stderr
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {str(last)[:500]})")


def wait_established(cp: ControlPlane, crd: str, timeout: float = 60) -> None:
    """Until the CustomResourceDefinition `crd` is Established. Polled, not `kubectl wait`: that
    failed at once (exit 1, its message lost) for a CRD applied a moment before on a fresh API
    server in a clean-clone run, which cost a whole module its setup; a CRD that was just created
    has `status.conditions: null`, which this poll met too (it is taken as not yet)."""

    def established() -> bool:
        found = get(cp, "crd", crd)
        # Right after it is created, a CRD's status.conditions is null.
        conditions = ((found or {}).get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)

    wait_for(f"CRD {crd} to be Established", established, timeout=timeout)


def get(cp: ControlPlane, *args: str) -> Any:
    """`kubectl get -o json ARGS` parsed, or None when kubectl would fail (not found); asked of the
    API server directly (api_reads.py: polling through kubectl cost 0.1 CPU-s a read)."""
    return api_get(cp, *args)


def create_secret(cp: ControlPlane, namespace: str, name: str, **values: str) -> None:
    """`kubectl create secret generic NAME --from-literal=KEY=VALUE...` in `namespace`."""
    cp.kubectl(
        "-n", namespace, "create", "secret", "generic", name, *(f"--from-literal={k}={v}" for k, v in values.items())
    )


def merge_patch(cp: ControlPlane, namespace: str, kind: str, name: str, patch: dict[str, Any]) -> None:
    """`kubectl patch KIND NAME --type=merge -p PATCH` in `namespace`, PATCH given as JSON."""
    cp.kubectl("-n", namespace, "patch", kind, name, "--type=merge", "-p", json.dumps(patch))


def absent(cp: ControlPlane, *args: str) -> bool:
    return get(cp, *args) is None


class Namespaces:
    """Namespaces made (or adopted) through it, all deleted by `delete_all` (without waiting for the
    namespace controller to empty them: every test uses names of its own)."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self.names: list[str] = []

    def create(self, name: str, htpasswd: bool = True, exist_ok: bool = False) -> str:
        """Namespace `name`; with `htpasswd`, a demo-htpasswd Secret for the user admin (ADMIN_PASSWORD)."""
        if exist_ok and get(self.cp, "namespace", name) is not None:
            self.adopt(name)
            return name
        self.cp.kubectl("create", "namespace", name)
        self.adopt(name)
        if htpasswd:
            entry = f"admin:{bcrypt.hashpw(ADMIN_PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
            self.cp.kubectl(
                "-n", name, "create", "secret", "generic", "demo-htpasswd", f"--from-literal=htpasswd={entry}"
            )
        return name

    def adopt(self, name: str) -> str:
        """Deletes `name` at the end too (a namespace made by someone else, e.g. helm --create-namespace)."""
        if name not in self.names:
            self.names.append(name)
        return name

    def __enter__(self) -> Namespaces:
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete_all()

    def delete_all(self) -> None:
        for name in reversed(self.names):
            self.cp.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
        self.names.clear()
