"""The members' init container: `zot-operator materialize-config`, run as the StatefulSet says."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from zot_operator.cli import _load_cluster
from zot_operator.render import render
from zot_operator.statefulset import CONFIG_KEY, RUNTIME_DIR, TEMPLATE_DIR
from zot_registry.config import load_config

from tests.support.paths import REPO_ROOT

S3_EXAMPLE = REPO_ROOT / "examples" / "zotcluster-s3.yaml"
URL = "redis://:s3cr3t-pw@redis.default.svc:6379/0"


def rendered_s3() -> tuple[str, dict[str, Any]]:
    rendered = render(_load_cluster(str(S3_EXAMPLE)), "0123456789abcdef")
    configmap = next(o for o in rendered.objects if o["kind"] == "ConfigMap")
    sts = next(o for o in rendered.objects if o["kind"] == "StatefulSet")
    return configmap["data"][CONFIG_KEY], sts["spec"]["template"]["spec"]["initContainers"][0]


def run_init_container(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The init container's command and args, with its two mounts as folders under tmp_path."""
    config_text, init = rendered_s3()
    template, runtime = tmp_path / "template", tmp_path / "runtime"
    template.mkdir()
    runtime.mkdir()
    (template / CONFIG_KEY).write_text(config_text)

    def local(arg: str) -> str:
        return arg.replace(TEMPLATE_DIR, str(template)).replace(RUNTIME_DIR, str(runtime))

    assert init["command"][0] == "zot-operator"
    command = [sys.executable, "-m", "zot_operator.cli", *init["command"][1:], *(local(a) for a in init["args"])]
    base = {k: v for k, v in os.environ.items() if k != "ZOT_REDIS_URL"}
    result = subprocess.run(command, env={**base, **env}, capture_output=True, text=True, timeout=60)
    return result, runtime / CONFIG_KEY


def test_the_init_container_writes_a_private_config_with_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, init = rendered_s3()
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in init["env"]}
    assert secret_env == {"ZOT_REDIS_URL": {"name": "registry-redis", "key": "url"}}
    result, written = run_init_container(tmp_path, {"ZOT_REDIS_URL": URL})
    assert result.returncode == 0, result.stderr
    assert URL not in result.stdout + result.stderr and "s3cr3t" not in result.stdout + result.stderr
    mode = stat.S_IMODE(written.stat().st_mode)
    assert mode & 0o077 == 0, oct(mode)  # neither group nor others: only the members' user reads it
    assert written.stat().st_uid == os.getuid()
    # What our registry (and zot) read: the URL in the config, no environment variable needed.
    monkeypatch.delenv("ZOT_REDIS_URL", raising=False)
    loaded = load_config(written)
    assert loaded.config.storage.cache_driver == {"name": "redis", "url": URL, "keyprefix": "zot"}
    # Everything else is the ConfigMap's config as it was.
    config_text, _ = rendered_s3()
    complete = json.loads(written.read_text())
    del complete["storage"]["cacheDriver"]["url"]
    assert complete == json.loads(config_text)
    assert [p.name for p in written.parent.iterdir()] == [CONFIG_KEY]  # no temporary file left


@pytest.mark.parametrize("env", [{}, {"ZOT_REDIS_URL": ""}])
def test_a_missing_value_is_one_line_and_writes_nothing(tmp_path: Path, env: dict[str, str]) -> None:
    result, written = run_init_container(tmp_path, env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(
        "error: the environment variable ZOT_REDIS_URL (for storage.cacheDriver.url) is unset or empty"
    )
    assert not written.exists()
