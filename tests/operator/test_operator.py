"""The operator against a real API server (etcd, kube-apiserver, controllers, scheduler, KWOK nodes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from zot_registry.cluster.hashing import owner_index
from zot_registry.config import parse_config

from tests.helpers import REPO_ROOT
from tests.k8s import OPERATOR_RESYNC_SECONDS, ControlPlane, operator_process

EXAMPLE = REPO_ROOT / "examples" / "zotcluster.yaml"


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60, interval: float = 0.5) -> Any:
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


def get(cp: ControlPlane, *args: str) -> Any:
    result = cp.kubectl("get", "-o", "json", *args, check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def absent(cp: ControlPlane, *args: str) -> bool:
    return get(cp, *args) is None


@pytest.fixture(scope="module")
def crd(control_plane: ControlPlane) -> None:
    control_plane.kubectl("apply", "-f", str(REPO_ROOT / "crds" / "zotclusters.yaml"))
    control_plane.kubectl("wait", "--for=condition=Established", "crd/zotclusters.zot-operator.io", "--timeout=60s")


@pytest.fixture(scope="module")
def operator(control_plane: ControlPlane, crd: None,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[str]]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    with operator_process(control_plane.kubeconfig, log) as process:
        yield process
    if os.environ.get("SHOW_OPERATOR_LOG"):
        print(log.read_text()[-5000:])


# KWOK's fake nodes carry a taint, and nothing provisions volumes here: the clusters under test
# tolerate the taint and claim pre-made PersistentVolumes of class "manual".
KWOK_TOLERATION = {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}


@pytest.fixture(scope="module", autouse=True)
def volumes(control_plane: ControlPlane) -> None:
    for i in range(16):
        if get(control_plane, "pv", f"manual-{i}") is None:
            pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"manual-{i}"},
                  "spec": {"capacity": {"storage": "20Gi"}, "accessModes": ["ReadWriteOnce"],
                           "storageClassName": "manual", "hostPath": {"path": f"/tmp/manual-{i}"}}}
            path = Path(control_plane.dir) / f"pv-{i}.json"
            path.write_text(json.dumps(pv))
            control_plane.kubectl("apply", "-f", str(path))


def apply_cluster(cp: ControlPlane, namespace: str, name: str = "demo", **spec: Any) -> dict[str, Any]:
    document = yaml.safe_load(EXAMPLE.read_text())
    document["metadata"] = {"name": name, "namespace": namespace}
    document["spec"]["tolerations"] = [KWOK_TOLERATION]
    document["spec"]["storage"]["local"]["storageClassName"] = "manual"
    document["spec"].update(spec)
    path = Path(cp.dir) / f"{namespace}-{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    cp.kubectl("apply", "-f", str(path))
    return document


def make_namespace(cp: ControlPlane, namespace: str, htpasswd: bool = True) -> None:
    cp.kubectl("create", "namespace", namespace)
    if htpasswd:
        import bcrypt

        entry = f"admin:{bcrypt.hashpw(b'change-me', bcrypt.gensalt(rounds=5)).decode()}\n"
        cp.kubectl("-n", namespace, "create", "secret", "generic", "demo-htpasswd", f"--from-literal=htpasswd={entry}")


def config_members(cp: ControlPlane, namespace: str, name: str = "demo") -> list[str]:
    configmap = get(cp, "-n", namespace, "configmap", f"{name}-config")
    # The drift test writes "{}" into the ConfigMap: until the operator puts it back, no members.
    return list(json.loads(configmap["data"]["config.json"]).get("cluster", {}).get("members", [])) if configmap else []


def pods(cp: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    found = get(cp, "-n", namespace, "pods", "-l", "app.kubernetes.io/instance=demo")
    return list(found["items"]) if found else []


def ready_pods(cp: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    return [p for p in pods(cp, namespace) if not p["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]


def test_apply_scale_drift_and_delete(control_plane: ControlPlane, operator: subprocess.Popen[str]) -> None:
    cp, ns = control_plane, "zot-lifecycle"
    make_namespace(cp, ns)
    apply_cluster(cp, ns)
    for kind, name in (("configmap", "demo-config"), ("secret", "demo-hashkey"), ("secret", "demo-ca"),
                       ("secret", "demo-tls"), ("service", "demo"), ("service", "demo-members"),
                       ("statefulset", "demo"), ("poddisruptionbudget", "demo")):
        wait_for(f"{kind}/{name}", partial(get, cp, "-n", ns, kind, name))
    members = config_members(cp, ns)
    assert members == [f"demo-{i}.demo-members.{ns}.svc.cluster.local:5000" for i in range(3)]
    config_text = get(cp, "-n", ns, "configmap", "demo-config")["data"]["config.json"]
    assert parse_config(config_text, "operator-written config.json").config.cluster is not None
    sts = get(cp, "-n", ns, "statefulset", "demo")
    assert sts["spec"]["updateStrategy"]["type"] == "OnDelete"
    assert sts["metadata"]["ownerReferences"][0]["kind"] == "ZotCluster"
    wait_for("3 ready members", lambda: len(ready_pods(cp, ns)) == 3, timeout=90)
    zc = wait_for("phase Running", lambda: (z := get(cp, "-n", ns, "zc", "demo")) and
                  z.get("status", {}).get("phase") == "Running" and z)
    assert zc["status"]["members"] == members and zc["status"]["readyMembers"] == 3

    # An unchanged cluster costs no writes: two drift checks later, no object has a new resourceVersion.
    def versions() -> dict[str, str]:
        found = {}
        for kind in ("zc", "configmap", "secret", "service", "statefulset", "poddisruptionbudget", "pods"):
            for item in get(cp, "-n", ns, kind)["items"]:
                found[f"{kind}/{item['metadata']['name']}"] = item["metadata"]["resourceVersion"]
        return found

    time.sleep(3)  # let the last status write of the convergence land
    settled = versions()
    time.sleep(2 * OPERATOR_RESYNC_SECONDS + 2)  # two drift checks
    assert versions() == settled

    # Scale to 5: a new member list in the config, and every pod recreated with it.
    before = {p["metadata"]["uid"] for p in pods(cp, ns)}
    cp.kubectl("-n", ns, "scale", "zc", "demo", "--replicas", "5")
    wait_for("5 members in the config", lambda: len(config_members(cp, ns)) == 5)
    def five_new_ready_pods() -> bool:
        ready = ready_pods(cp, ns)
        return len(ready) == 5 and not before & {p["metadata"]["uid"] for p in ready}

    wait_for("5 ready pods, all new", five_new_ready_pods, timeout=120)
    five = config_members(cp, ns)

    def moved_condition() -> str:
        conditions = (get(cp, "-n", ns, "zc", "demo") or {}).get("status", {}).get("conditions", [])
        return next((c["message"] for c in conditions if c["type"] == "RepositoriesMoved"), "")

    assert "about 80% of repositories moved owner (3 -> 5 members)" in wait_for("moved condition", moved_condition)
    for pod in ready_pods(cp, ns):
        assert pod["metadata"]["annotations"]["zot-operator.io/members"] == ",".join(five)
    cp.kubectl("-n", ns, "scale", "zc", "demo", "--replicas", "2")
    wait_for("2 members", lambda: len(config_members(cp, ns)) == 2)
    wait_for("2 ready pods", lambda: len(ready_pods(cp, ns)) == 2, timeout=120)

    # Drift: a deleted Service and an edited ConfigMap come back.
    cp.kubectl("-n", ns, "delete", "service", "demo")
    cp.kubectl("-n", ns, "patch", "configmap", "demo-config", "--type=merge", "-p",
               json.dumps({"data": {"config.json": "{}"}}))
    wait_for("service back", lambda: get(cp, "-n", ns, "service", "demo"), timeout=60)
    wait_for("config restored", lambda: len(config_members(cp, ns)) == 2, timeout=60)

    # Deleting the ZotCluster removes every child through owner references.
    cp.kubectl("-n", ns, "delete", "zc", "demo")
    for kind, name in (("configmap", "demo-config"), ("statefulset", "demo"), ("service", "demo"),
                       ("secret", "demo-tls"), ("secret", "demo-hashkey")):
        wait_for(f"{kind}/{name} gone", partial(absent, cp, "-n", ns, kind, name), timeout=90)


@pytest.mark.parametrize(("change", "message"), [
    ({"replicas": 0}, "replicas"),
    ({"excludedMembers": [7]}, "excludedMembers"),
    ({"storage": {"mode": "nfs"}}, "mode"),
    ({"storage": {"mode": "s3", "s3": {"bucket": "b"}}}, "storage mode s3 needs a shared cache"),
    ({"storage": {"mode": "s3", "s3": {"bucket": "b"}}, "cache": {"redis": {"url": "redis://r:6379"},
                                                            "dynamodb": {}}}, "exactly one of redis or dynamodb"),
    ({"cache": {"redis": {"url": "redis://r:6379"}}}, "cache is only used with storage mode s3"),
    ({"storage": {"mode": "s3", "s3": {"bucket": "b"}}, "cache": {"redis": {"url": "redis://user:pw@r:6379"}}},
     "url"),
    ({"storage": {"mode": "s3", "s3": {"bucket": "b"}}, "cache": {"redis": {"keyPrefix": "z"}}},
     "redis needs exactly one of url or urlSecret"),
])
def test_invalid_clusters_are_rejected_by_the_api_server(control_plane: ControlPlane, crd: None,
                                                         change: dict[str, Any], message: str) -> None:
    cp = control_plane
    ns = "zot-invalid"
    if get(cp, "namespace", ns) is None:
        make_namespace(cp, ns, htpasswd=False)
    document = yaml.safe_load(EXAMPLE.read_text())
    document["metadata"] = {"name": "bad", "namespace": ns}
    document["spec"].update(change)
    path = Path(cp.dir) / "invalid.yaml"
    path.write_text(yaml.safe_dump(document))
    result = cp.kubectl("apply", "-f", str(path), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_hash_key_secret_is_immutable(control_plane: ControlPlane, crd: None) -> None:
    cp, ns = control_plane, "zot-immutable"
    make_namespace(cp, ns, htpasswd=False)
    apply_cluster(cp, ns, auth=None, hashKeySecret="first-key")
    document = yaml.safe_load(EXAMPLE.read_text())
    document["metadata"] = {"name": "demo", "namespace": ns}
    document["spec"].update(auth=None, hashKeySecret="second-key")
    path = Path(cp.dir) / "immutable.yaml"
    path.write_text(yaml.safe_dump(document))
    result = cp.kubectl("apply", "-f", str(path), check=False)
    assert result.returncode != 0 and "hashKeySecret is immutable" in result.stderr


def test_missing_secret_degrades_and_deletes_nothing(control_plane: ControlPlane,
                                                     operator: subprocess.Popen[str]) -> None:
    cp, ns = control_plane, "zot-degraded"
    make_namespace(cp, ns, htpasswd=False)
    apply_cluster(cp, ns)  # references demo-htpasswd, which this namespace lacks
    zc = wait_for("Degraded", lambda: (z := get(cp, "-n", ns, "zc", "demo")) and
                  z.get("status", {}).get("phase") == "Degraded" and z)
    degraded = next(c for c in zc["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and "demo-htpasswd" in degraded["message"]
    events = get(cp, "-n", ns, "events")
    assert any("demo-htpasswd" in e.get("message", "") and e.get("type") == "Warning" for e in events["items"])
    assert get(cp, "-n", ns, "statefulset", "demo") is None


def test_s3_cluster_waits_for_its_credentials_and_never_writes_them_into_the_configmap(
        control_plane: ControlPlane, operator: subprocess.Popen[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    cp, ns = control_plane, "zot-s3"
    make_namespace(cp, ns, htpasswd=False)
    document = yaml.safe_load((REPO_ROOT / "examples" / "zotcluster-s3.yaml").read_text())
    document["metadata"] = {"name": "demo", "namespace": ns}
    document["spec"]["tolerations"] = [KWOK_TOLERATION]
    path = Path(cp.dir) / "s3.yaml"
    path.write_text(yaml.safe_dump(document))
    cp.kubectl("apply", "-f", str(path))
    zc = wait_for("Degraded", lambda: (z := get(cp, "-n", ns, "zc", "demo")) and
                  z.get("status", {}).get("phase") == "Degraded" and z)
    degraded = next(c for c in zc["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "S3CredentialsSecretMissing" and "registry-s3" in degraded["message"]
    assert get(cp, "-n", ns, "statefulset", "demo") is None
    cp.kubectl("-n", ns, "create", "secret", "generic", "registry-s3", "--from-literal=accessKey=AKIDEXAMPLE",
               "--from-literal=secretKey=s3-secret-value")
    zc = wait_for("next Degraded reason", lambda: (z := get(cp, "-n", ns, "zc", "demo")) and any(
        c["type"] == "Degraded" and c["reason"] == "RedisURLSecretMissing" for c in z["status"]["conditions"]))
    cp.kubectl("-n", ns, "create", "secret", "generic", "registry-redis", "--from-literal=url=redis://:redis-pw-value@redis:6379/0")
    wait_for("Running", lambda: (z := get(cp, "-n", ns, "zc", "demo")) and z["status"].get("phase") == "Running",
             timeout=90)
    configmap = get(cp, "-n", ns, "configmap", "demo-config")["data"]["config.json"]
    assert "s3-secret-value" not in configmap and "AKIDEXAMPLE" not in configmap and "redis-pw-value" not in configmap
    assert json.loads(configmap)["storage"]["storageDriver"]["bucket"] == "zot-storage"
    sts = get(cp, "-n", ns, "statefulset", "demo")
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]}
    assert env == {"AWS_ACCESS_KEY_ID": "registry-s3", "AWS_SECRET_ACCESS_KEY": "registry-s3"}
    assert "volumeClaimTemplates" not in sts["spec"]
    # zot reads the redis URL only from its config: an init container writes the complete config into
    # an in-memory volume, and the member reads that file.
    [init] = pod["initContainers"]
    assert {e["name"]: e["valueFrom"]["secretKeyRef"] for e in init["env"]} == {
        "ZOT_REDIS_URL": {"name": "registry-redis", "key": "url"}}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["emptyDir"]["medium"] == "Memory"
    assert volumes["config-template"]["configMap"]["name"] == "demo-config"
    assert container["args"] == ["serve", "/etc/zot/runtime/config.json"]
    # The init container's command as the API server holds it, run with the Secret's value.
    import base64

    from zot_registry.config import load_config

    template, runtime = tmp_path / "template", tmp_path / "runtime"
    template.mkdir()
    runtime.mkdir()
    (template / "config.json").write_text(configmap)
    args = [a.replace("/etc/zot/template", str(template)).replace("/etc/zot/runtime", str(runtime))
            for a in init["args"]]
    url = base64.b64decode(get(cp, "-n", ns, "secret", "registry-redis")["data"]["url"]).decode()
    subprocess.run([sys.executable, "-m", "zot_operator.cli", *init["command"][1:], *args], check=True,
                   env={**os.environ, "ZOT_REDIS_URL": url}, capture_output=True, timeout=60)
    monkeypatch.delenv("ZOT_REDIS_URL", raising=False)
    loaded = load_config(runtime / "config.json")
    assert loaded.config.storage.cache_driver is not None
    assert loaded.config.storage.cache_driver["url"] == "redis://:redis-pw-value@redis:6379/0"
    # What is rendered with the init container is what the API server keeps: no write on unchanged checks.
    def written() -> list[str]:
        return [get(cp, "-n", ns, kind, "demo" if kind == "statefulset" else "demo-config")["metadata"][
            "resourceVersion"] for kind in ("statefulset", "configmap")]

    time.sleep(3)
    settled = written()
    time.sleep(2 * OPERATOR_RESYNC_SECONDS + 2)  # two drift checks
    assert written() == settled
    # A new password in the Secret: the pod template changes (the members roll), the ConfigMap does not.
    versions = sts["spec"]["template"]["metadata"]["annotations"]["zot-operator.io/secret-versions"]
    cp.kubectl("-n", ns, "patch", "secret", "registry-redis", "--type=merge", "-p",
               json.dumps({"stringData": {"url": "redis://:new-pw-value@redis:6379/0"}}))
    wait_for("new secret version in the pod template", lambda: (
        get(cp, "-n", ns, "statefulset", "demo")["spec"]["template"]["metadata"]["annotations"]
        ["zot-operator.io/secret-versions"] != versions), timeout=60)
    assert "new-pw-value" not in json.dumps(get(cp, "-n", ns, "statefulset", "demo"))
    assert "new-pw-value" not in get(cp, "-n", ns, "configmap", "demo-config")["data"]["config.json"]
    # Back to a URL without credentials, in the config: no init container, no in-memory volume left.
    cp.kubectl("-n", ns, "patch", "zc", "demo", "--type=merge", "-p",
               json.dumps({"spec": {"cache": {"redis": {"urlSecret": None, "url": "redis://redis:6379/0"}}}}))

    def inline() -> dict[str, Any] | None:
        template = get(cp, "-n", ns, "statefulset", "demo")["spec"]["template"]
        return template if template["spec"]["containers"][0]["args"] == ["serve", "/etc/zot/config.json"] else None

    template = wait_for("the StatefulSet without its init container", inline, timeout=60)
    assert "initContainers" not in template["spec"]
    assert {v["name"] for v in template["spec"]["volumes"]} == {"config", "tls", "tmp", "data"}
    assert "zot-operator.io/secret-versions" in template["metadata"]["annotations"]  # the S3 credentials
    assert "registry-redis" not in template["metadata"]["annotations"]["zot-operator.io/secret-versions"]


def test_failover_drops_a_member_kept_not_ready_and_readmits_it(control_plane: ControlPlane,
                                                                 operator: subprocess.Popen[str]) -> None:
    cp, ns = control_plane, "zot-failover"
    make_namespace(cp, ns)
    apply_cluster(cp, ns, failover={"automatic": True, "after": "5s"})
    wait_for("3 ready members", lambda: len(ready_pods(cp, ns)) == 3, timeout=90)
    # What a hung member looks like to the API: not ready, container not running.
    not_ready = {"status": {"conditions": [{"type": "Ready", "status": "False"}],
                            "containerStatuses": [{"name": "zot", "ready": False, "restartCount": 0, "image": "x",
                                                   "imageID": "", "started": False,
                                                   "state": {"waiting": {"reason": "Hung"}}}]}}
    cp.kubectl("-n", ns, "patch", "pod", "demo-1", "--subresource=status", "--type=merge", "-p",
               json.dumps(not_ready))

    def event_reasons() -> set[str]:
        return {e["reason"] for e in (get(cp, "-n", ns, "events") or {"items": []})["items"]}

    def dropped() -> bool:
        # The dropped state lasts only until the restarted member is healthy for `after` again,
        # so look for it in the status and the ConfigMap, or for the event that announced it.
        zc = get(cp, "-n", ns, "zc", "demo") or {}
        in_status = zc.get("status", {}).get("failedMembers") == [1] and len(config_members(cp, ns)) == 2
        return in_status or "MemberDropped" in event_reasons()

    wait_for("member 1 dropped", dropped, timeout=60)
    # The restart gives member 1 a fresh, healthy pod: after `after` (at least 30 s) of health it is back.
    wait_for("member 1 re-admitted", lambda: "MemberReadmitted" in event_reasons(), timeout=120)
    wait_for("3 members again", lambda: len(config_members(cp, ns)) == 3, timeout=30)
    dropped_events = [e for e in get(cp, "-n", ns, "events")["items"] if e["reason"] == "MemberDropped"]
    assert "member 1 not ready for 5s" in dropped_events[0]["message"]
    assert "Restarting" in event_reasons()


def test_registry_processes_run_from_what_the_operator_wrote(control_plane: ControlPlane,
                                                            operator: subprocess.Popen[str],
                                                            tmp_path: Path) -> None:
    """The ConfigMap and Secrets in the API server, used as they are by three real registry processes."""
    import base64

    import httpx

    from tests.cluster.conftest import port_free_on_all
    from tests.helpers import RegistryProcess, make_image, push_image

    cp, ns = control_plane, "zot-real"
    make_namespace(cp, ns)
    apply_cluster(cp, ns)
    wait_for("tls secret", partial(get, cp, "-n", ns, "secret", "demo-tls"))
    wait_for("config", partial(get, cp, "-n", ns, "configmap", "demo-config"))
    config = json.loads(get(cp, "-n", ns, "configmap", "demo-config")["data"]["config.json"])
    files: dict[str, Path] = {}
    for secret, key, target in (("demo-tls", "tls.crt", "/etc/zot/tls/tls.crt"),
                                ("demo-tls", "tls.key", "/etc/zot/tls/tls.key"),
                                ("demo-tls", "ca.crt", "/etc/zot/tls/ca.crt"),
                                ("demo-htpasswd", "htpasswd", "/etc/zot/auth/htpasswd")):
        path = tmp_path / key
        path.write_bytes(base64.b64decode(get(cp, "-n", ns, "secret", secret)["data"][key]))
        files[target] = path
    port = port_free_on_all(3)
    hosts = {member.rsplit(":", 1)[0]: f"127.0.0.{i + 1}" for i, member in enumerate(config["cluster"]["members"])}
    members = []
    for i in range(3):
        member_config = json.loads(json.dumps(config))
        # What differs from a pod: the paths of the mounted files, the loopback address and a free port.
        member_config["storage"]["rootDirectory"] = str(tmp_path / f"root-{i}")
        member_config["http"]["address"] = f"127.0.0.{i + 1}"
        member_config["http"]["port"] = str(port)
        member_config["http"]["tls"] = {"cert": str(files["/etc/zot/tls/tls.crt"]),
                                        "key": str(files["/etc/zot/tls/tls.key"])}
        member_config["http"]["auth"]["htpasswd"]["path"] = str(files["/etc/zot/auth/htpasswd"])
        member_config["cluster"]["tls"]["cacert"] = str(files["/etc/zot/tls/ca.crt"])
        member_config["cluster"]["members"] = [m.replace(":5000", f":{port}") for m in config["cluster"]["members"]]
        env = {"PYTHONPATH": str(Path(__file__).parent / "resolver"), "ZOT_TEST_HOSTS": json.dumps(hosts),
               # The stdlib resolver (uvloop resolves natively, beyond the harness's reach).
               "ZOT_REGISTRY_WORKER_CLASS": "asyncio"}
        members.append(RegistryProcess(tmp_path / f"member-{i}.json", member_config, tmp_path / f"member-{i}.log",
                                       workers=1, env=env))
    try:
        for member in members:
            member.start()
        import ssl

        context = ssl.create_default_context(cafile=str(files["/etc/zot/tls/ca.crt"]))
        context.check_hostname = False  # the client talks to 127.0.0.x; members verify each other by name
        clients = [httpx.Client(base_url=m.url, verify=context, auth=("admin", "change-me"), timeout=30)
                   for m in members]
        wait_for("members ready", lambda: all(c.get("/readyz").status_code == 200 for c in clients), timeout=30)
        # The hash key is the operator's random one: pick names so that every member owns three.
        key = config["cluster"]["hashKey"].encode()
        owned: list[list[str]] = [[], [], []]
        for name in (f"real/app-{i}" for i in range(200)):
            if len(owned[owner_index(name, key, 3)]) < 3:
                owned[owner_index(name, key, 3)].append(name)
        images = {repo: make_image(repo) for names in owned for repo in names}
        for i, (repo, image) in enumerate(images.items()):
            assert push_image(clients[i % 3], repo, image, tag="v1").status_code == 201
        for repo, image in images.items():
            for client in clients:
                assert client.get(f"/v2/{repo}/manifests/v1").content == image.manifest
        stored = [{str(p.parent.relative_to(m.root)) for p in m.root.rglob("index.json")} for m in members]
        assert stored == [set(names) for names in owned]
        for client in clients:
            client.close()
    finally:
        for member in members:
            member.stop()


def test_image_change_rolls_one_member_at_a_time(control_plane: ControlPlane,
                                                 operator: subprocess.Popen[str]) -> None:
    cp, ns = control_plane, "zot-rolling"
    make_namespace(cp, ns)
    apply_cluster(cp, ns)
    wait_for("3 ready members", lambda: len(ready_pods(cp, ns)) == 3, timeout=90)
    cp.kubectl("-n", ns, "patch", "zc", "demo", "--type=merge", "-p",
               json.dumps({"spec": {"image": "example.org/zot-operator:next"}}))
    worst = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        current = pods(cp, ns)
        updated = [p for p in current if p["spec"]["containers"][0]["image"] == "example.org/zot-operator:next"]
        worst = max(worst, 3 - len(ready_pods(cp, ns)))
        if len(updated) == 3 and len(ready_pods(cp, ns)) == 3:
            break
        time.sleep(0.3)
    else:
        raise AssertionError("the image change did not roll through all members in 120 s")
    assert worst <= 1, f"{worst} members were down at once during a rolling update"
    # The member list did not change, so no restart-all happened.
    restarts = [e for e in get(cp, "-n", ns, "events")["items"] if e["reason"] == "Restarting"]
    assert restarts and all("one member at a time" in e["message"] for e in restarts)
