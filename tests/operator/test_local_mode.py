"""`zot-operator local up` / `local scale`, driven as a user would from two shells."""

from __future__ import annotations

import base64
import contextlib
import json
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml
from zot_registry.cluster.hashing import owner_index

from tests.support.commands import run
from tests.support.images import blob_files, write_oci_layout
from tests.support.kubectl import wait_for
from tests.support.paths import REPO_ROOT, tool
from tests.support.ports import port_free_on_all
from tests.support.rebalance import Workload
from tests.support.registry import write_htpasswd

EXAMPLE = REPO_ROOT / "examples" / "zotcluster.yaml"
CLI = [sys.executable, "-m", "zot_operator.cli", "local"]


def example_on_port(folder: Path, port: int, **spec: object) -> Path:
    """The shipped example, unchanged but for its port (and `spec` overrides)."""
    documents = list(yaml.safe_load_all(EXAMPLE.read_text()))
    documents[0]["spec"].update(port=port, **spec)
    path = folder / "zotcluster.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    return path


class Output:
    """The lines a process prints, read by a thread so its pipe never fills."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process, self.lines = process, list[str]()
        assert process.stdout is not None
        self._thread = threading.Thread(target=lambda: self.lines.extend(process.stdout or []), daemon=True)
        self._thread.start()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, prefix: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in list(self.lines) if line.startswith(prefix)]
            if found:
                return found[-1].strip()
            assert self.process.poll() is None, f"exited with {self.process.returncode}:\n{self.text}"
            time.sleep(0.1)
        raise AssertionError(f"no line starting with {prefix!r} after {timeout} s:\n{self.text}")


def stop(process: subprocess.Popen[str] | subprocess.Popen[bytes], descendants: list[psutil.Process]) -> None:
    """After a failed assertion: stop the supervisor as a user would (it stops its members), and
    anything it started that is still there, so a failing test leaves no registry behind."""
    if process.poll() is None:
        descendants += psutil.Process(process.pid).children(recursive=True)
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for leftover in descendants:
        with contextlib.suppress(psutil.Error):
            leftover.kill()


def listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def test_up_push_scale_pull_ctrl_c(tmp_path: Path) -> None:
    port = port_free_on_all(5)
    state = tmp_path / "state"
    process = subprocess.Popen(
        [*CLI, "up", "-f", str(example_on_port(tmp_path, port)), "--dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    output = Output(process)
    descendants: list[psutil.Process] = []
    try:
        output.wait_for("ready:")
        assert "member 3/3 ready" in output.text
        assert output.text.count("of repository names") == 3  # one owner share per member
        descendants += psutil.Process(process.pid).children(recursive=True)
        user, password = output.wait_for("credentials:").split()[1], output.wait_for("credentials:").split()[3]
        push = shlex.split(output.wait_for("push:").removeprefix("push:"))

        # Repositories that keep their owner from 3 to 5 members, and one that changes owner.
        key = (state / "hashkey").read_bytes()
        names = [f"demo/app-{i}" for i in range(200)]
        kept = [n for n in names if owner_index(n, key, 3) == owner_index(n, key, 5)][:2]
        moved = next(n for n in names if owner_index(n, key, 3) != owner_index(n, key, 5))
        sources = {}
        for index, repo in enumerate([*kept, moved]):
            sources[repo] = tmp_path / f"src-{index}"
            write_oci_layout(sources[repo], "v1", repo, (4096, 70_000))
            # The printed command, with a local image instead of busybox, through member `index`.
            assert push[:2] == ["skopeo", "copy"]
            run(
                tool("skopeo"),
                "--insecure-policy",
                *push[1:-2],
                "--preserve-digests",
                f"oci:{sources[repo]}:v1",
                f"docker://127.0.0.{index + 1}:{port}/{repo}:v1",
            )

        def scale(replicas: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*CLI, "scale", replicas, "--dir", str(state)],
                capture_output=True,
                text=True,
                timeout=180,
                cwd=tmp_path,
            )

        with socket.socket() as squatter:  # a new member's address is taken: refused, nothing restarts
            squatter.bind(("127.0.0.5", port))
            squatter.listen()
            refused = scale("5")
        assert refused.returncode == 1
        assert f"error: scale refused: port {port} is taken on 127.0.0.5" in refused.stdout
        members_before = json.loads((state / "state.json").read_text())["memberPids"]
        # Clients push and pull throughout the resize, through the members of the list in use.
        routed = {"urls": [f"https://127.0.0.{i}:{port}" for i in range(1, 4)]}
        workload = Workload(
            lambda: routed["urls"],
            state / "client-certs" / "ca.crt",
            (user, password),
            [f"busy/app-{i}" for i in range(12)],
        ).start(pushers=2, pullers=2)
        try:
            scaled = scale("5")
        finally:
            workload.stop()
        routed["urls"] = [f"https://127.0.0.{i}:{port}" for i in range(1, 6)]
        assert workload.stats.failures == [], "\n".join(workload.stats.failures[:10])
        # Pullers started before the first push: they wait for one (they once quit at once, pulling nothing).
        assert workload.stats.pushes > 0 and workload.stats.pulls > 0
        assert workload.check_everything_pulls(routed["urls"]) == []
        assert scaled.returncode == 0, scaled.stdout + scaled.stderr
        assert "membership change 3 -> 5 members, in place: no member restarts" in scaled.stdout
        assert "RebalanceDone: epoch 1: 3 -> 5 members;" in scaled.stdout
        assert "member 5/5 ready" in scaled.stdout
        assert f"5 members ready: {', '.join(f'127.0.0.{i}:{port}' for i in range(1, 6))}" in scaled.stdout
        # The three members that were there never restarted: the same processes run.
        assert json.loads((state / "state.json").read_text())["memberPids"][:3] == members_before
        descendants += psutil.Process(process.pid).children(recursive=True)
        again = scale("5")
        assert again.returncode == 0 and "already 5 members: nothing to restart" in again.stdout

        # Every repository reads back, byte for byte, through every member (non-owners proxy): the one
        # whose owner changed too, copied to its new owner before the new list took effect.
        for repo in [*kept, moved]:
            for member in range(1, 6):
                back = tmp_path / f"back-{repo.replace('/', '-')}-{member}"
                run(
                    tool("skopeo"),
                    "--insecure-policy",
                    "copy",
                    "--preserve-digests",
                    "--src-cert-dir",
                    str(state / "client-certs"),
                    "--src-creds",
                    f"{user}:{password}",
                    f"docker://127.0.0.{member}:{port}/{repo}:v1",
                    f"oci:{back}:v1",
                )
                assert blob_files(back) == blob_files(sources[repo])
        # It lives on its new owner's volume only: the old owner's copy was retired after the switch.
        old_owner, new_owner = owner_index(moved, key, 3), owner_index(moved, key, 5)
        assert (state / "data" / f"member-{new_owner}" / moved / "index.json").is_file()
        wait_for(
            "the old copy retired",
            lambda: not (state / "data" / f"member-{old_owner}" / moved / "index.json").exists(),
            timeout=30,
        )

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, output.text
        assert "all members stopped" in output.text
        _, alive = psutil.wait_procs(descendants, timeout=10)
        assert not alive, f"left running: {alive}"
        assert not [i for i in range(1, 6) if listening(f"127.0.0.{i}", port)]
    finally:
        stop(process, descendants)


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    port = port_free_on_all(3)
    bad = subprocess.run(
        [*CLI, "up", "-f", str(example_on_port(tmp_path, port, replicas=0))],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert bad.returncode == 2
    assert "zotcluster.yaml:14:3: spec.replicas: must be at least 1, got 0" in bad.stderr
    assert "Traceback" not in bad.stderr + bad.stdout

    with socket.socket() as taken:
        taken.bind(("127.0.0.2", port))
        taken.listen()
        busy = subprocess.run(
            [*CLI, "up", "-f", str(example_on_port(tmp_path, port))],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
    assert busy.returncode == 2
    assert f"port {port} is already taken on 127.0.0.2" in busy.stderr
    assert "Traceback" not in busy.stderr + busy.stdout

    nothing = subprocess.run([*CLI, "scale", "5"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert nothing.returncode == 2
    assert "no local cluster runs under .zot-local/ here" in nothing.stderr


@pytest.mark.parametrize("replicas", ["0", "300", "many"])
def test_scale_rejects_bad_counts(tmp_path: Path, replicas: str) -> None:
    result = subprocess.run([*CLI, "scale", replicas], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "scale: error: argument replicas" in result.stderr


def test_secrets_in_the_manifest_and_the_operators_config(tmp_path: Path) -> None:
    """Secrets written beside the ZotCluster stand in for the cluster's: the htpasswd and the hash key
    are those, and config.json is what `zot-operator render` puts in the ConfigMap but for the members."""
    port = port_free_on_all(2)
    manifest = example_on_port(tmp_path, port, replicas=2, hashKeySecret="demo-key")
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "wonderland"}).read_text()
    secrets = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "demo-htpasswd"},
            "stringData": {"htpasswd": htpasswd},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "demo-key"},
            "data": {"hashKey": base64.b64encode(b"loremipsumdolors").decode()},
        },
    ]
    manifest.write_text(manifest.read_text() + "---\n" + yaml.safe_dump_all(secrets))
    process = subprocess.Popen(
        [*CLI, "up", "-f", str(manifest)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path
    )
    output = Output(process)
    try:
        output.wait_for("ready:")
        state = tmp_path / ".zot-local" / "demo"
        assert (state / "hashkey").read_bytes() == b"loremipsumdolors"
        assert "credentials: alice / (the one for this user in the Secret)" in output.text
        ca = ssl.create_default_context(cafile=str(state / "client-certs" / "ca.crt"))
        for member in (1, 2):
            url = f"https://127.0.0.{member}:{port}/v2/"
            assert httpx.get(url, verify=ca, auth=("alice", "wonderland")).status_code == 200
            assert httpx.get(url, verify=ca, auth=("alice", "wrong")).status_code == 401

        rendered = subprocess.run(
            [sys.executable, "-m", "zot_operator.cli", "render", "-f", str(manifest), "--hash-key", "loremipsumdolors"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert rendered.returncode == 0, rendered.stderr
        config_map = next(d for d in yaml.safe_load_all(rendered.stdout) if d["kind"] == "ConfigMap")
        operators = json.loads(config_map["data"]["config.json"])
        local = json.loads((state / "config.json").read_text())
        assert local["cluster"].pop("members") == [f"127.0.0.1:{port}", f"127.0.0.2:{port}"]
        operators["cluster"].pop("members")
        assert local == operators

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, output.text
    finally:
        stop(process, [])


def assert_stopped_cleanly(
    process: subprocess.Popen[Any], descendants: list[psutil.Process], state: Path, port: int
) -> None:
    """The supervisor exits 0, no member is left, nothing listens, and state.json says Stopped."""
    code = process.wait(timeout=60)
    _, alive = psutil.wait_procs(descendants, timeout=10)
    assert not alive, f"left running: {alive}"
    final = json.loads((state / "state.json").read_text())
    assert final["phase"] == "Stopped" and final["pid"] is None and final["memberPids"] == []
    assert not listening("127.0.0.1", port)
    assert code == 0


@pytest.mark.parametrize("resize", [False, True], ids=["sighup", "resize-then-sighup"])
def test_closed_output_and_sighup_still_stop_every_member(tmp_path: Path, resize: bool) -> None:
    """The terminal closed: stdout is a pipe nobody reads any more, then SIGHUP. Printing fails from
    then on; the supervisor must go on (a resize still works), stop every member on SIGHUP, and
    leave a state.json that no longer says Running."""
    port = port_free_on_all(2)
    state = tmp_path / "state"
    process = subprocess.Popen(
        [*CLI, "up", "-f", str(example_on_port(tmp_path, port, replicas=2)), "--dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    assert process.stdout is not None
    descendants: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 90
        for line in process.stdout:  # read until ready, then never again
            if line.startswith("ready:") or time.monotonic() > deadline:
                break
        descendants += psutil.Process(process.pid).children(recursive=True)
        assert len(descendants) >= 2, "the members did not start"
        process.stdout.close()  # the terminal is gone: every later write fails (EPIPE)

        if resize:  # the progress of a resize is printed too: that fails, the resize does not
            scaled = subprocess.run(
                [*CLI, "scale", "1", "--dir", str(state)], capture_output=True, text=True, timeout=180, cwd=tmp_path
            )
            assert scaled.returncode == 0, scaled.stdout + scaled.stderr
            assert process.poll() is None, "the supervisor died when its output failed"
            descendants += psutil.Process(process.pid).children(recursive=True)

        process.send_signal(signal.SIGHUP)
        assert_stopped_cleanly(process, descendants, state, port)
    finally:
        stop(process, descendants)


def test_closing_its_terminal_stops_every_member(tmp_path: Path) -> None:
    """`local up` in a real terminal (a pty it controls) that is closed: the kernel hangs the session
    up (SIGHUP, and EIO on every write from then on); every member stops all the same."""
    import fcntl
    import os
    import pty
    import select
    import termios

    port = port_free_on_all(2)
    state = tmp_path / "state"
    master, tty = pty.openpty()

    def take_tty() -> None:  # in the child, a session leader after start_new_session: the pty is its terminal
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    up = [*CLI, "up", "-f", str(example_on_port(tmp_path, port, replicas=2)), "--dir", str(state)]
    process = subprocess.Popen(
        up, stdin=tty, stdout=tty, stderr=tty, cwd=tmp_path, start_new_session=True, preexec_fn=take_tty
    )
    os.close(tty)
    descendants: list[psutil.Process] = []
    try:
        seen, deadline = b"", time.monotonic() + 90
        while b"ready:" not in seen and time.monotonic() < deadline and process.poll() is None:
            if select.select([master], [], [], 1)[0]:
                seen += os.read(master, 65536)
        assert b"ready:" in seen, seen.decode(errors="replace")
        descendants += psutil.Process(process.pid).children(recursive=True)
        assert len(descendants) >= 2, "the members did not start"
        os.close(master)  # the terminal window closes
        master = -1
        assert_stopped_cleanly(process, descendants, state, port)
    finally:
        if master >= 0:
            os.close(master)
        stop(process, descendants)
