"""The proxy's cost: the same requests straight to the owner and through another member, in one run.

A two-member cluster on 127.0.0.1 and 127.0.0.2 (one hypercorn worker each, so the two members
share the two cores the way they would share a node), with and without TLS between everything.
Manifest GET with wrk (requests/s and median latency, 1 connection), blob pull with curl (MB/s,
64 MiB blob, median of several runs), and the CPU the members spend per GiB pulled (psutil: user +
system of each member's process tree), the figure that does not depend on the number of cores.
The reference forwarder: HAProxy (Debian's, written in C) in TCP mode with splice, in front of the
same owner: what any hop in the path costs on this machine. When ZOT_BIN names a zot binary, the
same measures of a zot cluster (`_zot_variant`: the one change zot needs to run on one host).
Writes docs/proxy-benchmarks.md and docs/proxy-benchmarks.png.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
from zot_registry.cluster.hashing import owner_index
from zot_registry.local.addresses import port_free_for_members
from zot_registry.local.cluster import LocalCluster, write_cluster
from zot_registry.local.configs import write_config
from zot_registry.local.processes import start_member, stop_members

from bench.common import (
    DOCS,
    Panel,
    bar_panels,
    curl,
    free_port,
    report_opening,
    stop_all,
    wait_for_status,
    write_report,
)
from bench.servers import Server, zot_bin

BLOB_SIZE = 64 << 20
PULLS = 5
PULLED_GIB = PULLS * BLOB_SIZE / (1 << 30)
WRK_SECONDS = 5
START_SECONDS = 60.0
FLOOR_PULL_RATIO = 0.8
FLOOR_ADDED_MS = 2.0
FLOOR_PROXY_CPU_RATIO = 1.5  # the proxying member's CPU per GiB, at most this times the owner's direct

Registry = Literal["ours", "zot"]
MODES = ("plain", "tls")
PATHS = ("direct", "proxied", "haproxy")
REGISTRIES: tuple[Registry, ...] = ("ours", "zot")


@dataclass
class Measure:
    registry: Registry
    mode: str  # plain or tls
    path: str  # direct, proxied (through the other member) or haproxy (the reference forwarder)
    manifest_rps: float
    manifest_median_ms: float
    pull_mbps: float
    owner_cpu_gib: float  # CPU-s per GiB pulled, of the owner's process tree
    proxy_cpu_gib: float | None  # the same of the proxying member (member 0): proxied pulls only


def _free_port() -> int:
    """A port free on 127.0.0.1 and 127.0.0.2 (the two members share it)."""
    return port_free_for_members(2)


def _populate(url: str, verify: str | bool, repo: str, blob: bytes) -> tuple[str, str]:
    config = b'{"architecture":"amd64","os":"linux"}'
    digests = []
    # zot refuses a monolithic upload without the binary media type (415).
    octets = {"Content-Type": "application/octet-stream"}
    with httpx.Client(base_url=url, verify=verify, timeout=120) as client:
        for data in (config, blob):
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            client.post(
                f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data, headers=octets
            ).raise_for_status()
            digests.append(digest)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": digests[0],
                    "size": len(config),
                },
                "layers": [
                    {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digests[1], "size": len(blob)}
                ],
            }
        ).encode()
        client.put(
            f"/v2/{repo}/manifests/latest",
            content=manifest,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        ).raise_for_status()
    return digests[1], "latest"


def _check_serves(url: str, verify: str | bool, repo: str, tag: str, digest: str) -> None:
    """wrk and curl count error answers as answers: make sure `url` serves the image before timing it."""
    with httpx.Client(base_url=url, verify=verify, timeout=30) as client:
        accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
        for response in (
            client.get(f"/v2/{repo}/manifests/{tag}", headers=accept),
            client.head(f"/v2/{repo}/blobs/{digest}"),
        ):
            if response.status_code != 200:
                raise RuntimeError(f"{response.request.method} {response.url} answered {response.status_code}")


def _wrk(url: str) -> tuple[float, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            "-c1",
            f"-d{WRK_SECONDS}s",
            "--latency",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=WRK_SECONDS + 30,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"\s50%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    median_ms = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return rps, median_ms


def _curl_pull(url: str, ca: Path | None) -> float:
    speeds = []
    for _ in range(PULLS):
        args = [*(["--cacert", str(ca)] if ca else []), "-o", "/dev/null", "-w", "%{speed_download}", url]
        speeds.append(float(curl(args, timeout=120, fail=False)))
    return statistics.median(speeds) / 1e6


def _pull(url: str, ca: Path | None, members: Sequence[Server]) -> tuple[float, list[float]]:
    """`_curl_pull`'s MB/s, and each member's CPU-seconds per GiB pulled over those pulls."""
    before = [member.cpu_seconds() for member in members]
    mbps = _curl_pull(url, ca)
    after = [member.cpu_seconds() for member in members]
    return mbps, [(end - start) / PULLED_GIB for start, end in zip(before, after, strict=True)]


def _start_haproxy(workdir: Path, backend: str) -> tuple[subprocess.Popen[bytes], str]:
    """HAProxy forwarding TCP (TLS passes through untouched) to the owner, splicing when it can."""
    address = f"127.0.0.1:{_free_port()}"
    config = workdir / "haproxy.cfg"
    config.write_text(
        "\n".join(
            [
                "global",
                "  maxconn 100",
                "defaults",
                "  mode tcp",
                "  option splice-auto",
                "  timeout connect 5s",
                "  timeout client 120s",
                "  timeout server 120s",
                "frontend entry",
                f"  bind {address}",
                "  default_backend owner",
                "backend owner",
                f"  server owner {backend}",
                "",
            ]
        )
    )
    process = subprocess.Popen(
        ["haproxy", "-f", str(config), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return process, address


def _two_ports() -> tuple[int, int]:
    """Two different ports free on 127.0.0.1."""
    first = free_port()
    while (second := free_port()) == first:
        pass
    return first, second


def _zot_variant(layout: LocalCluster) -> LocalCluster:
    """`layout` rewritten for zot: both members on 127.0.0.1, each at its own port.

    zot finds itself in cluster.members as the first member whose address is one of the machine's
    interface addresses at its own http.port (http.address plays no part). Loopback carries only
    127.0.0.1, so with members 127.0.0.1:P and 127.0.0.2:P both zot processes would take member 0,
    and the one on 127.0.0.2 would proxy its own repositories to itself (an error: the hop header).
    The hash key, member order, certificates and every other key stay as write_cluster wrote them,
    so the same repository has the same owner.
    """
    ports = _two_ports()
    members = [f"127.0.0.1:{port}" for port in ports]
    for config, port in zip(layout.configs, ports, strict=True):
        document = json.loads(config.read_text())
        document["http"].update(address="127.0.0.1", port=str(port))
        document["cluster"]["members"] = members
        write_config(config, document)
    return LocalCluster(layout.folder, layout.configs, members, layout.ca)


def _start_members(registry: Registry, layout: LocalCluster, zot: Path | None) -> list[Server]:
    """Every member of `layout`, in its own session (so stopping reaches its workers), as a bench Server
    for its CPU accounting. Ours: `zot_registry.cli serve --workers 1`; zot: `$ZOT_BIN serve`."""
    members = []
    for index, config in enumerate(layout.configs):
        out = layout.folder / f"member-{index}.out"
        with open(out, "ab") as output:
            if registry == "ours":
                process = start_member(config, 1, output, own_session=True)
            else:
                argv = [str(zot), "serve", str(config)]
                process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        port = int(layout.members[index].rsplit(":", 1)[1])
        members.append(Server(registry, 1 if registry == "ours" else None, port, layout.folder, out, process))
    return members


def _wait_ready(members: Sequence[Server], urls: Sequence[str], verify: str | bool) -> None:
    """Each member answers /readyz; a member that exits (zot panics on a config it cannot use) says why."""
    deadline = time.monotonic() + START_SECONDS
    for member, url in zip(members, urls, strict=True):
        while True:
            if member.process.poll() is not None:
                raise RuntimeError(
                    f"{member.label} at {url} exited with {member.process.returncode}:\n{member.log_tail()}"
                )
            with contextlib.suppress(RuntimeError):
                wait_for_status(f"{url}/readyz", min(deadline, time.monotonic() + 1), verify=verify)
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{member.label} at {url} not ready in {START_SECONDS:.0f} s:\n{member.log_tail()}")


def _owned_by_second(layout: LocalCluster) -> str:
    """A repository name member 1 owns (the same rule ours and zot route by)."""
    key = (layout.folder / "hashkey").read_text().strip().encode()
    return next(f"bench/proxy-{i}" for i in range(100) if owner_index(f"bench/proxy-{i}", key, 2) == 1)


def _haproxy_target(layout: LocalCluster, scheme: str, verify: str | bool) -> tuple[subprocess.Popen[bytes], str]:
    """HAProxy in front of the owner, started and answering; its process and its URL."""
    haproxy, forwarder = _start_haproxy(layout.folder, layout.members[1])
    # The certificate covers 127.0.0.1 by address: TLS through HAProxy verifies as it does direct.
    url = f"{scheme}://{forwarder}"
    wait_for_status(f"{url}/readyz", time.monotonic() + 30, verify=verify)
    return haproxy, url


def measure_mode(registry: Registry, tls: bool, workdir: Path, zot: Path | None = None) -> list[Measure]:
    """Every path of one cluster (ours or zot) in one mode; HAProxy's reference in front of ours only."""
    mode = "tls" if tls else "plain"
    layout = write_cluster(workdir / f"{registry}-{mode}", 2, _free_port(), tls=tls, log_level="error")
    if registry == "zot":
        layout = _zot_variant(layout)
    members = _start_members(registry, layout, zot)
    helpers: list[subprocess.Popen[bytes]] = []
    scheme = "https" if tls else "http"
    verify: str | bool = str(layout.ca) if layout.ca else True
    urls = [f"{scheme}://{member}" for member in layout.members]
    try:
        _wait_ready(members, urls, verify)
        repo = _owned_by_second(layout)
        digest, tag = _populate(urls[1], verify, repo, os.urandom(BLOB_SIZE))
        targets = [("direct", urls[1]), ("proxied", urls[0])]
        if registry == "ours":
            haproxy, url = _haproxy_target(layout, scheme, verify)
            helpers.append(haproxy)
            targets.append(("haproxy", url))
        results = []
        for path, url in targets:
            _check_serves(url, verify, repo, tag, digest)
            rps, median = _wrk(f"{url}/v2/{repo}/manifests/{tag}")
            # cpu: member 0 (the proxying member when proxied), member 1 (the owner)
            mbps, cpu = _pull(f"{url}/v2/{repo}/blobs/{digest}", layout.ca, members)
            proxy_cpu = cpu[0] if path == "proxied" else None
            results.append(Measure(registry, mode, path, rps, median, mbps, cpu[1], proxy_cpu))
        return results
    finally:
        stop_all(helpers, timeout=60)
        stop_members([member.process for member in members], timeout=60, process_groups=True)


WHAT_LIMITS = """\
## What limits the proxied pull

The HAProxy rows are the reference: HAProxy (C) forwarding TCP with splice, in front of the
same owner, in the same run. Plain HTTP: on this 2-core machine the client, the owner and any
forwarder share two cores and each loopback hop costs the same kernel work per byte, so even
HAProxy keeps well under 0.8 of the direct rate, and MB/s through any hop says more about the
two shared cores than about the forwarder. TLS: HAProxy passes the encrypted bytes through
untouched, so it costs almost nothing; a member cannot, because it must read the repository name
to route, and the hop to the owner is HTTPS (zot's protocol): the proxying member decrypts what
the owner sends and encrypts it again for the client. A py-spy profile of the proxying member
(see the cluster issue's closing note) puts most of its CPU in the socket send of the response,
aiohttp's receive and, with TLS, the ssl module's record processing: the kernel copies into and
out of the process.

CPU per GiB pulled does not depend on how many cores share the work (figures of this run):"""


def _cpu_findings(measures: Sequence[Measure]) -> list[str]:
    """The CPU paragraph under WHAT_LIMITS, from the measures: per mode, each registry's proxying
    member against its owner's direct pull, and what TLS adds to each."""
    lines = []
    for mode in MODES:
        parts = []
        for registry in REGISTRIES:
            pair, proxied = _proxy_cpu(measures, registry, mode), _find(measures, registry, mode, "proxied")
            if pair is None or proxied is None:
                continue
            parts.append(
                f"{registry}, proxying member {pair[1]:.2f} CPU-s/GiB, {pair[1] / pair[0]:.2f} times its owner's "
                f"direct {pair[0]:.2f} (the owner itself: {proxied.owner_cpu_gib:.2f} while serving the proxied pull)"
            )
        if parts:
            lines.append(f"- {mode}: " + "; ".join(parts) + ".")
    for registry in REGISTRIES:
        plain, tls = _proxy_cpu(measures, registry, "plain"), _proxy_cpu(measures, registry, "tls")
        if plain is None or tls is None or tls[0] <= plain[0]:
            continue
        owner_tls, proxy_tls = tls[0] - plain[0], tls[1] - plain[1]
        lines.append(
            f"- {registry}: TLS adds {owner_tls:.2f} CPU-s/GiB to the owner's direct pull (one encryption) and "
            f"{proxy_tls:.2f} to the proxying member: {proxy_tls / owner_tls:.1f} times the owner's, where one "
            "decryption and one encryption at the owner's cost would make 2."
        )
    return lines


def _find(measures: Sequence[Measure], registry: Registry, mode: str, path: str) -> Measure | None:
    return next((m for m in measures if (m.registry, m.mode, m.path) == (registry, mode, path)), None)


def _ticks(measures: Sequence[Measure]) -> list[tuple[Registry, str]]:
    """The (registry, mode) pairs measured, in run order: the plot's groups."""
    return list(dict.fromkeys((m.registry, m.mode) for m in measures))


def _plot(measures: list[Measure], path: Path) -> None:
    ticks = _ticks(measures)

    def series(label: str, pick: str, attr: str) -> tuple[str, list[float]]:
        values = []
        for registry, mode in ticks:
            found = _find(measures, registry, mode, pick)
            values.append(float(getattr(found, attr) or 0.0) if found else 0.0)
        return label, values

    panels: list[Panel] = [
        (title, [series(name, name, attr) for name in PATHS])
        for attr, title in (("pull_mbps", "blob pull MB/s"), ("manifest_median_ms", "manifest GET median ms"))
    ]
    cpu = [
        series("owner, direct pull", "direct", "owner_cpu_gib"),
        series("proxying member, proxied pull", "proxied", "proxy_cpu_gib"),
        series("owner, proxied pull", "proxied", "owner_cpu_gib"),
    ]
    panels.append(("blob pull CPU-s per GiB", cpu))
    bar_panels(path, (15, 4.2), [f"{registry} {mode}" for registry, mode in ticks], panels, shared=False)


def _cell(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _measure_table(measures: Sequence[Measure]) -> list[str]:
    lines = [
        "| registry | mode | path | manifest GET req/s | manifest GET median ms | blob pull MB/s | "
        "owner CPU-s/GiB | proxying member CPU-s/GiB |",
        "|---|---|---|--:|--:|--:|--:|--:|",
    ]
    for m in measures:
        lines.append(
            f"| {m.registry} | {m.mode} | {m.path} | {m.manifest_rps:,.0f} | {m.manifest_median_ms:.2f} | "
            f"{m.pull_mbps:,.0f} | {_cell(m.owner_cpu_gib)} | {_cell(m.proxy_cpu_gib)} |"
        )
    return lines


def _speed_floor_table(measures: Sequence[Measure]) -> list[str]:
    lines = [
        "| mode | proxied pull / direct | floor ≥ 0.8 | HAProxy pull / direct | proxied / HAProxy | "
        "added manifest GET median ms | floor < 2 ms |",
        "|---|--:|---|--:|--:|--:|---|",
    ]
    for mode in MODES:
        direct, proxied, haproxy = (_find(measures, "ours", mode, path) for path in PATHS)
        if not direct or not proxied or not haproxy:
            continue
        ratio = proxied.pull_mbps / direct.pull_mbps
        added = proxied.manifest_median_ms - direct.manifest_median_ms
        pull_ok = "PASS" if ratio >= FLOOR_PULL_RATIO else "FAIL"
        latency_ok = "PASS" if added < FLOOR_ADDED_MS else "FAIL"
        lines.append(
            f"| {mode} | {ratio:.2f} | {pull_ok} | {haproxy.pull_mbps / direct.pull_mbps:.2f} | "
            f"{proxied.pull_mbps / haproxy.pull_mbps:.2f} | {added:.2f} | {latency_ok} |"
        )
    return lines


def _proxy_cpu(measures: Sequence[Measure], registry: Registry, mode: str) -> tuple[float, float] | None:
    """(owner's CPU-s/GiB pulling direct, proxying member's CPU-s/GiB forwarding), when both were measured."""
    direct, proxied = _find(measures, registry, mode, "direct"), _find(measures, registry, mode, "proxied")
    if not direct or not proxied or proxied.proxy_cpu_gib is None:
        return None
    return direct.owner_cpu_gib, proxied.proxy_cpu_gib


def _cpu_floor_table(measures: Sequence[Measure]) -> list[str]:
    lines = [
        "| mode | ours: owner CPU-s/GiB, direct | ours: proxying member CPU-s/GiB | proxying / owner direct | "
        "floor ≤ 1.5 | zot: owner CPU-s/GiB, direct | zot: proxying member CPU-s/GiB | zot: proxying / owner direct "
        "| ours / zot, proxying member | floor < 1 (below zot) |",
        "|---|--:|--:|--:|---|--:|--:|--:|--:|---|",
    ]
    for mode in MODES:
        ours = _proxy_cpu(measures, "ours", mode)
        if ours is None:
            continue
        ratio = ours[1] / ours[0]
        cells = [
            mode,
            _cell(ours[0]),
            _cell(ours[1]),
            f"{ratio:.2f}",
            "PASS" if ratio <= FLOOR_PROXY_CPU_RATIO else "FAIL",
        ]
        zot = _proxy_cpu(measures, "zot", mode)
        if zot is None:
            cells += ["—", "—", "—", "—", "not measured (no zot)"]
        else:
            versus = ours[1] / zot[1]
            cells += [_cell(zot[0]), _cell(zot[1]), f"{zot[1] / zot[0]:.2f}", f"{versus:.2f}"]
            cells.append("PASS" if versus < 1 else "FAIL")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def report(measures: list[Measure], out: Path, elapsed: float, zot_note: str) -> None:
    lines = [
        *report_opening(
            "The proxy's cost",
            "bench.proxy",
            elapsed,
            ": a two-member cluster on 127.0.0.1 and 127.0.0.2 (one worker each), the repository owned"
            " by the second member; the same requests straight to the owner and through the first"
            " member.",
        ),
        f"Manifest GET: wrk, 1 connection, {WRK_SECONDS} s. Blob pull: curl, {BLOB_SIZE >> 20} MiB blob, "
        f"median of {PULLS}. CPU-s/GiB: user + system CPU of a member's process tree (psutil; ours: the serve "
        f"process and its worker) over the {PULLS} pulls, divided by the {PULLED_GIB:.4g} GiB they moved. "
        f"{zot_note}",
        "",
        f"Floors: a proxied pull keeps at least {FLOOR_PULL_RATIO} of the direct MB/s; a proxied manifest GET "
        f"adds under {FLOOR_ADDED_MS} ms at the median; the proxying member spends at most "
        f"{FLOOR_PROXY_CPU_RATIO} times the owner's direct CPU per GiB, and less than zot's proxying member.",
        "",
        *_measure_table(measures),
        "",
        *_speed_floor_table(measures),
        "",
        *_cpu_floor_table(measures),
    ]
    closing = "\n".join([WHAT_LIMITS, "", *_cpu_findings(measures)])
    write_report(out, "proxy-benchmarks", lines, "direct and proxied", closing, lambda png: _plot(measures, png))


def _measure_zot(zot: Path | None, tls: bool, workdir: Path, notes: list[str]) -> list[Measure]:
    """zot's rows, or none with the reason in `notes` (no ZOT_BIN, or a zot cluster that would not serve)."""
    if zot is None:
        return []
    try:
        return measure_mode("zot", tls, workdir, zot)
    except (RuntimeError, subprocess.SubprocessError, httpx.HTTPError) as error:
        reason = f"zot's {'TLS' if tls else 'plain'} rows are left out: {error}"
        print(f"bench.proxy: {reason}", file=sys.stderr)
        notes.append(reason.splitlines()[0])
        return []


def _zot_version(zot: Path) -> str:
    """zot's release as `zot --version` logs it (the commit field: v2.1.20-0-g3b5796d8), else the file name."""
    done = subprocess.run([str(zot), "--version"], capture_output=True, text=True, timeout=30)
    found = re.search(r'"commit":"([^"]+)"', done.stdout + done.stderr)
    return found.group(1) if found else zot.name


def main() -> int:
    for binary in ("wrk", "curl", "haproxy"):
        if not shutil.which(binary):
            print(f"bench.proxy: {binary} is missing (make tools installs it)", file=sys.stderr)
            return 2
    zot = zot_bin()
    notes = []
    if zot is None:
        print("bench.proxy: ZOT_BIN is not set: zot's rows are left out", file=sys.stderr)
        notes.append("ZOT_BIN was not set: no zot rows.")
    else:
        notes.append(
            f"zot: {_zot_version(zot)}, the same configs with both members on 127.0.0.1 at two ports "
            "(`_zot_variant`: zot finds itself by interface address and port)."
        )
    started = time.monotonic()
    measures: list[Measure] = []
    with tempfile.TemporaryDirectory(prefix="zot-proxy-bench-") as tmp:
        for tls in (False, True):
            measures += measure_mode("ours", tls, Path(tmp))
            measures += _measure_zot(zot, tls, Path(tmp), notes)
    report(measures, DOCS, time.monotonic() - started, " ".join(notes))
    for m in measures:
        print(m)
    return 0


if __name__ == "__main__":
    sys.exit(main())
