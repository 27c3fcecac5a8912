"""The container image's install, without Docker: build the wheel the way the Dockerfile does, install
it into a fresh virtualenv (no editable install hiding a missing package or template), and start
`zot-registry serve` and `zot-operator render` from there. The kind workflow builds the real image."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from zot_registry.local.configs import member_config, write_config

from tests.support.dockerfile import instructions
from tests.support.paths import REPO_ROOT
from tests.support.ports import free_port


def test_dockerfile_runs_as_non_root_with_the_args_the_operator_gives_members() -> None:
    from zot_operator.names import ClusterRef
    from zot_operator.statefulset import RUN_AS, stateful_set

    steps = instructions()
    assert sum(1 for op, _ in steps if op == "FROM") >= 2, "multi-stage: no build tools in the final image"
    user = [arg for op, arg in steps if op == "USER"][-1]
    assert user.split(":")[0] == str(RUN_AS) != "0"
    entrypoint = json.loads([arg for op, arg in steps if op == "ENTRYPOINT"][-1])
    cmd = json.loads([arg for op, arg in steps if op == "CMD"][-1])
    container = stateful_set(ClusterRef("demo", "default"), "checksum", [])["spec"]["template"]["spec"]["containers"][0]
    # The operator sets only args, as for zot's own image: the entrypoint must be the registry.
    assert "command" not in container and entrypoint == ["zot-registry"] and cmd == container["args"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("image")
    source, wheels, venv = work / "src", work / "wheels", work / "venv"
    # The Dockerfile's build stage: what it COPYs, and a wheel of that (dependencies come from the index here).
    copies = [arg.split()[:-1] for op, arg in instructions() if op == "COPY" and "--from" not in arg]
    for names in copies:
        for name in names:
            target = source / name
            if (REPO_ROOT / name).is_dir():
                shutil.copytree(REPO_ROOT / name, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO_ROOT / name, target)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(source)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    (wheel,) = wheels.glob("zot_operator-*.whl")
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)], check=True, timeout=600, capture_output=True
    )
    return venv


def test_installed_registry_serves(installed: Path, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "config.json"
    write_config(
        config,
        member_config(tmp_path / "root", port, dedupe=None, gc=None, log_level="error"),
        indent=None,
        newline=False,
    )
    # Started outside the repository, so nothing can be imported from the source tree.
    process = subprocess.Popen(
        [str(installed / "bin" / "zot-registry"), "serve", str(config), "--workers", "1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=2)
                break
            except httpx.HTTPError:
                assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
                assert time.monotonic() < deadline, "the installed registry did not answer"
                time.sleep(0.2)
        assert response.status_code == 200
        assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_installed_operator_renders_with_its_packaged_templates(installed: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(installed / "bin" / "zot-operator"), "render", "-f", str(REPO_ROOT / "examples" / "zotcluster.yaml")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "kind: StatefulSet" in result.stdout and '"hashKey"' in result.stdout
    result = subprocess.run(
        [str(installed / "bin" / "zot-operator"), "local", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
