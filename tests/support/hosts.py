"""Kubernetes member names resolved to loopback addresses in processes the tests start.

Member <i> of a cluster runs on 127.0.0.<i + 1> (one port for all, as on separate hosts). The test
resolver (tests/operator/resolver/sitecustomize.py, put on PYTHONPATH) makes a process resolve the
names the operator writes, `<name>-<i>.<name>-members.<namespace>.svc.cluster.local`, to those
addresses: by a fixed table (ZOT_TEST_HOSTS) or, for a process that outlives the namespaces it sees,
by a pattern (ZOT_TEST_HOST_PATTERN).
"""

from __future__ import annotations

import json
import os

from tests.support.paths import REPO_ROOT

RESOLVER_DIR = REPO_ROOT / "tests" / "operator" / "resolver"
# Any cluster's member names in any namespace; `ordinal` gives the address (the resolver's contract).
MEMBER_HOST_PATTERN = r"(?P<name>[a-z0-9-]+)-(?P<ordinal>\d+)\.(?P=name)-members\.[a-z0-9-]+\.svc\.cluster\.local"


def loopback(ordinal: int) -> str:
    return f"127.0.0.{ordinal + 1}"


def member_host(name: str, namespace: str, ordinal: int, cluster_domain: str = "cluster.local") -> str:
    """Member `ordinal`'s DNS name, as operator/render.py member_host writes it."""
    return f"{name}-{ordinal}.{name}-members.{namespace}.svc.{cluster_domain}"


def resolver_env(hosts: dict[str, str] | None = None, pattern: str | None = None) -> dict[str, str]:
    """Environment additions for a child process that resolves `hosts` ({name: address}) and names
    matching `pattern` through the test resolver. PYTHONPATH keeps what this process has (so the child
    imports the same packages, e.g. a worktree's shims) after the resolver folder."""
    inherited = os.environ.get("PYTHONPATH")
    env = {"PYTHONPATH": os.pathsep.join([str(RESOLVER_DIR), *([inherited] if inherited else [])])}
    if hosts:
        env["ZOT_TEST_HOSTS"] = json.dumps(hosts)
    if pattern:
        env["ZOT_TEST_HOST_PATTERN"] = pattern
    return env


def operator_hosts_env() -> dict[str, str]:
    """For an operator that talks to the members of every cluster it reconciles, in namespaces made
    after it started: member names resolve by MEMBER_HOST_PATTERN to the addresses a PodRunner uses."""
    return resolver_env(pattern=MEMBER_HOST_PATTERN)
