"""A child process in its own process group that dies with the test process: start it, ask whether it
runs, stop the whole group (SIGTERM, then SIGKILL). Also the pieces for callers that run their own
Popen: `die_with_parent` (a preexec_fn), `leader_exited` and `kill_group`."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:  # loaded here, not in the forked child: dlopen after fork is not safe
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _LIBC = None
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL when the test process dies without calling stop(). The kernel
    ties this to the thread that forked the child: a child started from a helper thread is killed when
    that thread ends, so such a thread must outlive (and stop) its children."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def leader_exited(process: subprocess.Popen[Any]) -> bool:
    """Whether `process` (a process group leader) has exited, without reaping it: until `kill_group`
    reaps it, its pid, and so the group id, cannot be reused, so signalling the group hits only ours."""
    if process.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # reaped behind our back (Popen.poll): nothing left to wait for
        return True


def kill_group(process: subprocess.Popen[Any], timeout: float = 10.0) -> int | None:
    """SIGKILL to the whole group of `process` (what it started, e.g. a registry's workers, too), then
    reap the leader; its exit code (None if it did not end within `timeout`)."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
    return process.returncode


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Component:
    """One control-plane process, its own process group, stdout+stderr in `log`."""

    name: str
    args: list[str]
    log: Path
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Component:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # own process group, stopped as a whole
                preexec_fn=die_with_parent,
            )
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the process group, SIGKILL after `timeout`. The group id is the leader's
        pid, which cannot be reused before the leader is reaped (wait), so only ours is hit."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
