"""The README's local-mode quick start, every command exactly as written, on a fresh copy of the project.

A newcomer runs `make run` in one terminal and, once it says `ready:`, the second block in another;
so does this test: the two ```sh blocks of the section are read from README.md and run with bash, the
first in the background (as its own process group, the terminal's foreground job), the second with
`set -e`, in a copy of the files a clone has (tracked and untracked, not ignored: the work in
progress too). The copy shares the project's virtualenv and `.tools/` (links), so `make run` installs
nothing and `hack/tools.sh quickstart` finds its tools, as they are after `make test`; everything else
is the copy's own: `.zot-local/demo`, `hello.txt`, `out/`. Then Ctrl-C (SIGINT to that group) and
nothing may be left listening. A README command that breaks fails this test.

The example listens where the README says, port 5000 on 127.0.0.1 to 127.0.0.5: a test that starts
while something else holds it fails at once, saying what is in the way.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.checks import assert_no_traceback
from tests.support.paths import REPO_ROOT

SECTION = "## Quick start: local mode (no Kubernetes)"
PORT, MEMBERS = 5000, 5  # what the README's commands use: the example's port, and `local scale 5`
READY_WITHIN = 300.0  # bound for `make run` to print `ready:` (a failure, not a timing check)
COMMANDS_WITHIN = 900  # bound for the second block: the tools step may build oras on a cold .tools


def quickstart_blocks(readme: str) -> tuple[str, str]:
    """The first two ```sh blocks of the local-mode quick start: the first terminal's, the second's."""
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```sh\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)
    assert len(blocks) >= 2, f"the quick start has no two ```sh blocks:\n{section}"
    return blocks[0], blocks[1]


def fresh_copy(target: Path) -> Path:
    """The files a clone has, plus uncommitted work, with the project's venv and tools linked in."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    target.mkdir()
    with tarfile.open(target / ".copy.tar", "w") as archive:
        for name in filter(None, listed):
            path = REPO_ROOT / os.fsdecode(name)
            if path.exists():  # deleted but not yet committed
                archive.add(path, arcname=os.fsdecode(name), recursive=False)
    with tarfile.open(target / ".copy.tar") as archive:
        archive.extractall(target, filter="tar")  # keeps modification times: make sees the venv as current
    (target / ".copy.tar").unlink()
    venv, stamp = REPO_ROOT / ".venv", REPO_ROOT / ".venv" / ".installed"
    # Else `make run` would reinstall, pointing the shared venv's editable install at the copy.
    assert stamp.exists() and stamp.stat().st_mtime >= (REPO_ROOT / "pyproject.toml").stat().st_mtime, (
        "the project's .venv is older than pyproject.toml: run `make venv` first"
    )
    (target / ".venv").symlink_to(venv)
    (target / ".tools").symlink_to(REPO_ROOT / ".tools")
    return target


def listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


class Terminal:
    """The first terminal: a bash running the block as its own process group, its output collected."""

    def __init__(self, script: str, cwd: Path) -> None:
        self.process = subprocess.Popen(
            ["bash", "-c", script],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout or []), daemon=True).start()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, prefix: str) -> None:
        deadline = time.monotonic() + READY_WITHIN
        while not any(line.startswith(prefix) for line in list(self.lines)):
            assert self.process.poll() is None, f"`make run` exited with {self.process.returncode}:\n{self.text}"
            assert time.monotonic() < deadline, f"no {prefix!r} line from `make run`:\n{self.text}"
            time.sleep(0.2)

    def ctrl_c(self) -> int:
        """What Ctrl-C does: SIGINT to the foreground process group (make and what it runs)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise AssertionError(f"Ctrl-C did not stop `make run`:\n{self.text}") from None


@pytest.fixture
def checkout(tmp_path: Path) -> Iterator[Path]:
    busy = [f"127.0.0.{i}:{PORT}" for i in range(1, MEMBERS + 1) if listening(f"127.0.0.{i}", PORT)]
    assert not busy, f"the quick start's addresses are taken (another `make run`?): {', '.join(busy)}"
    yield fresh_copy(tmp_path / "zot-operator")


def test_readme_quickstart_runs_as_written(checkout: Path) -> None:
    first, second = quickstart_blocks((checkout / "README.md").read_text())
    assert first.strip() == "make run", first
    terminal = Terminal(first, checkout)
    try:
        terminal.wait_for("ready:")
        commands = subprocess.run(
            ["bash", "-euxo", "pipefail", "-c", second],
            cwd=checkout,
            capture_output=True,
            text=True,
            timeout=COMMANDS_WITHIN,
        )
        shown = f"{commands.stdout}\n{commands.stderr}\n--- make run:\n{terminal.text}"
        assert commands.returncode == 0, f"a quick-start command failed:\n{shown}"
        assert_no_traceback(commands.stdout + commands.stderr, "the quick start's commands")

        # What the user sees: the file pulled back is the one pushed, and five members serve.
        assert (checkout / "out" / "hello.txt").read_text() == (checkout / "hello.txt").read_text() == "hello\n"
        assert f"scaled: {MEMBERS} members ready" in commands.stdout, shown
        # The sample image pushed through member 0 is served by the new member 4 (it proxies to the owner).
        state = checkout / ".zot-local" / "demo"
        password = (state / "auth" / "admin-password").read_text().strip()
        index = json.loads((state / "sample-image" / "index.json").read_text())
        answer = httpx.get(
            f"https://127.0.0.{MEMBERS}:{PORT}/v2/demo/sample/manifests/v1",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
            auth=("admin", password),
            verify=ssl.create_default_context(cafile=str(state / "tls" / "ca.crt")),
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        assert f"sha256:{hashlib.sha256(answer.content).hexdigest()}" == index["manifests"][0]["digest"]
    finally:
        code = terminal.ctrl_c()
    assert_no_traceback(terminal.text, "make run")
    assert "all members stopped" in terminal.text, terminal.text
    # Ctrl-C's usual ending: make, interrupted too, ends itself by the signal once its child is done.
    assert code in (0, -signal.SIGINT, 128 + signal.SIGINT), terminal.text
    left = [f"127.0.0.{i}:{PORT}" for i in range(1, MEMBERS + 1) if listening(f"127.0.0.{i}", PORT)]
    assert not left, f"still listening after Ctrl-C: {left}\n{terminal.text}"
