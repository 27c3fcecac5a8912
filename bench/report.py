"""docs/benchmarks.md: the page (floors, method, profile and what it means) around the tables of
`bench/report_tables.py`; the plot, docs/benchmarks.png, is drawn by `bench/report_plot.py`."""

from __future__ import annotations

from .profile import Profile
from .report_tables import (
    Row,
    details_table,
    floors_summary,
    ratio,
    results_table,
    runs_table,
    verdict,
    workers_table,
)
from .workloads import ServerResult, Settings

NOISY_CORES = 0.3


def _noise_warning(results: list[ServerResult]) -> list[str]:
    noisy = [r for r in results if r.other_load_cores > NOISY_CORES]
    if not noisy:
        return []
    worst = max(noisy, key=lambda r: r.other_load_cores)
    return [
        f"> **Warning: the machine was busy with other work during {len(noisy)} of {len(results)} runs** "
        f"(up to {worst.other_load_cores:.2f} of its 2 cores, in '{worst.label}'; see 'The runs, in order'). "
        "That distorts the ratios and the worker choice; rerun `make bench` on a quiet machine.",
        "",
    ]


# What the profile means, by the kind of row profiled. Written from the profiles and the scratch A/B
# runs made with this benchmark (numbers quoted are from those runs); the tables above it are
# regenerated on every run.
PROFILE_NOTES: dict[str, str] = {
    "rate": """\
A manifest GET or HEAD or a tags list moves a few hundred bytes, so the cost is all per request:
about 0.5 ms of server CPU each (the "s per 1k requests" column above), and one worker saturates
one core at about 2,000 requests/s. Our own code is a small part of it. By package, the HTTP/1.1
layer (h11, hypercorn) and the asyncio machinery around it take about 40% of the profile, Quart and
Werkzeug (request context, URL routing, response conversion) about 25%, socket writes and other C
calls most of the rest. Within ours, the largest piece is `_observe` in `registry/app.py`, the
per-request bookkeeping: the JSON log line at info (`logging`, `json`) and three Prometheus metrics
in multiprocess mode (mmap'd files), about 15% of the profile cumulatively.

Measured with the benchmark's own workloads on scratch copies of `registry/` (2 workers, 3-4
alternating rounds, medians):

- Log level warn instead of info: +13% manifest GET at 1 connection (1,989 to 2,253 req/s), +12% at
  32 (3,792 to 4,263), +6% tags list. Distribution pays the same for its one line per request (one
  trial: 880 to 1,140 manifest GET/s at 1 connection going from info to error), so both stay at info.
- Caching the labelled Prometheus children in `_observe`, caching `Layout.index()` paths, and a list
  of chunks instead of a bytearray in `streaming.FlowControlledBody`: 1-4% less server CPU per
  request, inside this machine's run-to-run noise. Not worth a change on their own.

So no cheap fix is left in our code for request rates; the rest is the framework stack. The levers
are a different stack (an ASGI server with a C HTTP parser, or fewer layers than Quart + Werkzeug
in front of the /v2/ dispatcher) and a core per worker.""",
    "push": """\
A blob push is mostly C and kernel work. In the event loop, `_hashlib.HASH.update` (SHA-256 of every
byte: 37 ms per 64 MiB on this CPU) and `BufferedWriter.write` are the largest own times; the rest is
h11, hypercorn and asyncio handing the body over in pieces of about 50 KiB (hypercorn reads 64 KiB
at a time), some eight Python calls per piece. The event loop is busy only about half of the wall
time. The remainder is the kernel and the disk: buffered writes to this VM's ext4 root run at about
400-450 MB/s (a plain Python loop writing 64 MiB in 1 MiB pieces takes 140-170 ms here, against
30 ms on tmpfs), and the fsync before a blob is published (about 33 ms per 64 MiB on this disk, in a
thread, so cProfile does not see it) is a durability cost distribution does not pay. Ours pushes at
close to the disk's buffered-write speed. Raising hypercorn's read size to 1 MiB
(`hypercorn.asyncio.tcp_server.MAX_RECV`, tried on a scratch copy) did not help: asyncio's stream
reader pauses the socket at 128 KiB buffered anyway.""",
    "pull": """\
A blob pull is kernel copies: the transport write of each 1 MiB piece (`asyncio/streams.py` `write`,
which uvloop sends from C) and `os.read` from the page cache are about three quarters of the event
loop's time; hypercorn, h11 and Quart add a few Python calls per 1 MiB piece, and there is no
per-byte Python. sendfile(2) would save the copy through user space, but hypercorn has no zero-copy
response path. The client (curl writing to /dev/null on the same two cores) takes much of the rest
of the machine.""",
}


def _profile_kind(row: str) -> str:
    if row == "pull":
        return "pull"
    return "push" if row.startswith("push") else "rate"


def profile_section(profile: Profile | None) -> list[str]:
    lines = ["## What limits us", ""]
    if profile is None:
        return [*lines, "Not profiled in this run (`--profile none`).", ""]
    busy = profile.total_s / profile.wall_s if profile.wall_s else 0.0
    lines += [
        f"Profiled row: **{profile.row}**, the lowest ours ÷ distribution ratio of this run (or the one asked "
        "for with `--profile`). One worker of our registry, started in-process with hypercorn's `serve` and "
        f"uvloop like a real worker, under cProfile; workload: {profile.workload}. Profiled CPU "
        f"{profile.total_s:.2f} s in {profile.wall_s:.2f} s of wall time ({busy:.0%} of one core busy in the "
        "event loop). cProfile inflates pure-Python calls, so read the shares, not the absolute times.",
        "",
        "Own time by package:",
        "",
        "| Package | Own time | Share |",
        "|---|--:|--:|",
    ]
    lines += [f"| {name} | {seconds:.3f} s | {seconds / profile.total_s:.0%} |" for name, seconds in profile.by_package]
    lines += [
        "",
        "Top functions by own time:",
        "",
        "| Function | Calls | Own | Share | Cumulative |",
        "|---|--:|--:|--:|--:|",
    ]
    lines += [
        f"| `{e.function}` | {e.calls:,} | {e.own_s:.3f} s | {e.own_s / profile.total_s:.1%} | {e.cum_s:.3f} s |"
        for e in profile.by_own
    ]
    lines += [
        "",
        "Top functions by cumulative time:",
        "",
        "| Function | Calls | Cumulative | Share |",
        "|---|--:|--:|--:|",
    ]
    lines += [
        f"| `{e.function}` | {e.calls:,} | {e.cum_s:.3f} s | {e.cum_s / profile.total_s:.0%} |" for e in profile.by_cum
    ]
    lines += ["", "What it means:", "", PROFILE_NOTES[_profile_kind(profile.row)], ""]
    return lines


def markdown(
    *,
    settings: Settings,
    all_rows: list[Row],
    theirs: ServerResult,
    all_runs: list[ServerResult],
    sweep_baseline: ServerResult,
    chosen: ServerResult,
    sweep: list[ServerResult],
    worker_reason: str,
    method: list[str],
    profile: Profile | None,
    elapsed: float,
    generated: str,
    png_name: str,
) -> str:
    passed = sum(1 for row in all_rows if row.floor is not None and verdict(row, ratio(row, chosen, theirs)) == "PASS")
    floors = sum(1 for row in all_rows if row.floor is not None)
    lines = [
        "# Benchmarks: zot_registry against distribution",
        "",
        f"Generated by `make bench` (`.venv/bin/python -m bench.run`) on {generated}; the whole run took "
        f"{elapsed:.0f} s. Both registries on loopback on this 2-core machine, one after the other, with the same "
        "clients. Rerun to update; the text comes from `bench/report.py`.",
        "",
        f"**{chosen.label} against distribution 2.8.2: {passed} of {floors} floors pass.** "
        "Floors from the issue: blob push and pull ≥ 0.5 x distribution's throughput, manifest GET ≥ 0.25 x its "
        "requests/s. They are reported, not enforced: the run never fails on them.",
        "",
        *_noise_warning(all_runs),
        f"![ours ÷ distribution per workload]({png_name})",
        "",
        "## Results",
        "",
        "Per row, the better of each registry's two runs (one run with `--quick`); every run is listed under "
        "'How it was measured'.",
        "",
        *results_table(all_rows, chosen, theirs),
        "",
        "Floors:",
        "",
        *floors_summary(all_rows, chosen, theirs),
        "",
        "## Workers",
        "",
        worker_reason,
        "",
        *workers_table(all_rows, sweep, sweep_baseline),
        "",
        "## How it was measured",
        "",
        *method,
        "",
        "The runs, in order:",
        "",
        *runs_table(all_runs),
        "",
        "Every row of every run, request counts, spread and server CPU:",
        "",
        *details_table(all_runs),
        "",
        *profile_section(profile),
    ]
    return "\n".join(lines).rstrip() + "\n"
