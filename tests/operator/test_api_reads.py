"""The tests' reads of the API server (tests.support.api_reads) answer what `kubectl get -o json`
prints for the same arguments, since every wait in the operator tests relies on them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.api_reads import api_get
from tests.support.control_plane import ControlPlane
from tests.support.kubectl import Namespaces


def kubectl_get(cp: ControlPlane, *args: str) -> Any:
    result = cp.kubectl("get", "-o", "json", *args, check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def names(found: Any) -> list[str]:
    return [item["metadata"]["name"] for item in found["items"]]


@pytest.mark.usefixtures("crd")
def test_reads_answer_what_kubectl_prints(control_plane: ControlPlane, namespaces: Namespaces) -> None:
    cp = control_plane
    ns = namespaces.create("api-reads", htpasswd=False)
    for index in range(3):
        cp.kubectl("-n", ns, "create", "configmap", f"cm-{index}", f"--from-literal=index={index}")
        cp.kubectl("-n", ns, "label", "configmap", f"cm-{index}", f"odd={index % 2}")
    for args in [
        ("-n", ns, "configmap", "cm-1"),
        ("-n", ns, "cm", "cm-2"),  # a short name
        ("namespace", ns),  # cluster-scoped
        ("crd", "zotclusters.zot-operator.io"),  # another group, by short name
    ]:
        ours, theirs = api_get(cp, *args), kubectl_get(cp, *args)
        assert ours is not None and ours == theirs, args
    ours, theirs = (
        api_get(cp, "-n", ns, "configmaps", "-l", "odd=0"),
        kubectl_get(cp, "-n", ns, "configmaps", "-l", "odd=0"),
    )
    assert names(ours) == names(theirs) == ["cm-0", "cm-2"]
    assert names(api_get(cp, "-n", ns, "zc")) == names(kubectl_get(cp, "-n", ns, "zc")) == []  # a CRD's kind
    # Where kubectl fails, None: an object that is not there, a kind the server does not have.
    for args in [("-n", ns, "configmap", "missing"), ("-n", ns, "nosuchkind")]:
        assert kubectl_get(cp, *args) is None and api_get(cp, *args) is None, args
