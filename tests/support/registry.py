"""A registry under test: `zot-registry serve` started as a real process, its config and htpasswd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
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
        process = self.spawn()
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
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def registry_config(root: Path, port: int, host: str = "127.0.0.1", **http: Any) -> dict[str, Any]:
    """A single member storing in `root`, listening on `host:port`; `http` adds keys to its http section."""
    return member_config(root, port, host, http=http)
