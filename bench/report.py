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
about 0.3 ms of server CPU each in one worker (the "s per 1k requests" column above). /v2/ is
answered straight from ASGI (`registry/api/front.py`): Quart keeps the probes, the metrics and the
cluster's control API, but a /v2/ request pays for none of its per-request tasks, contexts and URL
rules. What is left is mostly the HTTP/1.1 layer in pure Python: in a py-spy profile h11 and
hypercorn are about 40%, asyncio about 11%, C calls (sockets, dicts, bytes) about 14%, and our own
code about 16% (routing, the storage lookup, the log line and the Prometheus metrics in
multiprocess mode). Log level warn instead of info gives about 12% more requests/s at 1 and 32
connections; distribution pays the same for its own line per request, so both run at info here.

The lever left is the HTTP layer itself (a compiled parser under hypercorn, which has none; h11 is
its protocol) and a core per worker; docs/peer-benchmarks.md ("What limits each gap") has the
profile and the figures against zot and distribution 3.""",
    "push": """\
A blob push is mostly C and kernel work: the SHA-256 of every byte (`_hashlib.HASH.update`, about
37 ms per 64 MiB on this CPU), the copy into the page cache, and the fsync before a blob is
published (in a thread, so cProfile does not see it; about 33 ms per 64 MiB on this disk), a
durability cost distribution does not pay. Bodies are read 256 KiB at a time (hypercorn reads 64
KiB: `hypercorn_patches.READ_BYTES`), so each piece makes fewer trips through h11, hypercorn's queue
and the body, and glibc's mmap threshold is raised (`registry/allocator.py`) so the pieces reuse
warm heap pages instead of an mmap and munmap per copy: about 2.3 instead of 2.9 CPU-s per GiB for a
64 MiB push in one worker. Larger reads were worse (the copies stop fitting in the CPU's caches),
and hashing in a thread while the loop reads was worse too (GIL hand-offs on two cores).""",
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
