"""cProfile of our registry in one worker, under one of the benchmark's workloads.

The child (`python -m bench.profile serve CONFIG STATS`) imports `zot_registry.asgi`, the module a
hypercorn worker loads, with the same hypercorn config, uvloop and metrics in a multiprocess
directory, and serves it with `hypercorn.asyncio.serve` in this process. SIGUSR1 starts the
profiler, SIGUSR2 stops it and writes the stats, SIGTERM shuts down. The parent populates the
registry before SIGUSR1, so only the workload itself is profiled. Threads (`asyncio.to_thread`:
fsync, re-hashing) are not profiled; their time shows as waiting in the event loop.
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import pstats
import shutil
import signal
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from . import servers
from .access import PLAIN
from .blob_workloads import BLOB_ROWS, blob_sets, run_blob_row
from .common import REPO_ROOT, free_port
from .rate_workloads import run_rate_row
from .workloads import BlobFile, Settings, populate

TOP = 15


@dataclass(frozen=True)
class Entry:
    function: str
    calls: int
    own_s: float
    cum_s: float


@dataclass
class Profile:
    row: str
    workload: str
    total_s: float
    wall_s: float
    by_own: list[Entry] = field(default_factory=list)
    by_cum: list[Entry] = field(default_factory=list)
    by_package: list[tuple[str, float]] = field(default_factory=list)


# The child -----------------------------------------------------------------------------------------


def serve_profiled(config_path: str, stats_path: str) -> int:
    metrics_dir = tempfile.mkdtemp(prefix="zot-bench-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ["ZOT_REGISTRY_CONFIG"] = str(Path(config_path).absolute())
    import uvloop
    from hypercorn.asyncio import serve

    # The module a hypercorn worker loads (`application_path`): config, logging, fixes, the app.
    from zot_registry import asgi
    from zot_registry.config import load_config
    from zot_registry.server import hypercorn_config

    loaded = getattr(asgi, "_loaded", None) or load_config(config_path)
    config = hypercorn_config(loaded, 1)
    app = asgi.app
    profiler = cProfile.Profile()

    def dump() -> None:
        profiler.disable()
        tmp = f"{stats_path}.tmp"
        profiler.dump_stats(tmp)
        os.replace(tmp, stats_path)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, profiler.enable)
        loop.add_signal_handler(signal.SIGUSR2, dump)
        await serve(app, config, shutdown_trigger=stop.wait)

    try:
        uvloop.run(main())
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


# The parent ----------------------------------------------------------------------------------------


def _describe(function: tuple[str, int, str]) -> str:
    filename, line, name = function
    if filename == "~":  # a builtin: name is already "<method 'x' of 'y' objects>" or "<built-in ...>"
        return name
    path = filename
    for marker in ("site-packages/", "/lib/python3.11/", str(REPO_ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{line}({name})"


def _package(function: tuple[str, int, str]) -> str:
    filename = function[0]
    if filename == "~":
        return "C builtins (I/O, hashing, syscalls)"
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    if str(REPO_ROOT / "registry") in filename:
        return "zot_registry (ours)"
    if "/lib/python3.11/" in filename:
        module = filename.split("/lib/python3.11/", 1)[1].split("/", 1)[0].removesuffix(".py")
        return f"stdlib {module}"
    return "other"


def summarize(stats_path: Path, row: str, workload: str, wall_s: float, top: int = TOP) -> Profile:
    stats = pstats.Stats(str(stats_path))
    raw = stats.stats  # type: ignore[attr-defined]
    entries = [Entry(_describe(func), nc, tt, ct) for func, (_, nc, tt, ct, _) in raw.items()]
    packages: dict[str, float] = defaultdict(float)
    for func, (_, _, tt, _, _) in raw.items():
        packages[_package(func)] += tt
    total = float(stats.total_tt)  # type: ignore[attr-defined]
    return Profile(
        row,
        workload,
        total,
        wall_s,
        by_own=sorted(entries, key=lambda e: e.own_s, reverse=True)[:top],
        by_cum=sorted(entries, key=lambda e: e.cum_s, reverse=True)[:top],
        by_package=sorted(packages.items(), key=lambda kv: kv[1], reverse=True)[:10],
    )


def profile_row(row: str, settings: Settings, blobs: list[BlobFile], log_level: str = "info") -> Profile:
    """Start the profiled single worker, populate it, profile `row` once, stop and summarize."""
    workdir = Path(tempfile.mkdtemp(prefix="zot-bench-profile-"))
    stats_path = workdir / "profile.pstats"
    server: servers.Server | None = None
    try:
        port = free_port()
        config = servers.zot_config(workdir, port, log_level, PLAIN)
        log_path = workdir / "ours-profiled.log"
        argv = [sys.executable, "-m", "bench.profile", "serve", str(config), str(stats_path)]
        server = servers.Server("ours", 1, port, workdir, log_path, servers._spawn(argv, log_path))
        servers._wait_ready(server, time.monotonic() + servers.START_TIMEOUT)
        populate(server)
        if row in BLOB_ROWS:
            sets = blob_sets(blobs, settings.reps)
            chosen = sets[row]
            if row == "pull":  # pull reads what the monolithic push wrote
                run_blob_row(server, "push_mono", sets["push_mono"], settings)
            workload = f"{len(chosen)} x {row} of {settings.blob_size >> 20} MiB"
        else:
            workload = f"{row} for {settings.duration:g} s"
        server.process.send_signal(signal.SIGUSR1)
        time.sleep(0.2)
        started = time.monotonic()
        if row in BLOB_ROWS:
            run_blob_row(server, row, chosen, settings)
        else:
            run_rate_row(server, row, settings)
        wall = time.monotonic() - started
        server.process.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 30.0
        while not stats_path.exists():
            if time.monotonic() > deadline or server.process.poll() is not None:
                raise RuntimeError(f"profiled server wrote no stats:\n{server.log_tail()}")
            time.sleep(0.1)
        return summarize(stats_path, row, workload, wall)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "serve":
        print("usage: python -m bench.profile serve CONFIG STATS", file=sys.stderr)
        sys.exit(2)
    sys.exit(serve_profiled(sys.argv[2], sys.argv[3]))
