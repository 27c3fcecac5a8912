"""The project image as hack/build-image.sh builds it without Docker (the OCI archive a kubelet's
containerd imports): its config says what the Dockerfile says, and its programs run from it under
runc, unpacked by umoci, as the members' pods run it: the image's user, a read-only root, no
capabilities. tests/registry/test_image_install.py checks the Dockerfile's text and the install
itself; this checks the image that came out."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from zot_operator.models import DEFAULT_IMAGE
from zot_operator.statefulset import CONFIG_MOUNT, DATA_DIR, RUN_AS
from zot_registry.local.configs import member_config, write_config

from tests.support.dockerfile import instructions
from tests.support.images import sha256
from tests.support.paths import REPO_ROOT
from tests.support.ports import free_port
from tests.support.project_image import project_image_archive

REF_NAME = "org.opencontainers.image.ref.name"


@pytest.fixture(scope="module")
def archive() -> Path:
    return project_image_archive()


def _blob(tar: tarfile.TarFile, digest: str) -> bytes:
    algorithm, hex_digest = digest.split(":", 1)
    member = tar.extractfile(f"blobs/{algorithm}/{hex_digest}")
    assert member is not None, digest
    return member.read()


@pytest.fixture(scope="module")
def config(archive: Path) -> dict[str, Any]:
    """The image's config blob, through index.json and the manifest as an importer reads them."""
    with tarfile.open(archive) as tar:
        index_file = tar.extractfile("index.json")
        assert index_file is not None
        index = json.load(index_file)
        (entry,) = index["manifests"]
        # The name the chart and the operator's default image ask for, which `ctr images import` takes.
        assert entry["annotations"][REF_NAME] == DEFAULT_IMAGE
        manifest = json.loads(_blob(tar, entry["digest"]))
        config: dict[str, Any] = json.loads(_blob(tar, manifest["config"]["digest"]))
    assert len(config["rootfs"]["diff_ids"]) == len(manifest["layers"]) == 2, "base and the virtualenv"
    return config


def _last(op: str) -> str:
    return [arg for name, arg in instructions() if name == op][-1]


def test_config_says_what_the_dockerfile_says(config: dict[str, Any]) -> None:
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    image = config["config"]
    assert image["User"] == _last("USER") == f"{RUN_AS}:{RUN_AS}"
    assert image["Entrypoint"] == json.loads(_last("ENTRYPOINT")) == ["zot-registry"]
    assert image["Cmd"] == json.loads(_last("CMD")) == ["serve", CONFIG_MOUNT]
    assert image["ExposedPorts"] == {f"{_last('EXPOSE')}/tcp": {}} == {"5000/tcp": {}}
    env = dict(item.split("=", 1) for item in image["Env"])
    # The Dockerfile's ENV on top of the base's PATH, python:3.11-slim's one.
    assert env["PATH"] == "/opt/zot/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert env["PYTHONDONTWRITEBYTECODE"] == env["PYTHONUNBUFFERED"] == "1"
    assert env["LANG"] == "C.UTF-8"


@pytest.fixture(scope="module")
def unpacked(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runtime bundle from the archive: umoci turns the image config into the runtime spec
    (config.json: user, args, environment) and unpacks the layers into rootfs/."""
    work = tmp_path_factory.mktemp("image-bundle")
    layout, bundle = work / "layout", work / "bundle"
    with tarfile.open(archive) as tar:
        tar.extractall(layout, filter="data")
    result = subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:{DEFAULT_IMAGE}", str(bundle)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    shutil.rmtree(layout)
    return bundle


def _spec(unpacked: Path, work: Path, args: list[str] | None, mounts: list[dict[str, Any]]) -> Path:
    """A bundle in `work` running the unpacked rootfs as the members' pods do: read-only root, no
    capabilities, no privilege gain, an empty /tmp. `args` None keeps the image's entrypoint + cmd.
    It stays in the host's network namespace, so a server in it is reached on 127.0.0.1."""
    spec: dict[str, Any] = json.loads((unpacked / "config.json").read_text())
    process = spec["process"]
    process["terminal"] = False
    process["noNewPrivileges"] = True
    process["capabilities"] = {key: [] for key in ("bounding", "effective", "inheritable", "permitted", "ambient")}
    if args is not None:
        process["args"] = args
    spec["root"] = {"path": str(unpacked / "rootfs"), "readonly": True}
    spec["mounts"] = [
        *spec["mounts"],
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
        *mounts,
    ]
    linux = spec["linux"]
    linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "network"]
    linux["cgroupsPath"] = f"/zot-image-test-{os.getpid()}-{work.name}"  # flat: runc delete removes it all
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.json").write_text(json.dumps(spec))
    return work


def _runc(state: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runc", "--root", str(state), *args], capture_output=True, text=True, timeout=timeout)


@contextmanager
def _container(
    unpacked: Path, tmp_path: Path, args: list[str] | None, mounts: list[dict[str, Any]] | None = None
) -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    """`runc run` of a bundle in the foreground, stdout and stderr to files; killed and deleted on exit."""
    bundle = _spec(unpacked, tmp_path / f"bundle-{uuid.uuid4().hex[:8]}", args, mounts or [])
    state = tmp_path / "runc-state"
    name = f"zot-image-test-{os.getpid()}-{bundle.name}"
    with (bundle / "stdout").open("w") as out, (bundle / "stderr").open("w") as err:
        process = subprocess.Popen(
            ["runc", "--root", str(state), "run", "--bundle", str(bundle), name],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            text=True,
        )
    try:
        yield name, bundle, process
    finally:
        if process.poll() is None:
            _runc(state, "kill", name, "TERM")
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _runc(state, "kill", name, "KILL")
                process.wait(timeout=30)
        _runc(state, "delete", "--force", name)


@pytest.mark.parametrize("program", ["zot-registry", "zot-operator"])
def test_programs_start_from_the_image(unpacked: Path, tmp_path: Path, program: str) -> None:
    # By name: the image's PATH finds them in /opt/zot/bin.
    with _container(unpacked, tmp_path, [program, "--help"]) as (_, bundle, process):
        assert process.wait(timeout=120) == 0, (bundle / "stderr").read_text()
        assert "usage:" in (bundle / "stdout").read_text().lower()


def _ids(pid: int) -> tuple[list[str], list[str]]:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return status["Uid"].split(), status["Gid"].split()


def test_registry_serves_as_the_image_user_with_the_image_command(unpacked: Path, tmp_path: Path) -> None:
    port = free_port()
    data, config = tmp_path / "data", tmp_path / "config.json"
    data.mkdir()
    os.chown(data, RUN_AS, RUN_AS)  # a pod's volume with fsGroup 10001
    write_config(
        config, member_config(Path(DATA_DIR), port, dedupe=None, gc=None, log_level="error"), indent=None, newline=False
    )
    config.chmod(0o644)
    mounts = [
        {"destination": CONFIG_MOUNT, "type": "bind", "source": str(config), "options": ["rbind", "ro"]},
        {"destination": DATA_DIR, "type": "bind", "source": str(data), "options": ["rbind", "rw"]},
    ]
    # No args: the image's own `zot-registry serve /etc/zot/config.json`, as a member runs it.
    with _container(unpacked, tmp_path, None, mounts) as (name, bundle, process):
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=2)
                break
            except httpx.HTTPError:
                assert process.poll() is None, (bundle / "stderr").read_text()
                assert time.monotonic() < deadline, "the registry in the image did not answer"
                time.sleep(0.2)
        assert response.status_code == 200
        assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        state = _runc(tmp_path / "runc-state", "state", name)
        assert state.returncode == 0, state.stderr
        pid = json.loads(state.stdout)["pid"]
        assert _ids(pid) == ([str(RUN_AS)] * 4, [str(RUN_AS)] * 4)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[1:4] == [b"/opt/zot/bin/zot-registry", b"serve", CONFIG_MOUNT.encode()], cmdline
        # A blob pushed is stored in the volume, as the image's user, and reads back.
        blob = b"a blob from outside the container"
        digest = sha256(blob)
        pushed = httpx.post(f"http://127.0.0.1:{port}/v2/image-test/blobs/uploads/?digest={digest}", content=blob)
        assert pushed.status_code == 201, pushed.text
        assert httpx.get(f"http://127.0.0.1:{port}/v2/image-test/blobs/{digest}").content == blob
        stored = [path for path in data.rglob("*") if path.is_file() and path.read_bytes() == blob]
        assert stored and all(path.stat().st_uid == RUN_AS for path in stored), stored


def test_operator_renders_with_the_templates_packaged_in_the_image(unpacked: Path, tmp_path: Path) -> None:
    # Only the wheel is in the image: a template or package left out of it fails here.
    example = tmp_path / "zotcluster.yaml"
    shutil.copy(REPO_ROOT / "examples" / "zotcluster.yaml", example)
    example.chmod(0o644)
    mounts = [
        {"destination": "/work/zotcluster.yaml", "type": "bind", "source": str(example), "options": ["rbind", "ro"]}
    ]
    args = ["zot-operator", "render", "-f", "/work/zotcluster.yaml"]
    with _container(unpacked, tmp_path, args, mounts) as (_, bundle, process):
        assert process.wait(timeout=120) == 0, (bundle / "stderr").read_text()
        rendered = (bundle / "stdout").read_text()
    assert "kind: StatefulSet" in rendered and '"hashKey"' in rendered
    with _container(unpacked, tmp_path, ["zot-operator", "local", "--help"]) as (_, bundle, process):
        assert process.wait(timeout=120) == 0, (bundle / "stderr").read_text()
