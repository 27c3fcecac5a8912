"""Member processes of a cluster on one machine: start (`zot-registry serve`), readiness, stop."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import IO


def start_member(
    config: Path, workers: int = 1, output: IO[bytes] | None = None, own_session: bool = False
) -> subprocess.Popen[bytes]:
    """`zot-registry serve CONFIG` as a child process, with this interpreter (no PATH lookup).

    `own_session` keeps a terminal's Ctrl-C away from the member, so its supervisor alone decides
    when and in which order members stop.
    """
    return subprocess.Popen(
        [sys.executable, "-m", "zot_registry.cli", "serve", str(config), "--workers", str(workers)],
        stdout=output,
        stderr=subprocess.STDOUT if output else None,
        start_new_session=own_session,
    )


def member_ready(url: str, ca: Path | None, timeout: float = 2.0) -> bool:
    """True when the member at `url` answers its readiness probe with 200."""
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=timeout, context=context) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_members(
    processes: Iterable[subprocess.Popen[bytes]], timeout: float = 40.0, process_groups: bool = False
) -> list[int]:
    """SIGTERM every member at once (hypercorn's graceful shutdown), SIGKILL what is left after `timeout`.

    `process_groups` (members started with `own_session`): then each member's hypercorn workers are
    in its process group, and whatever of the group outlives the member (a worker orphaned when the
    member was killed) is stopped too, so nothing is left holding the port.
    """
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + timeout
    codes: list[int] = []
    for process in processes:
        try:
            codes.append(process.wait(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            process.kill()
            codes.append(process.wait())
    if process_groups:
        groups = [p.pid for p in processes if _group_alive(p.pid)]
        for pgid in groups:
            os.killpg(pgid, signal.SIGTERM)
        while groups and time.monotonic() < deadline:
            time.sleep(0.1)
            groups = [g for g in groups if _group_alive(g)]
        for pgid in groups:
            os.killpg(pgid, signal.SIGKILL)
    return codes
