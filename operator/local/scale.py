"""`zot-operator local scale N`: ask the running `local up` to resize, and follow it to the end.

The request is a file (desired.json: replicas and a generation number) plus SIGUSR1 to the
supervisor; the supervisor reports through state.json, which this command polls and prints.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from .manifest import ManifestError
from .state import read_json, supervisor_pid, write_json

TIMEOUT = 300.0  # seconds: stopping and starting every member, with room for a slow machine
POLL = 0.2


def find_folder(folder: Path | None) -> Path:
    """`--dir`, or the one folder under .zot-local/ whose `local up` still runs."""
    if folder is not None:
        return folder.absolute()
    running = sorted(p.parent.absolute() for p in Path(".zot-local").glob("*/state.json") if supervisor_pid(p.parent))
    if len(running) == 1:
        return running[0]
    if not running:
        raise ManifestError(
            "no local cluster runs under .zot-local/ here: start one with "
            "`zot-operator local up -f FILE`, or pass --dir STATE_DIR"
        )
    raise ManifestError("several local clusters run here; pick one with --dir: " + ", ".join(str(p) for p in running))


def scale(replicas: int, folder: Path | None) -> int:
    folder = find_folder(folder)
    pid = supervisor_pid(folder)
    if pid is None:
        raise ManifestError(f"no `zot-operator local up` runs from {folder}: start it first")
    state, desired = read_json(folder / "state.json"), read_json(folder / "desired.json")
    generation = max(int(state.get("generation", 0)), int(desired.get("generation", 0))) + 1
    write_json(folder / "desired.json", {"replicas": replicas, "generation": generation})
    os.kill(pid, signal.SIGUSR1)
    print(f"asked the local cluster in {folder} (pid {pid}) for {replicas} members", flush=True)
    printed = 0
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        state = read_json(folder / "state.json")
        current = int(state.get("generation", 0)) >= generation
        if current:
            # The supervisor's progress of this request, in order (events restart with each request).
            events = state.get("events") or []
            for event in events[printed:]:
                print(event, flush=True)
            printed = max(printed, len(events))
        if current and state.get("phase") in ("Running", "Failed"):
            if state.get("error"):
                print(f"error: {state['error']}", flush=True)
                return 1
            members = state.get("members") or []
            print(f"scaled: {len(members)} members ready: {', '.join(members)}", flush=True)
            return 0
        if supervisor_pid(folder) is None:
            print(f"error: the local cluster stopped while resizing: {state.get('error') or 'see its output'}")
            return 1
        time.sleep(POLL)
    print(f"error: not done after {TIMEOUT:.0f} s; the `local up` output says why")
    return 1
