"""Smoke tests of the node tier: real pods on a real kubelet (containerd + runc), reached through
real Services (kube-proxy, iptables) and names (CoreDNS), all inside the node's network namespace."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import httpx

from tests.support.control_plane import ControlPlane
from tests.support.kubectl import get, wait_for
from tests.support.node import API_SERVICE_IP, CLUSTER_DOMAIN, NODE_IP, POD_SUBNET, Node

WEB_PORT = 8080
HELLO = "hello from busybox"


def apply(cp: ControlPlane, namespace: str, *objects: dict[str, Any]) -> None:
    """`kubectl apply` of `objects` (a List) in `namespace`."""
    result = subprocess.run(
        [cp.binary("kubectl"), "--kubeconfig", str(cp.kubeconfig), "-n", namespace, "apply", "-f", "-"],
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def container(image: str, name: str, command: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": image, "imagePullPolicy": "Never", "command": command, **extra}


def web_container(image: str) -> dict[str, Any]:
    """busybox httpd serving /www (index.html says HELLO), Ready through an HTTP readiness probe."""
    return container(
        image,
        "web",
        ["httpd", "-f", "-p", str(WEB_PORT), "-h", "/www"],
        ports=[{"containerPort": WEB_PORT, "name": "http"}],
        readinessProbe={
            "httpGet": {"path": "/index.html", "port": WEB_PORT},
            "periodSeconds": 1,
            "failureThreshold": 2,
        },
    )


def pod_spec(*containers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"containers": list(containers), "terminationGracePeriodSeconds": 1, "enableServiceLinks": False, **extra}


def ready_pods(cp: ControlPlane, namespace: str, selector: str) -> list[dict[str, Any]]:
    pods = get(cp, "-n", namespace, "pods", "-l", selector) or {"items": []}
    return [
        p
        for p in pods["items"]
        if not p["metadata"].get("deletionTimestamp")
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))
    ]


def describe(cp: ControlPlane, namespace: str) -> str:
    pods = cp.kubectl("-n", namespace, "get", "pods,events", "-o", "wide", check=False)
    return pods.stdout + pods.stderr


def wait_ready(cp: ControlPlane, namespace: str, selector: str, timeout: float = 60) -> list[dict[str, Any]]:
    try:
        return wait_for(f"pods {selector} Ready", lambda: ready_pods(cp, namespace, selector), timeout=timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{describe(cp, namespace)}") from exc


def http_get_command(host: str, port: int, path: str = "/index.html") -> list[str]:
    """An HTTP/1.0 GET with busybox nc (Debian's static busybox 1.35 `wget` segfaults, even on the
    host: SIGSEGV at a NULL address right after getuid()); prints the response, headers and body."""
    return ["sh", "-c", f"printf 'GET {path} HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n' | nc -w 3 {host} {port}"]


def exec_in(cp: ControlPlane, namespace: str, pod: str, *command: str) -> str:
    result = cp.kubectl("-n", namespace, "exec", pod, "--", *command, check=False, timeout=30)
    assert result.returncode == 0, f"kubectl exec {pod} -- {' '.join(command)}: {result.stderr}{result.stdout}"
    return result.stdout


def test_deployment_ready_through_readiness_probe(
    node_control_plane: ControlPlane, node: Node, busybox: str, namespace: str
) -> None:
    cp = node_control_plane
    begin = time.monotonic()
    apply(
        cp,
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec(web_container(busybox))},
            },
        },
    )
    [pod] = wait_ready(cp, namespace, "app=web")
    print(f"\npod {pod['metadata']['name']} Ready {time.monotonic() - begin:.1f}s after the Deployment was applied")
    assert pod["spec"]["nodeName"] == node.name
    assert pod["status"]["podIP"].startswith(POD_SUBNET.rsplit(".", 2)[0])
    # Ready came from the probe: the kubelet's prober reached httpd in the pod's namespace.
    status = pod["status"]["containerStatuses"][0]
    assert status["ready"] and status["started"], status


def test_cluster_ip_service_from_pod_and_node(
    node_control_plane: ControlPlane, node: Node, busybox: str, namespace: str
) -> None:
    cp = node_control_plane
    apply(
        cp,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": WEB_PORT, "name": "http"}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "client", "labels": {"app": "client"}},
            "spec": pod_spec(container(busybox, "client", ["sleep", "3600"])),
        },
    )
    if not ready_pods(cp, namespace, "app=web"):
        test_deployment_ready_through_readiness_probe(cp, node, busybox, namespace)
    wait_ready(cp, namespace, "app=client")
    cluster_ip = get(cp, "-n", namespace, "service", "web")["spec"]["clusterIP"]

    # From a pod, by name (cluster DNS) and by address (kube-proxy's DNAT on the node).
    name = f"web.{namespace}.svc.{CLUSTER_DOMAIN}"
    response = wait_for(
        f"http://{name}/ from the client pod",
        lambda: cp.kubectl("-n", namespace, "exec", "client", "--", *http_get_command(name, 80)).stdout,
        timeout=30,
    )
    assert response.startswith("HTTP/1.") and response.rstrip().endswith(HELLO), response
    response = exec_in(cp, namespace, "client", *http_get_command(cluster_ip, 80))
    assert response.startswith("HTTP/1.") and response.rstrip().endswith(HELLO), response

    # From the node's network namespace (where the test's own clients run).
    def fetch() -> str:
        return httpx.get(f"http://{cluster_ip}/index.html", timeout=5).text

    assert node.run_in_netns(fetch).strip() == HELLO


def test_headless_service_member_name_resolves(
    node_control_plane: ControlPlane, node: Node, busybox: str, namespace: str
) -> None:
    cp = node_control_plane
    apply(
        cp,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "demo-members"},
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": True,
                "selector": {"app": "demo"},
                "ports": [{"port": WEB_PORT, "name": "http"}],
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "demo"},
            "spec": {
                "replicas": 1,
                "serviceName": "demo-members",
                "selector": {"matchLabels": {"app": "demo"}},
                "template": {"metadata": {"labels": {"app": "demo"}}, "spec": pod_spec(web_container(busybox))},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "resolver", "labels": {"app": "resolver"}},
            "spec": pod_spec(container(busybox, "resolver", ["sleep", "3600"])),
        },
    )
    [member] = wait_ready(cp, namespace, "app=demo")
    wait_ready(cp, namespace, "app=resolver")
    ip = member["status"]["podIP"]
    fqdn = f"demo-0.demo-members.{namespace}.svc.{CLUSTER_DOMAIN}"

    def resolves() -> str | None:
        out = exec_in(cp, namespace, "resolver", "nslookup", fqdn)
        return out if ip in out else None

    assert ip in wait_for(f"{fqdn} resolving to {ip}", resolves, timeout=30)
    # The member answers by name, also by the short forms through the pod's search path (resolv.conf
    # from the kubelet; busybox nslookup does not search, nc resolves through glibc, which does).
    for name in (fqdn, f"demo-0.demo-members.{namespace}", "demo-0.demo-members"):
        response = exec_in(cp, namespace, "resolver", *http_get_command(name, WEB_PORT))
        assert response.rstrip().endswith(HELLO), (name, response)
    # A name outside the cluster does not exist (and nothing is asked outside the namespaces).
    result = cp.kubectl("-n", namespace, "exec", "resolver", "--", "nslookup", "example.com", check=False)
    assert "NXDOMAIN" in result.stdout, result.stdout + result.stderr


def test_pod_logs(node_control_plane: ControlPlane, node: Node, busybox: str, namespace: str) -> None:
    cp = node_control_plane
    apply(
        cp,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "talker", "labels": {"app": "talker"}},
            "spec": pod_spec(container(busybox, "talker", ["sh", "-c", "echo hello from the log; exec sleep 3600"])),
        },
    )
    wait_ready(cp, namespace, "app=talker")
    logs = wait_for(
        "the talker's log",
        lambda: cp.kubectl("-n", namespace, "logs", "talker").stdout,
        timeout=30,
    )
    assert logs.strip() == "hello from the log"


def test_force_delete_brings_a_replacement(
    node_control_plane: ControlPlane, node: Node, busybox: str, namespace: str
) -> None:
    cp = node_control_plane
    if not ready_pods(cp, namespace, "app=web"):
        test_deployment_ready_through_readiness_probe(cp, node, busybox, namespace)
    [old] = ready_pods(cp, namespace, "app=web")
    old_name = old["metadata"]["name"]
    begin = time.monotonic()
    cp.kubectl("-n", namespace, "delete", "pod", old_name, "--force", "--grace-period=0")
    [new] = wait_for(
        "a replacement web pod Ready",
        lambda: [p for p in ready_pods(cp, namespace, "app=web") if p["metadata"]["name"] != old_name],
        timeout=60,
    )
    print(f"\nreplacement {new['metadata']['name']} Ready {time.monotonic() - begin:.1f}s after the force delete")
    assert new["spec"]["nodeName"] == node.name


def test_pods_reach_the_api_server_through_the_kubernetes_service(
    node_control_plane: ControlPlane, node: Node, busybox: str, namespace: str
) -> None:
    cp = node_control_plane
    apply(
        cp,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "api-client", "labels": {"app": "api-client"}},
            "spec": pod_spec(container(busybox, "api-client", ["sleep", "3600"])),
        },
    )
    wait_ready(cp, namespace, "app=api-client")
    # The Service's name, and its address in the environment the kubelet gives every container.
    lookup = exec_in(cp, namespace, "api-client", "nslookup", f"kubernetes.default.svc.{CLUSTER_DOMAIN}")
    assert API_SERVICE_IP in lookup, lookup
    env = exec_in(cp, namespace, "api-client", "env")
    assert f"KUBERNETES_SERVICE_HOST={API_SERVICE_IP}" in env.splitlines(), env
    # busybox has no TLS client: plain HTTP to the API server's TLS port gets Go's own answer,
    # which only the API server (through kube-proxy's DNAT and the relay) can have given.
    response = exec_in(cp, namespace, "api-client", *http_get_command(API_SERVICE_IP, 443, "/version"))
    assert "Client sent an HTTP request to an HTTPS server" in response, response

    # The pod's projected ServiceAccount token, used over TLS from the node's namespace: the
    # certificate holds 10.96.0.1, and the API server knows the token's ServiceAccount.
    token = exec_in(cp, namespace, "api-client", "cat", "/var/run/secrets/kubernetes.io/serviceaccount/token")

    def whoami() -> httpx.Response:
        with httpx.Client(verify=cp.ssl_context(), timeout=10) as client:
            return client.post(
                f"https://{API_SERVICE_IP}/apis/authentication.k8s.io/v1/selfsubjectreviews",
                json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
                headers={"Authorization": f"Bearer {token.strip()}"},
            )

    resp = node.run_in_netns(whoami)
    assert resp.status_code == 201, resp.text
    assert resp.json()["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:default"


def test_addresses_stay_inside_the_namespaces(
    node_control_plane: ControlPlane, node: Node, busybox: str, namespace: str
) -> None:
    cp = node_control_plane
    apply(
        cp,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "prober", "labels": {"app": "prober"}},
            "spec": pod_spec(container(busybox, "prober", ["sleep", "3600"])),
        },
    )
    wait_ready(cp, namespace, "app=prober")
    # Beyond the node there is nothing: 192.0.2.1 (TEST-NET-1) is routed into zot0, which has no ports.
    result = cp.kubectl("-n", namespace, "exec", "prober", "--", "nc", "-w", "2", "192.0.2.1", "80", check=False)
    assert result.returncode != 0, result.stdout
    # The host's namespace has none of the node's or the pods' addresses, and no route to them.
    host_addresses = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    for address in (NODE_IP, "10.244.0.1"):
        assert f" {address}/" not in host_addresses
    node_addresses = node.netns_run("ip", "-o", "addr").stdout
    assert f" {NODE_IP}/" in node_addresses and " 10.244.0.1/" in node_addresses, node_addresses
    assert "cni0" not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
