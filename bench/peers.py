"""`make bench`, the peers users would pick: ours against zot (when ZOT_BIN names a zot binary),
distribution 3.x and Debian's distribution 2.8.2, in each mode (plain HTTP, TLS, TLS + htpasswd),
one registry after the other with the same clients and blobs; writes docs/peer-benchmarks.{md,png}.

    ZOT_BIN=/path/to/zot .venv/bin/python -m bench.peers            # every mode, about 12 minutes
    .venv/bin/python -m bench.peers --quick --modes plain             # one mode, short rows

The rows are bench.run's (report_tables.rows) plus peak RSS; ratios are ours / each peer, turned so
that above 1 is better for us on every row (for CPU per GiB and RSS: theirs / ours). The floors are
issue 14's. zot's binary is never part of this project: it is built beside it, for measuring.

Beside them runs the stack's ceiling ("hypercorn alone", bench/ceiling_app.py): hypercorn served as
ours is, with an app that only hashes and writes what it receives and answers constants. Where it
misses a floor itself, no registry on this stack can reach that floor; the report says so per floor.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import access, report_tables, servers
from .common import DOCS, bar_panels, cpu_model
from .peer_limits import WHAT_LIMITS
from .run import check_tools, log, measure, wait_for_quiet
from .workloads import ServerResult, Settings, make_blobs

PEERS: tuple[servers.Kind, ...] = ("zot", "distribution3", "distribution")
CEILING: servers.Kind = "ceiling"
RSS_ROW = "peak_rss"
MIB = 1 << 20


@dataclass(frozen=True)
class Floor:
    peer: servers.Kind
    rows: tuple[str, ...]
    modes: tuple[access.Mode, ...]
    at_least: float


# Issue 14: against zot, push >= 0.8 in every mode, TLS pull >= 0.9, plain manifest GET >= 0.3 and
# TLS + htpasswd manifest GET >= 2.0; against distribution 3.x, >= 1.0 on every row.
FLOORS = (
    Floor("zot", ("push_mono", "push_chunked"), access.MODES, 0.8),
    Floor("zot", ("pull",), ("tls", "tls-htpasswd"), 0.9),
    Floor("zot", ("manifest_get_c1", "manifest_get_c32"), ("plain",), 0.3),
    Floor("zot", ("manifest_get_c1", "manifest_get_c32"), ("tls-htpasswd",), 2.0),
)
EVERY_ROW_AGAINST = {"distribution3": 1.0}


def floor_of(peer: servers.Kind, row: str, mode: access.Mode) -> float | None:
    for floor in FLOORS:
        if floor.peer == peer and row in floor.rows and mode in floor.modes:
            return floor.at_least
    return EVERY_ROW_AGAINST.get(peer)


def _peak_rss_mib(result: ServerResult) -> float | None:
    return result.peak_rss / MIB if result.peak_rss else None


RSS = report_tables.Row(RSS_ROW, "Peak RSS of the server (all processes)", "MiB", _peak_rss_mib, higher_is_better=False)


def better_ratio(row: report_tables.Row, ours: ServerResult, theirs: ServerResult) -> float | None:
    """ours / theirs for throughput, theirs / ours for CPU and RSS: above 1 is better for us."""
    mine, other = row.value(ours), row.value(theirs)
    if not mine or not other:
        return None
    return mine / other if row.higher_is_better else other / mine


def _version(kind: servers.Kind) -> str:
    binary = str(servers.binary_of(kind))
    argv = [binary, "--version"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"? ({err})"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0][:160] if text else "?"


def mode_table(
    mode: access.Mode,
    rows: list[report_tables.Row],
    results: dict[servers.Kind, ServerResult],
    peers: list[servers.Kind],
) -> list[str]:
    ours, ceiling = results["ours"], results.get(CEILING)
    head = ["Row", "Unit", ours.label, *(servers.PEER_TITLES[p] for p in peers)]
    head += [f"ours vs {servers.PEER_TITLES[p]}" for p in peers]
    reach = "zot" if "zot" in peers else peers[0]
    if ceiling is not None:
        head += [ceiling.label, f"{ceiling.label} vs {servers.PEER_TITLES[reach]}", f"ours vs {ceiling.label}"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "--:|" * (len(head) - 2)]
    for row in rows:
        cells = [row.label, row.unit, report_tables.num_text(row.value(ours), row.unit)]
        cells += [report_tables.num_text(row.value(results[p]), row.unit) for p in peers]
        cells += [_marked(better_ratio(row, ours, results[peer]), floor_of(peer, row.key, mode)) for peer in peers]
        if ceiling is not None:
            cells.append(report_tables.num_text(row.value(ceiling), row.unit))
            cells.append(_marked(better_ratio(row, ceiling, results[reach]), floor_of(reach, row.key, mode)))
            cells.append(report_tables.ratio_text(better_ratio(row, ours, ceiling)))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _marked(ratio: float | None, floor: float | None) -> str:
    text = report_tables.ratio_text(ratio)
    if floor is not None and ratio is not None:
        text += " ✓" if ratio >= floor else f" **< {floor:g}**"
    return text


def floors_missed(
    all_results: dict[access.Mode, dict[servers.Kind, ServerResult]], rows: list[report_tables.Row]
) -> list[str]:
    missed = []
    for mode, results in all_results.items():
        for peer in (p for p in PEERS if p in results):
            for row in rows:
                floor = floor_of(peer, row.key, mode)
                ratio = better_ratio(row, results["ours"], results[peer])
                if floor is not None and ratio is not None and ratio < floor:
                    missed.append(
                        f"{access.MODE_TITLES[mode]}, {row.key} vs {servers.PEER_TITLES[peer]}: {ratio:.2f} < {floor:g}"
                        + _ceiling_note(row, results, peer, floor)
                    )
    return missed


def _ceiling_note(
    row: report_tables.Row, results: dict[servers.Kind, ServerResult], peer: servers.Kind, floor: float
) -> str:
    """What the stack itself reaches on a missed floor: below it, the floor is out of this stack's reach."""
    ceiling = results.get(CEILING)
    reach = better_ratio(row, ceiling, results[peer]) if ceiling is not None else None
    if reach is None:
        return ""
    if reach < floor:
        return f"; hypercorn alone reaches {reach:.2f}: out of reach of any app on this stack"
    return f"; hypercorn alone reaches {reach:.2f}"


def plot(
    path: Path, all_results: dict[access.Mode, dict[servers.Kind, ServerResult]], rows: list[report_tables.Row]
) -> None:
    shown = [r for r in rows if r.key in ("push_mono", "push_chunked", "pull", "manifest_get_c1", "manifest_get_c32")]
    ticks = [r.key.replace("manifest_get_", "GET ").replace("push_", "push ") for r in shown]
    panels = []
    for mode, results in all_results.items():
        series = [
            (f"ours / {servers.PEER_TITLES[p]}", [better_ratio(r, results["ours"], results[p]) or 0.0 for r in shown])
            for p in PEERS
            if p in results
        ]
        panels.append((access.MODE_TITLES[mode], series))
    bar_panels(path, (5.0 * len(panels), 4.2), ticks, panels, shared=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 repetitions and 2 s per request row")
    parser.add_argument("--modes", default=",".join(access.MODES), help="comma-separated: plain, tls, tls-htpasswd")
    parser.add_argument("--workers", type=int, default=3, help="our worker processes (bench.run chooses 3 here)")
    parser.add_argument("--log-level", default="error", choices=["debug", "info", "warn", "error"])
    parser.add_argument("--out", default=str(DOCS))
    args = parser.parse_args(argv)
    asked = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in asked if m not in access.MODES]
    if unknown:
        parser.error(f"--modes: unknown {unknown}; choose from {', '.join(access.MODES)}")
    modes = [m for m in access.MODES if m in asked]
    settings = Settings(reps=2 if args.quick else 5, duration=2.0 if args.quick else 5.0)
    check_tools()
    peers = [p for p in PEERS if p != "zot" or servers.zot_bin() is not None]
    if not servers.DISTRIBUTION3_BIN.exists():
        raise SystemExit(f"missing: {servers.DISTRIBUTION3_BIN} (run `bash hack/tools.sh`)")
    if "zot" not in peers:
        log("ZOT_BIN is not set: zot's columns are left out")
    rows = [*(r for r in report_tables.rows(settings) if r.key != "push_single"), RSS]
    started = time.monotonic()
    all_results: dict[access.Mode, dict[servers.Kind, ServerResult]] = {}
    with tempfile.TemporaryDirectory(prefix="zot-bench-peers-") as scratch:
        (Path(scratch) / "blobs").mkdir()
        blobs = make_blobs(Path(scratch) / "blobs", 3 * settings.reps, settings.blob_size)
        for mode in modes:
            grant = access.prepare(mode, Path(scratch) / mode)
            results: dict[servers.Kind, ServerResult] = {}
            for kind in [*peers, CEILING, "ours"]:
                os.sync()
                wait_for_quiet()
                log(f"{access.MODE_TITLES[mode]}: {kind}")
                workers = args.workers if kind in servers.OUR_STACK else None
                results[kind] = measure(kind, workers, blobs, settings, args.log_level, access=grant)
            all_results[mode] = results
    elapsed = time.monotonic() - started
    out = Path(args.out)
    name = "peer-benchmarks"
    lines = [
        "# Benchmarks: ours against zot and distribution",
        "",
        f"Generated by `make bench` (`python -m bench.peers`) on "
        f"{datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')} in {elapsed:.0f} s, on "
        f"{os.cpu_count()} cores ({cpu_model()}). Each registry on 127.0.0.1, one after the other, with the same "
        f"clients and blobs as `bench.run` (docs/benchmarks.md says how each row is measured): "
        f"{settings.reps} blobs of {settings.blob_size >> 20} MiB per blob row, {settings.duration:g} s per "
        f"request row; log level {args.log_level} everywhere; local storage; ours with {args.workers} workers.",
        "",
        f"hypercorn alone is the stack's ceiling (`bench/ceiling_app.py`): hypercorn served exactly as ours is "
        f"({args.workers} workers, the same settings and patches, TLS), with an app that only hashes and writes "
        "what it receives (no fsync, no index) and answers constants. Its ratio to zot is the most any registry "
        "on this stack could show; where it is below a floor, so is every app on hypercorn.",
        "",
        "Ratios are turned so that above 1 is better for us on every row: ours / theirs for throughput, "
        "theirs / ours for CPU per GiB and RSS. ✓ or **< floor** marks issue 14's floors (against zot: push "
        "≥ 0.8 in every mode, TLS pull ≥ 0.9, plain manifest GET ≥ 0.3, TLS + htpasswd manifest GET ≥ 2.0; "
        "against distribution 3: ≥ 1.0 on every row).",
        "",
        "Versions: " + "; ".join(f"{servers.PEER_TITLES[p]}: `{_version(p)}`" for p in peers) + ".",
        "",
        f"![ours / each peer, per mode]({name}.png)",
        "",
    ]
    for mode, results in all_results.items():
        lines += [f"## {access.MODE_TITLES[mode]}", "", *mode_table(mode, rows, results, peers), ""]
    missed = floors_missed(all_results, rows)
    lines += ["## Floors missed", ""]
    lines += [f"- {m}" for m in missed] or ["- none"]
    lines += ["", WHAT_LIMITS]
    (out / f"{name}.md").write_text("\n".join(lines))
    plot(out / f"{name}.png", all_results, rows)
    log(f"wrote {out / name}.md and .png in {elapsed:.0f} s; {len(missed)} floor(s) missed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
