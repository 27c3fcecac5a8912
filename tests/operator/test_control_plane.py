"""The control plane fixture does what the operator tests rely on.

Real kube-apiserver + etcd + kube-controller-manager + kube-scheduler, KWOK for the nodes: the
StatefulSet controller creates and recreates pods, the scheduler binds them, KWOK makes them
Running and Ready, the garbage collector follows owner references, RBAC and ServiceAccount tokens
behave as in a cluster.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.control_plane import ControlPlane
from tests.support.kube_objects import FAKE_NODE_TAINT, KWOK_TOLERATION

T = TypeVar("T")
WAIT = 60.0


def wait_for(what: str, check: Callable[[], T | None], timeout: float = WAIT, interval: float = 0.2) -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def as_json(kube: client.ApiClient, obj: object) -> dict[str, Any]:
    """An API object as the server shows it (camelCase keys); the models type every field Optional."""
    result: dict[str, Any] = kube.sanitize_for_serialization(obj)
    return result


def is_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []
    )


def gone(read: Callable[[], object]) -> Callable[[], bool]:
    """A check that is true once `read` answers 404."""

    def check() -> bool:
        try:
            read()
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    return check


def statefulset(name: str, replicas: int) -> client.V1StatefulSet:
    labels = {"app": name}
    return client.V1StatefulSet(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1StatefulSetSpec(
            replicas=replicas,
            service_name=name,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    # Never pulled: KWOK plays the kubelet.
                    containers=[client.V1Container(name="main", image="registry.invalid/fake:1")],
                    tolerations=[client.V1Toleration(**KWOK_TOLERATION)],
                    termination_grace_period_seconds=1,
                ),
            ),
        ),
    )


def ready_pods(kube: client.ApiClient, namespace: str, app: str, count: int) -> Callable[[], list[dict[str, Any]]]:
    """A check: exactly `count` pods of `app`, all Running and Ready, none being deleted."""
    core = client.CoreV1Api(kube)

    def check() -> list[dict[str, Any]]:
        pods = as_json(kube, core.list_namespaced_pod(namespace, label_selector=f"app={app}"))["items"]
        live = [p for p in pods if "deletionTimestamp" not in p["metadata"] and is_ready(p)]
        return live if len(live) == count == len(pods) else []

    return check


@pytest.fixture
def namespace(kube: client.ApiClient) -> Iterator[str]:
    core = client.CoreV1Api(kube)
    name = f"cp-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # Pods need the namespace's `default` ServiceAccount (ServiceAccount admission).
    wait_for(f"ServiceAccount {name}/default", lambda: core.list_namespaced_service_account(name).items)
    yield name
    core.delete_namespace(name)


def test_fake_nodes_are_ready(control_plane: ControlPlane, kube: client.ApiClient) -> None:
    assert control_plane.startup_seconds is not None
    nodes = {n["metadata"]["name"]: n for n in as_json(kube, client.CoreV1Api(kube).list_node())["items"]}
    assert sorted(nodes) == control_plane.node_names
    for name, node in nodes.items():
        assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
        assert node["metadata"]["labels"]["kubernetes.io/hostname"] == name
        assert node["spec"]["taints"] == [FAKE_NODE_TAINT]
        assert node["status"]["allocatable"] == {"cpu": "32", "memory": "256Gi", "pods": "110"}
        assert any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
    assert as_json(kube, client.VersionApi(kube).get_code())["gitVersion"].startswith("v1.35.")


def test_statefulset_pods_run_and_are_recreated(kube: client.ApiClient, namespace: str) -> None:
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    apps.create_namespaced_stateful_set(namespace, statefulset("web", 2))

    pods = wait_for("2 Running and Ready pods", ready_pods(kube, namespace, "web", 2))
    assert sorted(p["metadata"]["name"] for p in pods) == ["web-0", "web-1"]
    assert all(p["spec"]["nodeName"].startswith("kwok-node-") for p in pods)  # bound by the scheduler
    assert all(p["status"]["podIP"] for p in pods)  # KWOK hands out pod IPs

    def sts_ready() -> bool:
        sts = as_json(kube, apps.read_namespaced_stateful_set(namespace=namespace, name="web"))
        return bool(sts["status"].get("readyReplicas") == 2)

    wait_for("StatefulSet status readyReplicas=2", sts_ready)

    old_uid = as_json(kube, core.read_namespaced_pod(namespace=namespace, name="web-0"))["metadata"]["uid"]
    core.delete_namespaced_pod(namespace=namespace, name="web-0")

    def recreated() -> dict[str, Any] | None:
        try:
            pod = as_json(kube, core.read_namespaced_pod(namespace=namespace, name="web-0"))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return pod if pod["metadata"]["uid"] != old_uid and is_ready(pod) else None

    new = wait_for("web-0 recreated by the StatefulSet controller, Running and Ready", recreated)
    assert new["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet"


def test_garbage_collector_follows_owner_references(kube: client.ApiClient, namespace: str) -> None:
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    sts = as_json(kube, apps.create_namespaced_stateful_set(namespace, statefulset("owner", 1)))
    wait_for("1 Running and Ready pod", ready_pods(kube, namespace, "owner", 1))
    owner = client.V1OwnerReference(
        api_version="apps/v1",
        kind="StatefulSet",
        name=sts["metadata"]["name"],
        uid=sts["metadata"]["uid"],
        controller=True,
        block_owner_deletion=True,
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owned", owner_references=[owner]), data={"k": "v"}),
    )

    apps.delete_namespaced_stateful_set(name="owner", namespace=namespace)  # background propagation

    wait_for(
        "the garbage collector to delete ConfigMap owned",
        gone(lambda: core.read_namespaced_config_map(namespace=namespace, name="owned")),
    )
    wait_for(
        "the garbage collector to delete pod owner-0",
        gone(lambda: core.read_namespaced_pod(namespace=namespace, name="owner-0")),
    )


def test_service_account_token_authenticates_and_rbac_applies(
    control_plane: ControlPlane, kube: client.ApiClient, namespace: str
) -> None:
    core, rbac = client.CoreV1Api(kube), client.RbacAuthorizationV1Api(kube)
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="app")))
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600))
    token = as_json(kube, core.create_namespaced_service_account_token("app", namespace, request))["status"]["token"]
    assert token.count(".") == 2  # a JWT signed with the key from tests/support/control_plane.py

    with control_plane.http(token) as api:
        review = api.post(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
        assert review.status_code == 201, review.text
        user = review.json()["status"]["userInfo"]
        assert user["username"] == f"system:serviceaccount:{namespace}:app"
        assert "system:serviceaccounts" in user["groups"]

        secrets = api.get(f"/api/v1/namespaces/{namespace}/secrets")
        assert secrets.status_code == 403, secrets.text
        assert secrets.json()["reason"] == "Forbidden"
        assert api.get(f"/api/v1/namespaces/{namespace}/configmaps").status_code == 403

        # RBAC: a Role + RoleBinding opens exactly what it names.
        rbac.create_namespaced_role(
            namespace,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="read-configmaps"),
                rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["get", "list"])],
            ),
        )
        rbac.create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="app-reads-configmaps"),
                role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="read-configmaps"),
                subjects=[client.RbacV1Subject(kind="ServiceAccount", name="app", namespace=namespace)],
            ),
        )

        def configmaps() -> httpx.Response | None:
            resp = api.get(f"/api/v1/namespaces/{namespace}/configmaps")
            return resp if resp.status_code == 200 else None

        listed = wait_for("the RoleBinding to take effect", configmaps)
        # The root CA publisher (controller manager) put the API server's CA in every namespace.
        assert "kube-root-ca.crt" in [cm["metadata"]["name"] for cm in listed.json()["items"]]
        assert api.get(f"/api/v1/namespaces/{namespace}/secrets").status_code == 403

    with control_plane.http("not-a-token") as api:
        assert api.get("/api/v1/namespaces").status_code == 401
