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
        Row("push_mono", f"Blob push, monolithic: POST, then PUT ?digest= with the {size} body", "MB/s",
            _blob("push_mono"), PUSH_FLOOR),
        Row("push_chunked", f"Blob push, chunked: POST, {chunks} x PATCH {settings.chunk_size >> 20} MiB "
            "with Content-Range, PUT ?digest=", "MB/s", _blob("push_chunked"), PUSH_FLOOR),
        Row("pull", f"Blob pull: GET {size}", "MB/s", _blob("pull"), PUSH_FLOOR),
        Row("push_single", f"Blob push, single POST ?digest= with the {size} body (ours only)", "MB/s",
            _blob("push_single")),
    ]
    what = {"manifest_get": ("Manifest GET by tag", MANIFEST_FLOOR), "manifest_head": ("Manifest HEAD by tag", None),
            "tags": ("Tags list GET (10 tags)", None)}
    for kind, (label, floor) in what.items():
        for n in settings.connections:
            key = f"{kind}_c{n}"
            found.append(Row(key, f"{label}, {n} connection{'s' if n != 1 else ''}", "req/s", _rate(key), floor))
    for key, label in (("push_mono", "monolithic push"), ("push_chunked", "chunked push"), ("pull", "pull")):
        found.append(Row(f"cpu_{key}", f"Server CPU per GiB moved, {label}", "CPU s/GiB", _cpu(key),
                         higher_is_better=False))
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
    lines = [f"| Workload | Unit | distribution | {ours.label} | ours ÷ distribution | Floor | Verdict |",
             "|---|---|--:|--:|--:|--:|---|"]
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
        lines.append(f"- {verdict(row, r).strip('*')}: {row.label}: {_ratio_text(r)} of distribution "
                     f"(floor {row.floor:g})")
    return lines


def workers_table(all_rows: list[Row], sweep: list[ServerResult], theirs: ServerResult) -> list[str]:
    header = "| Workload | Unit | distribution | " + " | ".join(r.label for r in sweep) + " |"
    lines = [header, "|---|---|--:|" + "--:|" * len(sweep)]
    for row in all_rows:
        if row.key == "push_single":
            continue
        cells = [f"{_num(row.value(r), row.unit)} ({_ratio_text(ratio(row, r, theirs))})" for r in sweep]
        lines.append(f"| {row.label} | {row.unit} | {_num(row.value(theirs), row.unit)} | " + " | ".join(cells) + " |")
    lines.append("| **Score**: geometric mean of ours ÷ distribution over the throughput rows | | 1.00 | "
                 + " | ".join(f"**{score(all_rows, r, theirs):.2f}**" for r in sweep) + " |")
    lines.append("| Peak RSS of the server (all processes) | MiB | " + f"{theirs.peak_rss / (1 << 20):,.0f} | "
                 + " | ".join(f"{r.peak_rss / (1 << 20):,.0f}" for r in sweep) + " |")
    lines.append("| Other load on the machine during the run (not us, not the client) | cores | "
                 f"{theirs.other_load_cores:.2f} | " + " | ".join(f"{r.other_load_cores:.2f}" for r in sweep) + " |")
    return lines


def details_table(results: list[ServerResult]) -> list[str]:
    lines = ["| Server | Workload | Runs | Median | Min - max | Server CPU |",
             "|---|---|--:|--:|--:|--:|"]
    for result in results:
        for key, phase in result.blobs.items():
            speeds = [phase.bytes_each / s / MB for s in phase.seconds]
            lines.append(f"| {result.label} | {key} | {len(speeds)} | {phase.mb_per_s:,.0f} MB/s | "
                         f"{min(speeds):,.0f} - {max(speeds):,.0f} MB/s | {phase.cpu_seconds:.2f} s |")
        for key, rate in result.rates.items():
            latency = (f"p50 {rate.p50_ms:.2f} ms, p99 {rate.p99_ms:.2f} ms"
                       if rate.p50_ms is not None and rate.p99_ms is not None else "")
            per_k = rate.cpu_seconds / rate.requests * 1000 if rate.requests else 0.0
            failures = f", {rate.failures} failed" if rate.failures else ""
            lines.append(f"| {result.label} | {key} ({rate.client}) | {rate.requests:,} in {rate.seconds:.1f} s"
                         f"{failures} | {rate.per_second:,.0f} req/s | {latency} | "
                         f"{per_k:.2f} s per 1k requests |")
    return lines


# What the profile means, by the kind of row profiled: written from the profiles of this registry
# (see docs/benchmarks.md); the tables above them are regenerated on every run.
PROFILE_NOTES: dict[str, str] = {
    "rate": """\
A manifest GET, HEAD or tags list moves a few hundred bytes, so the whole cost is per-request
overhead, and almost none of it is the registry's own work (`zot_registry (ours)` in the package
table: route match, index lookup, the manifest from the in-memory cache). The request goes through
three layers of Python on the way in and out:

- **hypercorn + h11** parse and serialise HTTP/1.1 in pure Python (`h11/_headers.py`
  `normalize_and_validate`, `_process_event`, hypercorn's `stream_send` / `protocol_send`), and
  every ASGI message crosses an `asyncio` queue and a `wait_for` with its timeout.
- **Quart + Werkzeug** build a request context, match the URL with Werkzeug's router (the
  `fullmatch` calls), run the before/after hooks and turn the `Response` into ASGI messages.
- **Our per-request bookkeeping** in `app.py` `_observe`: three Prometheus metrics (in
  multiprocess mode each `inc`/`observe` writes to an mmap'd file) and one JSON log line at info.

Each of these is a modest share; together they make a few hundred microseconds of CPU per request,
which is the ceiling of one worker. That is why a second worker on the second core adds most at 32
connections, and why the remaining levers are outside our code (a faster HTTP layer, e.g. an ASGI
server with a C parser) or in `_observe` (cheaper metrics/logging per request).""",
    "push": """\
A blob push is mostly C: `_hashlib.HASH.update` (SHA-256 of every byte) and
`BufferedWriter.write` dominate the own-time table, then h11's receive buffer and asyncio's stream
reads hand the body over in socket-sized pieces (tens of KiB), so the Python overhead is per piece,
not per byte. The profile covers only the event loop: the `fsync` before the blob is published runs
in a thread (`asyncio.to_thread`) and shows as idle time here; distribution does not fsync at all,
so that wait is a durability cost the comparison charges to us.""",
    "pull": """\
A blob pull is `os.read` of 1 MiB pieces and hypercorn writing them to the transport: the own
time is in C (`read`, the transport `write`) plus a little per-piece Python in hypercorn/h11 and
Quart's response iteration. There is no per-byte Python; sendfile(2) would save the copy through
user space, which ASGI cannot express (no zero-copy file response in hypercorn).""",
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
    lines += ["", "Top functions by own time:", "", "| Function | Calls | Own | Share | Cumulative |",
              "|---|--:|--:|--:|--:|"]
    lines += [f"| `{e.function}` | {e.calls:,} | {e.own_s:.3f} s | {e.own_s / profile.total_s:.1%} | {e.cum_s:.3f} s |"
              for e in profile.by_own]
    lines += ["", "Top functions by cumulative time:", "", "| Function | Calls | Cumulative | Share |",
              "|---|--:|--:|--:|"]
    lines += [f"| `{e.function}` | {e.calls:,} | {e.cum_s:.3f} s | {e.cum_s / profile.total_s:.0%} |"
              for e in profile.by_cum]
    lines += ["", "What it means:", "", PROFILE_NOTES[_profile_kind(profile.row)], ""]
    return lines


def markdown(*, settings: Settings, all_rows: list[Row], theirs: ServerResult, theirs_runs: list[ServerResult],
             chosen: ServerResult,
             sweep: list[ServerResult], worker_reason: str, method: list[str], profile: Profile | None,
             elapsed: float, generated: str, png_name: str) -> str:
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
        f"![ours ÷ distribution per workload]({png_name})",
        "",
        "## Results",
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
        *workers_table(all_rows, sweep, theirs),
        "",
        "## How it was measured",
        "",
        *method,
        "",
        "Every run, request counts, spread and server CPU:",
        "",
        *details_table([*theirs_runs, *sweep]),
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
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 1.6 + 0.5 * (len(speed) + len(cpu))),
                                      gridspec_kw={"height_ratios": [max(len(speed), 1), max(len(cpu), 1)]})
    fig.suptitle(f"{ours.label} ÷ distribution 2.8.2, same clients, loopback, 2 cores", fontsize=13)

    def short(row: Row) -> str:
        return row.label.split(":")[0].replace("Server CPU per GiB moved, ", "") if row.key.startswith(
            ("push", "pull", "cpu")) else row.label

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
                ax.plot([row.floor, row.floor], [y - 0.42, y + 0.42], color="#c0392b", linewidth=2.5,
                        label=None if floor_drawn else "floor from the issue")
                floor_drawn = True
        for y, value, row in zip(ys, values, chosen_rows, strict=True):
            mine, other = row.value(ours), row.value(theirs)
            ax.text(value + top_x * 0.01, y, f"{value:.2f}x   ours {_num(mine, row.unit)} / distribution "
                    f"{_num(other, row.unit)} {row.unit}", va="center", fontsize=8)
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
