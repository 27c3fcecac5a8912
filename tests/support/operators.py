"""`zot-operator run` as a child process against a test API server, with a short drift-check interval."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.support.control_plane import HOST
from tests.support.ports import free_port

# The operator's drift-check interval in tests (handlers.RESYNC_SECONDS, 10 s by default).
OPERATOR_RESYNC_SECONDS = 3.0


@contextlib.contextmanager
def operator_process(
    kubeconfig_path: Path, log: Path, *args: str, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """`zot-operator run ARGS` against the API server of `kubeconfig_path`, its output in `log`,
    liveness on a free loopback port; stopped (SIGTERM, then SIGKILL) when the block ends. `env` adds
    to (or replaces) this process's environment, e.g. tests.support.hosts.resolver_env()."""
    environment = {
        **os.environ,
        **(env or {}),
        "KUBECONFIG": str(kubeconfig_path),
        "PYTHONUNBUFFERED": "1",
        "ZOT_OPERATOR_RESYNC_SECONDS": str(OPERATOR_RESYNC_SECONDS),
    }
    argv = [sys.executable, "-m", "zot_operator.cli", "run", f"--liveness=http://{HOST}:{free_port()}/healthz", *args]
    with open(log, "w") as out:
        process = subprocess.Popen(argv, env=environment, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
