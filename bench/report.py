"""docs/benchmarks.md (tables, floors, method, profile) and docs/benchmarks.png (the ratios)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .profile import Profile
from .workloads import MB, ServerResult, Settings

PUSH_FLOOR = 0.5
MANIFEST_FLOOR = 0.25


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    unit: str
    value: Callable[[ServerResult], float | None]
    floor: float | None = None
    higher_is_better: bool = True

    @property
    def is_cpu(self) -> bool:
        return not self.higher_is_better


def _blob(key: str) -> Callable[[ServerResult], float | None]:
    def value(result: ServerResult) -> float | None:
        phase = result.blobs.get(key)
        return phase.mb_per_s if phase and phase.seconds else None

    return value


def _cpu(key: str) -> Callable[[ServerResult], float | None]:
    def value(result: ServerResult) -> float | None:
        phase = result.blobs.get(key)
        return phase.cpu_per_gib if phase and phase.seconds else None

    return value


def _rate(key: str) -> Callable[[ServerResult], float | None]:
    def value(result: ServerResult) -> float | None:
        rate = result.rates.get(key)
        return rate.per_second if rate and rate.requests else None

    return value


def rows(settings: Settings) -> list[Row]:
    size = f"{settings.blob_size >> 20} MiB"
    chunks = max(1, settings.blob_size // settings.chunk_size)
    found: list[Row] = [
        Row(
            "push_mono",
            f"Blob push, monolithic: POST, then PUT ?digest= with the {size} body",
            "MB/s",
            _blob("push_mono"),
            PUSH_FLOOR,
        ),
        Row(
            "push_chunked",
            f"Blob push, chunked: POST, {chunks} x PATCH {settings.chunk_size >> 20} MiB "
            "with Content-Range, PUT ?digest=",
            "MB/s",
            _blob("push_chunked"),
            PUSH_FLOOR,
        ),
        Row("pull", f"Blob pull: GET {size}", "MB/s", _blob("pull"), PUSH_FLOOR),
        Row(
            "push_single",
            f"Blob push, single POST ?digest= with the {size} body (ours only)",
            "MB/s",
            _blob("push_single"),
        ),
    ]
    what = {
        "manifest_get": ("Manifest GET by tag", MANIFEST_FLOOR),
        "manifest_head": ("Manifest HEAD by tag", None),
        "tags": ("Tags list GET (10 tags)", None),
    }
    for kind, (label, floor) in what.items():
        for n in settings.connections:
            key = f"{kind}_c{n}"
            found.append(Row(key, f"{label}, {n} connection{'s' if n != 1 else ''}", "req/s", _rate(key), floor))
    for key, label in (("push_mono", "monolithic push"), ("push_chunked", "chunked push"), ("pull", "pull")):
        found.append(
            Row(f"cpu_{key}", f"Server CPU per GiB moved, {label}", "CPU s/GiB", _cpu(key), higher_is_better=False)
        )
    return found


def ratio(row: Row, ours: ServerResult, theirs: ServerResult) -> float | None:
    mine, other = row.value(ours), row.value(theirs)
    if mine is None or other is None or other == 0:
        return None
    return mine / other


def score(all_rows: list[Row], ours: ServerResult, theirs: ServerResult) -> float:
    """Geometric mean of ours/distribution over the throughput rows both registries ran."""
    ratios = [r for row in all_rows if row.higher_is_better and (r := ratio(row, ours, theirs))]
    return math.exp(statistics.fmean(math.log(r) for r in ratios)) if ratios else 0.0


def verdict(row: Row, value: float | None) -> str:
    if row.floor is None:
        return "—"
    if value is None:
        return "n/a"
    return "PASS" if value >= row.floor else "**FAIL**"


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if unit == "CPU s/GiB":
        return f"{value:.2f}"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _ratio_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


# Markdown -------------------------------------------------------------------------------------------


def results_table(all_rows: list[Row], ours: ServerResult, theirs: ServerResult) -> list[str]:
    lines = [
        f"| Workload | Unit | distribution | {ours.label} | ours ÷ distribution | Floor | Verdict |",
        "|---|---|--:|--:|--:|--:|---|",
    ]
    for row in all_rows:
        r = ratio(row, ours, theirs)
        floor = f"≥ {row.floor:g}" if row.floor is not None else ""
        unit = row.unit + ("" if row.higher_is_better else " (lower is better)")
        mine, other = _num(row.value(ours), row.unit), _num(row.value(theirs), row.unit)
        lines.append(f"| {row.label} | {unit} | {other} | {mine} | {_ratio_text(r)} | {floor} | {verdict(row, r)} |")
    return lines


def floors_summary(all_rows: list[Row], ours: ServerResult, theirs: ServerResult) -> list[str]:
    lines = []
    for row in all_rows:
        if row.floor is None:
            continue
        r = ratio(row, ours, theirs)
        lines.append(
            f"- {verdict(row, r).strip('*')}: {row.label}: {_ratio_text(r)} of distribution (floor {row.floor:g})"
        )
    return lines


def workers_table(all_rows: list[Row], sweep: list[ServerResult], theirs: ServerResult) -> list[str]:
    header = f"| Workload | Unit | {theirs.label} | " + " | ".join(r.label for r in sweep) + " |"
    lines = [header, "|---|---|--:|" + "--:|" * len(sweep)]
    for row in all_rows:
        if row.key == "push_single":
            continue
        cells = [f"{_num(row.value(r), row.unit)} ({_ratio_text(ratio(row, r, theirs))})" for r in sweep]
        lines.append(f"| {row.label} | {row.unit} | {_num(row.value(theirs), row.unit)} | " + " | ".join(cells) + " |")
    lines.append(
        "| **Score**: geometric mean of ours ÷ distribution over the throughput rows | | 1.00 | "
        + " | ".join(f"**{score(all_rows, r, theirs):.2f}**" for r in sweep)
        + " |"
    )
    lines.append(
        "| Peak RSS of the server (all processes) | MiB | "
        + f"{theirs.peak_rss / (1 << 20):,.0f} | "
        + " | ".join(f"{r.peak_rss / (1 << 20):,.0f}" for r in sweep)
        + " |"
    )
    lines.append(
        "| Other load on the machine during the run (not us, not the client) | cores | "
        f"{theirs.other_load_cores:.2f} | " + " | ".join(f"{r.other_load_cores:.2f}" for r in sweep) + " |"
    )
    lines.append(
        "| Disk writes of the whole machine during the run (this run's pushes) | MB | "
        + " | ".join(f"{r.disk_written_mb:,.0f} ({r.pushed_mb:,.0f})" for r in [theirs, *sweep])
        + " |"
    )
    return lines


def details_table(results: list[ServerResult]) -> list[str]:
    lines = ["| Server | Workload | Runs | Median | Min - max | Server CPU |", "|---|---|--:|--:|--:|--:|"]
    for result in results:
        for key, phase in result.blobs.items():
            speeds = [phase.bytes_each / s / MB for s in phase.seconds]
            lines.append(
                f"| {result.label} | {key} | {len(speeds)} | {phase.mb_per_s:,.0f} MB/s | "
                f"{min(speeds):,.0f} - {max(speeds):,.0f} MB/s | {phase.cpu_seconds:.2f} s |"
            )
        for key, rate in result.rates.items():
            latency = (
                f"p50 {rate.p50_ms:.2f} ms, p99 {rate.p99_ms:.2f} ms"
                if rate.p50_ms is not None and rate.p99_ms is not None
                else ""
            )
            per_k = rate.cpu_seconds / rate.requests * 1000 if rate.requests else 0.0
            failures = f", {rate.failures} failed" if rate.failures else ""
            lines.append(
                f"| {result.label} | {key} ({rate.client}) | {rate.requests:,} in {rate.seconds:.1f} s"
                f"{failures} | {rate.per_second:,.0f} req/s | {latency} | "
                f"{per_k:.2f} s per 1k requests |"
            )
    return lines


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


def runs_table(results: list[ServerResult]) -> list[str]:
    lines = [
        "| Run | Took | Other load (cores) | Disk writes of the machine (this run's pushes) | Peak RSS |",
        "|---|--:|--:|--:|--:|",
    ]
    lines += [
        f"| {r.label} | {r.seconds:.0f} s | {r.other_load_cores:.2f} | {r.disk_written_mb:,.0f} MB "
        f"({r.pushed_mb:,.0f} MB) | {r.peak_rss / (1 << 20):,.0f} MiB |"
        for r in results
    ]
    return lines


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


# PNG ---------------------------------------------------------------------------------------------


def plot(path: Path, all_rows: list[Row], ours: ServerResult, theirs: ServerResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    speed = [row for row in all_rows if row.higher_is_better and ratio(row, ours, theirs) is not None]
    cpu = [row for row in all_rows if row.is_cpu and ratio(row, ours, theirs) is not None]
    fig, (top, bottom) = plt.subplots(
        2,
        1,
        figsize=(11, 1.6 + 0.5 * (len(speed) + len(cpu))),
        gridspec_kw={"height_ratios": [max(len(speed), 1), max(len(cpu), 1)]},
    )
    fig.suptitle(f"{ours.label} ÷ distribution 2.8.2, same clients, loopback, 2 cores", fontsize=13)

    def short(row: Row) -> str:
        return (
            row.label.split(":")[0].replace("Server CPU per GiB moved, ", "")
            if row.key.startswith(("push", "pull", "cpu"))
            else row.label
        )

    def panel(ax: object, chosen_rows: list[Row], title: str, lower_better: bool) -> None:
        from matplotlib.axes import Axes

        assert isinstance(ax, Axes)
        values = [ratio(row, ours, theirs) or 0.0 for row in chosen_rows]
        ys = list(range(len(chosen_rows)))[::-1]
        colors = []
        for row, value in zip(chosen_rows, values, strict=True):
            good = value <= 1.0 if lower_better else value >= 1.0
            below_floor = row.floor is not None and value < row.floor
            colors.append("#c0392b" if below_floor else "#2e8b57" if good else "#e67e22")
        ax.barh(ys, values, color=colors, height=0.6)
        top_x = max([*values, 1.0, *[row.floor or 0 for row in chosen_rows]]) * 1.5
        ax.set_xlim(0, top_x)
        ax.axvline(1.0, color="#555555", linestyle="--", linewidth=1, label="parity (1.0)")
        floor_drawn = False
        for y, row in zip(ys, chosen_rows, strict=True):
            if row.floor is not None:
                ax.plot(
                    [row.floor, row.floor],
                    [y - 0.42, y + 0.42],
                    color="#c0392b",
                    linewidth=2.5,
                    label=None if floor_drawn else "floor from the issue",
                )
                floor_drawn = True
        for y, value, row in zip(ys, values, chosen_rows, strict=True):
            mine, other = row.value(ours), row.value(theirs)
            ax.text(
                value + top_x * 0.01,
                y,
                f"{value:.2f}x   ours {_num(mine, row.unit)} / distribution {_num(other, row.unit)} {row.unit}",
                va="center",
                fontsize=8,
            )
        ax.set_yticks(ys, [short(row) for row in chosen_rows], fontsize=9)
        ax.set_title(title, fontsize=10, loc="left")
        ax.grid(axis="x", alpha=0.3)

    panel(top, speed, "Throughput, ours ÷ distribution (higher is better)", lower_better=False)
    panel(bottom, cpu, "Server CPU seconds per GiB moved, ours ÷ distribution (lower is better)", lower_better=True)
    handles, labels = top.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
