"""The operator with shared (S3) storage against a real API server: it waits for the credential
Secrets, keeps their values out of the ConfigMap, and rolls the members when a Secret changes."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from zot_registry.config import load_config

from tests.support.control_plane import ControlPlane
from tests.support.kubectl import Namespaces, create_secret, get, merge_patch, wait_for
from tests.support.operators import OPERATOR_RESYNC_SECONDS
from tests.support.zotclusters import S3_EXAMPLE, apply_document, example_cluster, wait_for_phase

pytestmark = pytest.mark.usefixtures("volumes")


def test_s3_cluster_waits_for_its_credentials_and_never_writes_them_into_the_configmap(
    control_plane: ControlPlane,
    operator: subprocess.Popen[str],
    namespaces: Namespaces,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cp, ns = control_plane, namespaces.create("zot-s3", htpasswd=False)
    apply_document(cp, example_cluster(ns, example=S3_EXAMPLE), "s3.yaml")
    zc = wait_for_phase(cp, ns, "Degraded")
    degraded = next(c for c in zc["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "S3CredentialsSecretMissing" and "registry-s3" in degraded["message"]
    assert get(cp, "-n", ns, "statefulset", "demo") is None
    create_secret(cp, ns, "registry-s3", accessKey="AKIDEXAMPLE", secretKey="s3-secret-value")
    zc = wait_for(
        "next Degraded reason",
        lambda: (
            (z := get(cp, "-n", ns, "zc", "demo"))
            and any(
                c["type"] == "Degraded" and c["reason"] == "RedisURLSecretMissing" for c in z["status"]["conditions"]
            )
        ),
    )
    create_secret(cp, ns, "registry-redis", url="redis://:redis-pw-value@redis:6379/0")
    wait_for(
        "Running", lambda: (z := get(cp, "-n", ns, "zc", "demo")) and z["status"].get("phase") == "Running", timeout=90
    )
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
        "ZOT_REDIS_URL": {"name": "registry-redis", "key": "url"}
    }
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["emptyDir"]["medium"] == "Memory"
    assert volumes["config-template"]["configMap"]["name"] == "demo-config"
    assert container["args"] == ["serve", "/etc/zot/runtime/config.json"]
    # The init container's command as the API server holds it, run with the Secret's value.
    template, runtime = tmp_path / "template", tmp_path / "runtime"
    template.mkdir()
    runtime.mkdir()
    (template / "config.json").write_text(configmap)
    args = [
        a.replace("/etc/zot/template", str(template)).replace("/etc/zot/runtime", str(runtime)) for a in init["args"]
    ]
    url = base64.b64decode(get(cp, "-n", ns, "secret", "registry-redis")["data"]["url"]).decode()
    subprocess.run(
        [sys.executable, "-m", "zot_operator.cli", *init["command"][1:], *args],
        check=True,
        env={**os.environ, "ZOT_REDIS_URL": url},
        capture_output=True,
        timeout=60,
    )
    monkeypatch.delenv("ZOT_REDIS_URL", raising=False)
    loaded = load_config(runtime / "config.json")
    assert loaded.config.storage.cache_driver is not None
    assert loaded.config.storage.cache_driver["url"] == "redis://:redis-pw-value@redis:6379/0"

    # What is rendered with the init container is what the API server keeps: no write on unchanged checks.
    def written() -> list[str]:
        return [
            get(cp, "-n", ns, kind, "demo" if kind == "statefulset" else "demo-config")["metadata"]["resourceVersion"]
            for kind in ("statefulset", "configmap")
        ]

    time.sleep(3)
    settled = written()
    time.sleep(2 * OPERATOR_RESYNC_SECONDS + 2)  # two drift checks
    assert written() == settled
    # A new password in the Secret: the pod template changes (the members roll), the ConfigMap does not.
    versions = sts["spec"]["template"]["metadata"]["annotations"]["zot-operator.io/secret-versions"]
    merge_patch(cp, ns, "secret", "registry-redis", {"stringData": {"url": "redis://:new-pw-value@redis:6379/0"}})
    wait_for(
        "new secret version in the pod template",
        lambda: (
            get(cp, "-n", ns, "statefulset", "demo")["spec"]["template"]["metadata"]["annotations"][
                "zot-operator.io/secret-versions"
            ]
            != versions
        ),
        timeout=60,
    )
    assert "new-pw-value" not in json.dumps(get(cp, "-n", ns, "statefulset", "demo"))
    assert "new-pw-value" not in get(cp, "-n", ns, "configmap", "demo-config")["data"]["config.json"]
    # Back to a URL without credentials, in the config: no init container, no in-memory volume left.
    merge_patch(
        cp, ns, "zc", "demo", {"spec": {"cache": {"redis": {"urlSecret": None, "url": "redis://redis:6379/0"}}}}
    )

    def inline() -> dict[str, Any] | None:
        template = get(cp, "-n", ns, "statefulset", "demo")["spec"]["template"]
        return template if template["spec"]["containers"][0]["args"] == ["serve", "/etc/zot/config.json"] else None

    template = wait_for("the StatefulSet without its init container", inline, timeout=60)
    assert "initContainers" not in template["spec"]
    assert {v["name"] for v in template["spec"]["volumes"]} == {"config", "tls", "tmp", "data"}
    assert "zot-operator.io/secret-versions" in template["metadata"]["annotations"]  # the S3 credentials
    assert "registry-redis" not in template["metadata"]["annotations"]["zot-operator.io/secret-versions"]
