"""The Helm chart: lint, render, validate against the real API server, install, uninstall, and the
operator running with nothing but the chart's RBAC."""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from zot_operator.models import DEFAULT_IMAGE

from tests.support.control_plane import ControlPlane
from tests.support.kube_objects import KWOK_TOLERATION, kubeconfig
from tests.support.kubectl import Namespaces, create_secret, get, wait_established, wait_for
from tests.support.operators import operator_process
from tests.support.paths import REPO_ROOT, TOOLS_BIN
from tests.support.storage_driver import storage
from tests.support.zotclusters import (
    BY_RESTART,
    S3_EXAMPLE,
    apply_cluster,
    apply_document,
    example_cluster,
    wait_for_phase,
)

CHART = REPO_ROOT / "charts" / "zot-operator"
HELM = TOOLS_BIN / "helm"
RELEASE = "zo"
FULLNAME = "zo-zot-operator"

# Every documented value set to something other than its default.
ALL_VALUES: dict[str, Any] = {
    "image": {"repository": "registry.example/zot-operator", "tag": "9.9.9", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "pull"}],
    "replicaCount": 3,
    "watchNamespaces": ["team-a", "team-b"],
    "peering": {"enabled": True},
    "serviceAccount": {"create": True, "name": "custom-sa", "annotations": {"example.com/role": "x"}},
    "rbac": {"create": True},
    "healthPort": 9090,
    "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
    "podAnnotations": {"example.com/a": "b"},
    "podLabels": {"team": "registry"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [KWOK_TOLERATION],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}
                ]
            }
        }
    },
    "priorityClassName": "system-cluster-critical",
    "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prometheus"}},
    "zotCluster": {
        "enabled": True,
        "name": "from-values",
        "spec": {"replicas": 1, "tolerations": [KWOK_TOLERATION], "storage": {"local": {"storageClassName": "manual"}}},
    },
}

# What the operator may be granted, and nothing else: (apiGroup, resource) -> verbs.
ALLOWED: dict[tuple[str, str], set[str]] = {
    ("zot-operator.io", "zotclusters"): {"get", "list", "watch", "patch"},
    ("zot-operator.io", "zotclusters/status"): {"get", "patch"},
    ("", "configmaps"): {"get", "create", "patch"},
    ("", "services"): {"get", "create", "patch"},
    ("", "secrets"): {"get", "create", "patch"},
    ("apps", "statefulsets"): {"get", "create", "patch", "delete"},
    ("policy", "poddisruptionbudgets"): {"get", "create", "patch"},
    ("", "pods"): {"list", "delete", "patch"},
    ("", "persistentvolumeclaims"): {"list", "patch"},
    ("storage.k8s.io", "storageclasses"): {"get"},
    ("", "events"): {"create"},
    ("", "namespaces"): {"list", "watch"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    ("kopf.dev", "clusterkopfpeerings"): {"get", "list", "watch", "patch"},
    ("kopf.dev", "kopfpeerings"): {"get", "list", "watch", "patch"},
}


def helm(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    if not HELM.is_file():
        pytest.fail("helm is missing: run `bash hack/tools.sh go` (or `make tools`)")
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, check=check, timeout=120, env=env)


def template(tmp_path: Path, values: dict[str, Any] | None = None, *extra: str) -> list[dict[str, Any]]:
    argv = ["template", RELEASE, str(CHART), "--namespace", "zot-system", *extra]
    if values is not None:
        path = tmp_path / "values.json"
        path.write_text(json.dumps(values))
        argv += ["-f", str(path)]
    return [d for d in yaml.safe_load_all(helm(*argv).stdout) if d]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def test_lint_strict_with_default_and_every_value(tmp_path: Path) -> None:
    helm("lint", "--strict", str(CHART))
    path = tmp_path / "all.json"
    path.write_text(json.dumps(ALL_VALUES))
    helm("lint", "--strict", str(CHART), "-f", str(path))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": "two"}, "replicaCount"),
        ({"replicaCount": 0}, "replicaCount"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "watchNamespaces"),
        ({"serviceMonitr": {"enabled": True}}, "serviceMonitr"),
        # zotCluster.spec: the ZotCluster's own schema (from the CRD), unknown fields refused at any depth
        ({"zotCluster": {"enabled": True, "spec": {"replicaz": 3}}}, "replicaz"),
        ({"zotCluster": {"spec": {"storage": {"mode": "locl"}}}}, "/zotCluster/spec/storage/mode"),
        ({"zotCluster": {"spec": {"storage": {"local": {"sise": "1Gi"}}}}}, "sise"),
        ({"zotCluster": {"spec": {"replicas": 0}}}, "/zotCluster/spec/replicas"),
    ],
)
def test_bad_values_fail_before_anything_is_installed(tmp_path: Path, values: dict[str, Any], message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(values))
    result = helm("template", RELEASE, str(CHART), "-f", str(path), check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_crds_are_the_generated_files_and_helm_warns_of_nothing() -> None:
    # Copies, not links (Helm warns of each link on every command), kept equal by `make generate`.
    for name in ("zotclusters.yaml", "kopf-peering.yaml"):
        copy = CHART / "crds" / name
        assert not copy.is_symlink() and copy.read_text() == (REPO_ROOT / "crds" / name).read_text()
    rendered = helm("template", RELEASE, str(CHART), "--namespace", "zot-system")
    assert rendered.stderr == ""


def test_every_example_spec_passes_the_chart_schema(tmp_path: Path) -> None:
    # The schema refuses typos, not what users write: each shipped example's spec as zotCluster.spec.
    for example in sorted((REPO_ROOT / "examples").glob("zotcluster*.yaml")):
        cluster = next(d for d in yaml.safe_load_all(example.read_text()) if d and d.get("kind") == "ZotCluster")
        objects = template(tmp_path, {"zotCluster": {"enabled": True, "spec": cluster["spec"]}})
        (made,) = by_kind(objects, "ZotCluster")
        assert made["spec"] == cluster["spec"], example.name


def test_default_render_wires_the_deployment_as_documented(tmp_path: Path) -> None:
    objects = template(tmp_path)
    (deployment,) = by_kind(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["replicas"] == 2
    assert container["image"] == DEFAULT_IMAGE
    assert container["command"] == ["zot-operator"]
    assert container["args"] == ["run", "--liveness=http://0.0.0.0:8080/healthz", f"--peering={FULLNAME}"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert [p["metadata"]["name"] for p in by_kind(objects, "ClusterKopfPeering")] == [FULLNAME]
    assert not by_kind(objects, "Role") and not by_kind(objects, "ServiceMonitor")


def test_watch_namespaces_gives_roles_only_there(tmp_path: Path) -> None:
    objects = template(tmp_path, ALL_VALUES)
    roles = by_kind(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    (cluster_role,) = by_kind(objects, "ClusterRole")
    # Cluster-wide, only what kopf needs to follow CRDs and the StorageClasses (whether a claim may grow): no
    # access to any namespaced object.
    assert [(r["apiGroups"], r["resources"]) for r in cluster_role["rules"]] == [
        (["apiextensions.k8s.io"], ["customresourcedefinitions"]),
        (["storage.k8s.io"], ["storageclasses"]),
    ]
    (deployment,) = by_kind(objects, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    assert sorted(p["metadata"]["namespace"] for p in by_kind(objects, "KopfPeering")) == ["team-a", "team-b"]


def granted_rules(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for o in objects if o["kind"] in ("ClusterRole", "Role") for rule in o["rules"]]


@pytest.mark.parametrize("values", [None, ALL_VALUES], ids=["cluster-wide", "namespaced"])
def test_rbac_grants_nothing_beyond_the_allow_list(tmp_path: Path, values: dict[str, Any] | None) -> None:
    granted: list[str] = []
    for rule in granted_rules(template(tmp_path, values)):
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                verbs = set(rule["verbs"])
                assert "*" not in verbs and group != "*" and resource != "*"
                assert verbs <= ALLOWED[(group, resource)], (group, resource, verbs)
                granted += [f"{group or 'core'}/{resource}: {verb}" for verb in sorted(verbs)]
    print("\n".join(sorted(set(granted))))  # the list a reviewer reads with -s
    assert not any(g.startswith("core/secrets") and g.endswith(("list", "watch", "delete")) for g in granted)


@pytest.fixture(scope="module")
def crds(control_plane: ControlPlane) -> None:
    for name in ("zotclusters.yaml", "kopf-peering.yaml"):
        control_plane.kubectl("apply", "-f", str(REPO_ROOT / "crds" / name))
    for crd in ("zotclusters.zot-operator.io", "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"):
        wait_established(control_plane, crd)


def test_rendered_objects_validate_against_the_api_server(
    control_plane: ControlPlane, crds: None, namespaces: Namespaces, tmp_path: Path
) -> None:
    cp = control_plane
    for namespace in ("zot-system", "team-a", "team-b"):
        namespaces.create(namespace, htpasswd=False, exist_ok=True)
    for values in (None, ALL_VALUES):
        # The API server has no prometheus-operator here: ServiceMonitor is checked by its shape above.
        objects = [o for o in template(tmp_path, values) if o["kind"] != "ServiceMonitor"]
        path = tmp_path / "rendered.yaml"
        path.write_text(yaml.safe_dump_all(objects))
        result = cp.kubectl("apply", "--dry-run=server", "-f", str(path), check=False)
        assert result.returncode == 0, result.stderr


def test_install_and_uninstall_keep_only_the_crds(
    control_plane: ControlPlane, crds: None, namespaces: Namespaces, tmp_path: Path
) -> None:
    cp = control_plane
    env = {
        **cp.env,
        "HELM_CACHE_HOME": str(tmp_path / "cache"),
        "HELM_CONFIG_HOME": str(tmp_path / "config"),
        "HELM_DATA_HOME": str(tmp_path / "data"),
    }
    namespace = namespaces.adopt("zot-helm")  # helm creates it
    helm("install", RELEASE, str(CHART), "--namespace", namespace, "--create-namespace", "--wait=false", env=env)
    deployment = get(cp, "-n", namespace, "deployment", FULLNAME)
    (expected,) = by_kind(template(tmp_path, None, "--namespace", namespace), "Deployment")
    live = deployment["spec"]["template"]["spec"]["containers"][0]
    want = expected["spec"]["template"]["spec"]["containers"][0]
    for key in ("image", "command", "args", "securityContext", "resources", "ports", "volumeMounts"):
        assert _without_defaults(live[key]) == _without_defaults(want[key]), key
    assert deployment["spec"]["replicas"] == expected["spec"]["replicas"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == FULLNAME
    assert get(cp, "clusterrole", FULLNAME) and get(cp, "clusterkopfpeering", FULLNAME)
    helm("uninstall", RELEASE, "--namespace", namespace, "--wait", env=env)
    for args in (
        ("-n", namespace, "deployment", FULLNAME),
        ("-n", namespace, "serviceaccount", FULLNAME),
        ("clusterrole", FULLNAME),
        ("clusterrolebinding", FULLNAME),
        ("clusterkopfpeering", FULLNAME),
    ):
        wait_for(f"{args[-2]} removed", lambda a=args: get(cp, *a) is None, timeout=30)  # type: ignore[misc]
    for crd in ("zotclusters.zot-operator.io", "clusterkopfpeerings.kopf.dev"):
        assert get(cp, "crd", crd), f"{crd} must survive uninstall (Helm never deletes CRDs)"


def _without_defaults(value: Any) -> Any:
    # The API server adds defaults (protocol TCP, ...); compare what the chart wrote.
    if isinstance(value, dict):
        return {k: _without_defaults(v) for k, v in value.items() if k not in ("protocol",)}
    return value


# The lines that accompany any 403 in a log (the client's traceback), whatever refused it.
_GENERIC_403 = ("Reason: Forbidden", "raise ForbiddenException", "ForbiddenException: (403)")


def _denials(log: str) -> list[str]:
    """The log's lines about a refusal for want of a permission. Not a 403 NamespaceTerminating: the chart's
    operators watch every namespace of the shared API server, and reconcile the ZotClusters of other test
    modules too, whose namespaces are deleted with the clusters in them (creating a child there is refused)."""
    lines = [line for line in log.splitlines() if "forbidden" in line.lower()]
    bodies = [line for line in lines if "HTTP response body" in line]
    denied = [line for line in bodies if "NamespaceTerminating" not in line]
    others = [line for line in lines if line not in bodies and not any(g in line for g in _GENERIC_403)]
    # A client's traceback lines say nothing of why: they count unless every refusal was a namespace's end.
    generic = [line for line in lines if line not in bodies and line not in others]
    return denied + others + (generic if denied or not bodies else [])


_RBAC_SYSTEMS = itertools.count()


@pytest.fixture
def operators_with_chart_rbac(
    control_plane: ControlPlane, crds: None, namespaces: Namespaces, tmp_path: Path
) -> Iterator[list[Path]]:
    """The operator as the chart runs it: its replicas with the chart's arguments, ServiceAccount,
    (Cluster)Role and peering object, authenticated with a token of that ServiceAccount and nothing
    else. Yields the replicas' logs. (Its `namespaces` outlive the replicas: they are deleted after.)"""
    cp = control_plane
    # A namespace of its own each time: the last test's is still being deleted (a ServiceAccount cannot be made there).
    namespace = namespaces.create(f"zot-rbac-system-{next(_RBAC_SYSTEMS)}", htpasswd=False)
    objects = [o for o in template(tmp_path, None, "--namespace", namespace) if o["kind"] != "Deployment"]
    path = tmp_path / "rbac.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    cp.kubectl("apply", "-f", str(path))
    token = cp.kubectl("-n", namespace, "create", "token", FULLNAME, "--duration=1h").stdout.strip()
    config = tmp_path / "operator.kubeconfig"
    config.write_text(json.dumps(kubeconfig(cp.server, cp.ca_file, "operator", token)))
    (deployment,) = by_kind(template(tmp_path, None, "--namespace", namespace), "Deployment")
    # The chart's arguments, but liveness on a free loopback port.
    args = [
        a
        for a in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        if a != "run" and not a.startswith("--liveness")
    ]
    logs = [tmp_path / f"operator-{i}.log" for i in range(deployment["spec"]["replicas"])]
    try:
        with contextlib.ExitStack() as stack:
            for log in logs:
                stack.enter_context(operator_process(config, log, *args))
            yield logs
    finally:
        forbidden = [line for log in logs if log.exists() for line in _denials(log.read_text())]
        cp.kubectl("delete", "-f", str(path), "--wait=false", check=False)
        assert not forbidden, "the chart's RBAC is missing a permission:\n" + "\n".join(forbidden[:10])


def test_operator_reconciles_with_only_the_charts_rbac(
    control_plane: ControlPlane, namespaces: Namespaces, operators_with_chart_rbac: list[Path]
) -> None:
    cp, ns = control_plane, namespaces.create("zot-rbac", htpasswd=False)
    # Shared storage: every kind of child and both credential Secrets, and no volumes to provision.
    create_secret(cp, ns, "registry-s3", accessKey="a", secretKey="b")
    create_secret(cp, ns, "registry-redis", url="redis://:p@r:6379")
    document = example_cluster(ns, example=S3_EXAMPLE)
    document["spec"]["rebalance"] = BY_RESTART  # the resize below restarts KWOK's pods, which run no registry
    apply_document(cp, document, "rbac-cluster.yaml")
    zc = wait_for_phase(cp, ns, "Running", timeout=120)
    assert zc["status"]["readyMembers"] == 3
    for kind, name in (
        ("configmap", "demo-config"),
        ("service", "demo"),
        ("service", "demo-members"),
        ("statefulset", "demo"),
        ("poddisruptionbudget", "demo"),
        ("secret", "demo-tls"),
        ("secret", "demo-hashkey"),
    ):
        assert get(cp, "-n", ns, kind, name), f"{kind}/{name} missing"
    # A membership change: the operator must be allowed to delete pods to restart the members.
    cp.kubectl("-n", ns, "patch", "zc", "demo", "--type=merge", "-p", '{"spec": {"replicas": 2}}')
    wait_for(
        "2 members",
        lambda: (
            len(json.loads(get(cp, "-n", ns, "configmap", "demo-config")["data"]["config.json"])["cluster"]["members"])
            == 2
        ),
        timeout=60,
    )
    wait_for(
        "Restarting event",
        lambda: any(e["reason"] == "Restarting" for e in get(cp, "-n", ns, "events")["items"]),
        timeout=60,
    )
    cp.kubectl("-n", ns, "delete", "zc", "demo")
    # Two replicas, one peering object: both are listed there, with distinct priorities, and only one acted
    # while the other stood by (kopf freezes every operator of a tie, which would leave the cluster unserved).
    peers = get(cp, "clusterkopfpeering", FULLNAME).get("status") or {}
    assert len({peer["priority"] for peer in peers.values()}) == len(operators_with_chart_rbac) == 2
    acted = [log for log in operators_with_chart_rbac if "created StatefulSet demo" in log.read_text()]
    assert len(acted) == 1, [log.read_text()[-2000:] for log in operators_with_chart_rbac]


def test_volume_expansion_with_only_the_charts_rbac(
    control_plane: ControlPlane, namespaces: Namespaces, operators_with_chart_rbac: list[Path]
) -> None:
    """What a larger volume size takes: reading the claims and their StorageClass, growing the claims, deleting
    the StatefulSet to make it again (the fixture fails the test on any permission refused)."""
    cp, ns = control_plane, namespaces.create("zot-rbac-volumes")

    def storage_request(spec: dict[str, Any]) -> str:
        return str(spec["resources"]["requests"]["storage"])

    def sizes() -> tuple[str, str] | None:
        claim, sts = get(cp, "-n", ns, "pvc", "data-demo-0"), get(cp, "-n", ns, "statefulset", "demo")
        if not claim or not sts or claim["status"].get("phase") != "Bound":
            return None
        return storage_request(claim["spec"]), storage_request(sts["spec"]["volumeClaimTemplates"][0]["spec"])

    with storage(cp, "zot-rbac-grow", expandable=True, sizes=["1Gi"]):
        apply_cluster(cp, ns, replicas=1, storage={"local": {"size": "1Gi", "storageClassName": "zot-rbac-grow"}})
        wait_for("the claim bound", lambda: sizes() == ("1Gi", "1Gi"), timeout=60)
        grow = {"spec": {"storage": {"local": {"size": "2Gi"}}}}
        cp.kubectl("-n", ns, "patch", "zc", "demo", "--type=merge", "-p", json.dumps(grow))
        wait_for("the claim and the StatefulSet at 2Gi", lambda: sizes() == ("2Gi", "2Gi"), timeout=60)
        cp.kubectl("-n", ns, "delete", "zc", "demo")
