"""The rows of docs/benchmarks.md (what each measures, its floor), the ratios and score between two
registries, and the tables built from them; the page around them is `bench/report.py`."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass

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


def num_text(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if unit == "CPU s/GiB":
        return f"{value:.2f}"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def ratio_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def results_table(all_rows: list[Row], ours: ServerResult, theirs: ServerResult) -> list[str]:
    lines = [
        f"| Workload | Unit | distribution | {ours.label} | ours ÷ distribution | Floor | Verdict |",
        "|---|---|--:|--:|--:|--:|---|",
    ]
    for row in all_rows:
        r = ratio(row, ours, theirs)
        floor = f"≥ {row.floor:g}" if row.floor is not None else ""
        unit = row.unit + ("" if row.higher_is_better else " (lower is better)")
        mine, other = num_text(row.value(ours), row.unit), num_text(row.value(theirs), row.unit)
        lines.append(f"| {row.label} | {unit} | {other} | {mine} | {ratio_text(r)} | {floor} | {verdict(row, r)} |")
    return lines


def floors_summary(all_rows: list[Row], ours: ServerResult, theirs: ServerResult) -> list[str]:
    lines = []
    for row in all_rows:
        if row.floor is None:
            continue
        r = ratio(row, ours, theirs)
        lines.append(
            f"- {verdict(row, r).strip('*')}: {row.label}: {ratio_text(r)} of distribution (floor {row.floor:g})"
        )
    return lines


def workers_table(all_rows: list[Row], sweep: list[ServerResult], theirs: ServerResult) -> list[str]:
    header = f"| Workload | Unit | {theirs.label} | " + " | ".join(r.label for r in sweep) + " |"
    lines = [header, "|---|---|--:|" + "--:|" * len(sweep)]
    for row in all_rows:
        if row.key == "push_single":
            continue
        cells = [f"{num_text(row.value(r), row.unit)} ({ratio_text(ratio(row, r, theirs))})" for r in sweep]
        lines.append(
            f"| {row.label} | {row.unit} | {num_text(row.value(theirs), row.unit)} | " + " | ".join(cells) + " |"
        )
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
