"""spec.sync against a real API server: the CRD's CEL rules refuse what the registry would, the operator
waits for the Secrets it mounts (Degraded, naming them), renders zot's extensions.sync with paths only,
mounts the Secrets, rolls the members when one changes; and members run from what it wrote (played by
tests.support.pod_runner) pull through from a real upstream with the mounted credentials and certificates."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from zot_registry.config import parse_config

from tests.support.control_plane import ControlPlane
from tests.support.images import make_image, sha256
from tests.support.kubectl import Namespaces, create_secret, get, merge_patch, wait_for
from tests.support.operators import OPERATOR_RESYNC_SECONDS
from tests.support.paths import REPO_ROOT
from tests.support.pod_runner import PodRunner
from tests.support.ports import port_free_on_all
from tests.support.upstreams import PASSWORD, USER, missing, running_upstream
from tests.support.zotclusters import (
    BY_RESTART,
    apply_cluster,
    apply_document,
    example_cluster,
    wait_for_phase,
    write_document,
)

pytestmark = pytest.mark.usefixtures("volumes")

PULL_THROUGH = REPO_ROOT / "examples" / "zotcluster-pull-through.yaml"
VERSIONS = "zot-operator.io/secret-versions"


def pull_through(namespace: str, tolerate: bool = True, **sync: Any) -> dict[str, Any]:
    """The pull-through example in `namespace` on the pre-made volumes, 2 members, its sync keys replaced."""
    document = example_cluster(namespace, "docker-hub", example=PULL_THROUGH, tolerate=tolerate)
    spec = document["spec"]
    spec.update(replicas=2, rebalance=BY_RESTART)
    spec["storage"]["local"].update(storageClassName="manual", size="1Gi")
    spec["sync"].update(sync)
    return document


def degraded(cp: ControlPlane, ns: str, reason: str) -> dict[str, Any]:
    """The Degraded condition once its reason is `reason`."""

    def condition() -> dict[str, Any] | None:
        conditions = ((get(cp, "-n", ns, "zc", "docker-hub") or {}).get("status") or {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == "Degraded" and c["reason"] == reason), None)

    found: dict[str, Any] = wait_for(f"Degraded {reason}", condition)
    return found


def registry_of(**settings: Any) -> dict[str, Any]:
    return {"urls": ["https://registry-1.docker.io"], "onDemand": True, **settings}


@pytest.mark.parametrize(
    ("registry", "message"),
    [
        (registry_of(urls=["ftp://registry-1.docker.io"]), "each of urls must be an http:// or https:// URL"),
        (registry_of(urls=["registry-1.docker.io"]), "each of urls must be an http:// or https:// URL"),
        (registry_of(urls=["https://user:pw@registry-1.docker.io"]), "without a path or credentials"),
        (registry_of(urls=[]), "should have at least 1 items"),
        (registry_of(onDemand=False, pollInterval="6h"), "pollInterval needs content"),
        (registry_of(maxRetries=3), "retryDelay is required when using maxRetries"),
        (registry_of(maxRetryDelay="1h"), "retryDelay is required when using maxRetryDelay"),
        (registry_of(onDemand=False), "this registry syncs nothing"),
        (
            registry_of(content=[{"prefix": "library", "destination": "/", "stripPrefix": True}]),
            "can not use stripPrefix true and destination '/' without using glob patterns in prefix",
        ),
        (registry_of(onlySigned=True), 'unknown field "spec.sync.registries[0].onlySigned"'),
    ],
)
def test_invalid_sync_is_rejected_by_the_api_server(
    control_plane: ControlPlane, crd: None, module_namespaces: Namespaces, registry: dict[str, Any], message: str
) -> None:
    cp = control_plane
    ns = module_namespaces.create("zot-sync-invalid", htpasswd=False, exist_ok=True)
    document = pull_through(ns, tolerate=False, registries=[registry])
    result = cp.kubectl("apply", "-f", str(write_document(cp, document, "invalid-sync.yaml")), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_an_invalid_glob_the_api_server_cannot_check_is_degraded(
    control_plane: ControlPlane, operator: subprocess.Popen[str], namespaces: Namespaces
) -> None:
    cp, ns = control_plane, namespaces.create("zot-sync-glob", htpasswd=False)
    apply_document(cp, pull_through(ns, registries=[registry_of(content=[{"prefix": "library/[abc"}])]), "glob.yaml")
    message = degraded(cp, ns, "InvalidSpec")["message"]
    assert "spec.sync.registries.0" in message and '"library/[abc" is not a valid glob' in message
    assert get(cp, "-n", ns, "statefulset", "docker-hub") is None


def test_sync_waits_for_its_secrets_renders_paths_only_mounts_them_and_rolls_on_a_change(
    control_plane: ControlPlane, operator: subprocess.Popen[str], namespaces: Namespaces
) -> None:
    cp, ns = control_plane, namespaces.create("zot-sync", htpasswd=False)
    upstream = registry_of(certSecret={"name": "upstream-tls"}, content=[{"prefix": "library/**"}])
    document = pull_through(ns, credentialsSecret={"name": "dockerhub-creds"}, registries=[upstream])
    apply_document(cp, document, "sync.yaml")
    wanted = degraded(cp, ns, "SyncCredentialsSecretMissing")
    assert wanted["message"] == (
        "Secret dockerhub-creds with key credentials.json (spec.sync.credentialsSecret) does not exist"
    )
    events = get(cp, "-n", ns, "events")["items"]
    assert any(e["reason"] == "SyncCredentialsSecretMissing" and e["type"] == "Warning" for e in events)
    assert get(cp, "-n", ns, "statefulset", "docker-hub") is None
    # A file the members would refuse: named, its content not quoted.
    create_secret(cp, ns, "dockerhub-creds", **{"credentials.json": json.dumps({"registry-1.docker.io": "pw-123"})})
    invalid = degraded(cp, ns, "SyncCredentialsInvalid")["message"]
    assert "Secret dockerhub-creds key credentials.json" in invalid and "pw-123" not in invalid
    credentials = {"registry-1.docker.io": {"username": "puller", "password": "hub-secret-value"}}
    merge_patch(cp, ns, "secret", "dockerhub-creds", {"stringData": {"credentials.json": json.dumps(credentials)}})
    assert degraded(cp, ns, "SyncCertSecretMissing")["message"] == (
        "Secret upstream-tls (spec.sync.registries[0].certSecret) does not exist"
    )
    create_secret(cp, ns, "upstream-tls", **{"ca.crt": "CA", "tls.crt": "CERT", "tls.key": "KEY"})
    wait_for_phase(cp, ns, "Running", name="docker-hub", timeout=90)

    config_text = get(cp, "-n", ns, "configmap", "docker-hub-config")["data"]["config.json"]
    assert "hub-secret-value" not in config_text and "puller" not in config_text
    sync = json.loads(config_text)["extensions"]["sync"]
    assert sync == {
        "enable": True,
        "credentialsFile": "/etc/zot/sync/credentials/credentials.json",
        "registries": [
            {
                "urls": ["https://registry-1.docker.io"],
                "onDemand": True,
                "tlsVerify": True,
                "certDir": "/etc/zot/sync/certs/0",
                "content": [{"prefix": "library/**"}],
            }
        ],
    }
    # The registry takes the stanza (its files are the pods', checked in the last test).
    without_files = json.loads(config_text)
    del without_files["extensions"]["sync"]["credentialsFile"]
    del without_files["extensions"]["sync"]["registries"][0]["certDir"]
    assert parse_config(json.dumps(without_files), "operator-written config.json").config.sync is not None
    template = get(cp, "-n", ns, "statefulset", "docker-hub")["spec"]["template"]
    volumes = {v["name"]: v.get("secret") for v in template["spec"]["volumes"]}
    assert volumes["sync-credentials"] == {
        "secretName": "dockerhub-creds",
        "defaultMode": 0o440,
        "items": [{"key": "credentials.json", "path": "credentials.json"}],
    }
    assert volumes["sync-certs-0"] == {
        "secretName": "upstream-tls",
        "defaultMode": 0o440,
        "items": [
            {"key": "ca.crt", "path": "ca.crt"},
            {"key": "tls.crt", "path": "client.cert"},
            {"key": "tls.key", "path": "client.key"},
        ],
    }
    mounts = {m["name"]: m for m in template["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["sync-credentials"] == {
        "name": "sync-credentials",
        "mountPath": "/etc/zot/sync/credentials",
        "readOnly": True,
    }
    assert mounts["sync-certs-0"] == {"name": "sync-certs-0", "mountPath": "/etc/zot/sync/certs/0", "readOnly": True}
    assert "hub-secret-value" not in json.dumps(template)

    # A new token in the credentials Secret: the members read the file when they start, so they roll.
    versions = template["metadata"]["annotations"][VERSIONS]
    assert set(dict(v.split("=") for v in versions.split(","))) == {"dockerhub-creds", "upstream-tls"}
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in get(cp, "-n", ns, "pods")["items"]}
    credentials["registry-1.docker.io"]["password"] = "new-hub-secret"
    merge_patch(cp, ns, "secret", "dockerhub-creds", {"stringData": {"credentials.json": json.dumps(credentials)}})

    def rolled() -> bool:
        current = get(cp, "-n", ns, "statefulset", "docker-hub")["spec"]["template"]["metadata"]["annotations"]
        pods = get(cp, "-n", ns, "pods")["items"]
        return (
            current[VERSIONS] != versions
            and len(pods) == 2
            and all(
                p["metadata"]["uid"] != before.get(p["metadata"]["name"])
                and p["metadata"]["annotations"].get(VERSIONS) == current[VERSIONS]
                for p in pods
            )
        )

    wait_for("both members restarted with the new credentials' version", rolled, timeout=120)
    restarts = [e for e in get(cp, "-n", ns, "events")["items"] if e["reason"] == "Restarting"]
    assert restarts and all("one member at a time" in e["message"] for e in restarts)

    # What is rendered (Secret volumes with items, their mounts) is what the API server keeps: no write
    # on unchanged checks.
    def written() -> list[str]:
        return [
            get(cp, "-n", ns, kind, name)["metadata"]["resourceVersion"]
            for kind, name in (("statefulset", "docker-hub"), ("configmap", "docker-hub-config"))
        ]

    wait_for_phase(cp, ns, "Running", name="docker-hub", timeout=60)
    time.sleep(3)
    settled = written()
    time.sleep(2 * OPERATOR_RESYNC_SECONDS + 2)  # two drift checks
    assert written() == settled


def test_members_pull_through_an_upstream_with_the_mounted_credentials_and_client_certificate(
    control_plane: ControlPlane, operator: subprocess.Popen[str], namespaces: Namespaces, tmp_path: Path
) -> None:
    """An upstream that requires a client certificate of its own CA and Basic auth: the members get both
    only from the Secrets the operator mounts, as the pods' files (tests.support.pod_runner plays the kubelet)."""
    if missing("distribution2"):
        pytest.skip(str(missing("distribution2")))
    cp, ns = control_plane, namespaces.create("zot-sync-real")
    with running_upstream("distribution2", client_certs=True, htpasswd=True) as upstream:
        assert upstream.ca is not None and upstream.client_cert is not None
        image = make_image("pulled-through", (2048, 4096))
        upstream.push("library/app", image, tag="v1")
        credentials = {upstream.hostport: {"username": USER, "password": PASSWORD}}
        create_secret(cp, ns, "upstream-creds", **{"credentials.json": json.dumps(credentials)})
        tls = {
            "ca.crt": upstream.ca.read_text(),
            "tls.crt": upstream.client_cert[0].read_text(),
            "tls.key": upstream.client_cert[1].read_text(),
        }
        create_secret(cp, ns, "upstream-tls", **tls)
        port = port_free_on_all(2)
        sync = {
            "credentialsSecret": {"name": "upstream-creds"},
            "registries": [
                {
                    "urls": [upstream.url],
                    "onDemand": True,
                    "certSecret": {"name": "upstream-tls"},
                    "content": [{"prefix": "library/**"}],
                }
            ],
        }
        apply_cluster(cp, ns, port=port, replicas=2, sync=sync)
        with PodRunner(cp, ns, workdir=tmp_path, port=port, ordinals=2) as runner:
            runner.wait_running([0, 1])
            for i in range(2):
                runner.wait_ready(i)
            member = runner.member(0).config["extensions"]["sync"]
            cert_dir = Path(member["registries"][0]["certDir"])
            assert sorted(p.name for p in cert_dir.iterdir()) == ["ca.crt", "client.cert", "client.key"]
            assert (cert_dir / "client.key").read_text() == tls["tls.key"]
            assert json.loads(Path(member["credentialsFile"]).read_text())[upstream.hostport]["username"] == USER
            for i in range(2):
                with runner.client(i) as client:
                    pulled = client.get("/v2/library/app/manifests/v1")
                    assert pulled.status_code == 200, pulled.text
                    assert pulled.content == image.manifest
                    for blob in (image.config, *image.layers):
                        assert client.get(f"/v2/library/app/blobs/{sha256(blob)}").content == blob
            # Stored on its owner, and no longer fetched upstream once synced.
            mark = upstream.mark()
            with runner.client(1) as client:
                assert client.get("/v2/library/app/manifests/v1").status_code == 200
            assert not [r for r in upstream.requests_since(mark) if r.method == "GET" and "/blobs/" in r.uri]
