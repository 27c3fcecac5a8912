"""A registry under test: `zot-registry serve` started as a real process, its config and htpasswd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import httpx
from zot_registry.local.configs import member_config

from tests.support.process_groups import die_with_parent


def write_htpasswd(path: Path, users: dict[str, str]) -> Path:
    lines = [f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=5)).decode()}" for user, pw in users.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class RegistryProcess:
    """`zot-registry serve` running as a separate process on a loopback address."""

    config_path: Path
    config: dict[str, Any]
    log_path: Path
    workers: int = 2
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)
    die_with_parent: bool = False

    @property
    def host(self) -> str:
        return str(self.config["http"]["address"])

    @property
    def port(self) -> int:
        return int(self.config["http"]["port"])

    @property
    def scheme(self) -> str:
        return "https" if self.config["http"].get("tls") else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def root(self) -> Path:
        return Path(self.config["storage"]["rootDirectory"])

    def spawn(self) -> subprocess.Popen[bytes]:
        """Writes the config and starts the process, in a session (process group) of its own, without
        waiting for it to listen. With `die_with_parent` it gets SIGKILL when the thread that called
        this ends (prctl PDEATHSIG), so nothing outlives a test that was killed."""
        self.config_path.write_text(json.dumps(self.config, indent=2))
        env = {**os.environ, **self.env}
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "zot_registry.cli",
                    "serve",
                    str(self.config_path),
                    "--workers",
                    str(self.workers),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=die_with_parent if self.die_with_parent else None,
            )
        return self.process

    def start(self, timeout: float = 30.0) -> RegistryProcess:
        self.spawn()
        return self.wait_live(timeout)

    def wait_live(self, timeout: float = 30.0) -> RegistryProcess:
        """Until the spawned process answers /livez (RuntimeError with its log if it exits or does not)."""
        process = self.process
        assert process is not None, "spawn() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                output = self.log_path.read_text()[-3000:]
                raise RuntimeError(f"registry exited with {process.returncode}:\n{output}")
            try:
                if httpx.get(f"{self.url}/livez", verify=False, timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"registry did not start in {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def __enter__(self) -> RegistryProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        """`with registry.start() as registry:` stops it when the block ends, however it ends."""
        self.stop()

    def stop(self) -> None:
        stop_all([self])


def start_all(members: Iterable[RegistryProcess], timeout: float = 30.0) -> None:
    """Spawn every member, then wait for each: they start side by side, as a StatefulSet's pods do."""
    members = list(members)
    for member in members:
        member.spawn()
    try:
        for member in members:
            member.wait_live(timeout)
    except Exception:
        stop_all(members)
        raise


def stop_all(members: Iterable[RegistryProcess]) -> None:
    """SIGTERM every member first, then wait for each: a member with idle TLS connections from a client
    or a peer takes hypercorn_patches.CLOSE_WAIT (2 s) to stop, and one by one those waits added up."""
    running = [m.process for m in members if m.process is not None and m.process.poll() is None]
    for process in running:
        process.terminate()
    for process in running:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def registry_config(root: Path, port: int, host: str = "127.0.0.1", **http: Any) -> dict[str, Any]:
    """A single member storing in `root`, listening on `host:port`; `http` adds keys to its http section."""
    return member_config(root, port, host, http=http)
