"""The request-rate workloads, each run with the same client against either registry: `wrk` for GET
(manifest, tags list); `curl --parallel` for HEAD, because wrk 4.1.0 waits for a body after a HEAD
answer that carries Content-Length (as both registries' do) and so never completes one.

Every loop is bounded by a count and a subprocess timeout.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .servers import Server
from .workloads import OCI_MANIFEST, REPO, WRK_SLACK, Rate, Settings

_WRK_LUA = """wrk.method = "{method}"
done = function(summary, latency, requests)
  io.write(string.format("WRK_JSON {{\\"requests\\": %d, \\"duration_us\\": %d, \\"status\\": %d, "
    .. "\\"connect\\": %d, \\"read\\": %d, \\"write\\": %d, \\"timeout\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d}}\\n",
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


@contextmanager
def _scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="zot-bench-client-") as directory:
        yield Path(directory)


def wrk_rate(
    server: Server,
    url: str,
    connections: int,
    duration: float,
    headers: dict[str, str] | None = None,
    method: str = "GET",
) -> Rate:
    threads = min(2, connections)
    with _scratch() as scratch:
        script = scratch / "bench.lua"
        script.write_text(_WRK_LUA.format(method=method))
        argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--timeout", "5s", "-s", str(script)]
        for key, value in {**server.access.headers(), **(headers or {})}.items():
            argv += ["-H", f"{key}: {value}"]
        before = server.cpu_seconds()
        done = subprocess.run([*argv, url], capture_output=True, text=True, timeout=duration + WRK_SLACK)
        cpu = server.cpu_seconds() - before
    lines = [line for line in done.stdout.splitlines() if line.startswith("WRK_JSON ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")
    stats = json.loads(lines[-1].removeprefix("WRK_JSON "))
    failures = sum(stats[k] for k in ("status", "connect", "read", "write", "timeout"))
    return Rate(
        "wrk",
        stats["requests"],
        stats["duration_us"] / 1e6,
        failures,
        stats["p50_us"] / 1000,
        stats["p99_us"] / 1000,
        cpu,
    )


def curl_head_rate(
    server: Server,
    url: str,
    connections: int,
    duration: float,
    headers: dict[str, str] | None = None,
    max_batches: int = 50,
) -> Rate:
    """HEAD requests from one curl process per batch: sequential for 1 connection, --parallel otherwise.

    Batches grow until one takes about a second; the run stops after `duration` seconds of batches.
    """
    base_args = ["curl", "-sS", "--head", "-w", "%{http_code}\\n", *server.access.curl_args()]
    for key, value in (headers or {}).items():
        base_args += ["-H", f"{key}: {value}"]
    if connections > 1:
        base_args += ["--parallel", "--parallel-immediate", "--parallel-max", str(connections)]
    requests = failures = 0
    elapsed = 0.0
    batch = 100
    before = server.cpu_seconds()
    with _scratch() as scratch:
        config = scratch / "urls.txt"
        for _ in range(max_batches):
            if elapsed >= duration:
                break
            config.write_text(f'url = "{url}"\noutput = "/dev/null"\n' * batch)
            started = time.perf_counter()
            done = subprocess.run(
                [*base_args, "-K", str(config)], capture_output=True, text=True, timeout=duration + WRK_SLACK
            )
            took = time.perf_counter() - started
            codes = done.stdout.split()
            ok = sum(1 for code in codes if code == "200")
            requests += ok
            failures += batch - ok
            elapsed += took
            batch = max(100, min(50_000, int(batch * 1.0 / max(took, 1e-3))))
    cpu = server.cpu_seconds() - before
    return Rate("curl", requests, elapsed, failures, cpu_seconds=cpu)


RATE_KINDS = ("manifest_get", "manifest_head", "tags")


def rate_rows(settings: Settings) -> list[str]:
    return [f"{kind}_c{n}" for kind in RATE_KINDS for n in settings.connections]


def run_rate_row(server: Server, key: str, settings: Settings, duration: float | None = None) -> Rate:
    """`manifest_get_c32` and the like: GET or HEAD of the manifest by tag, or the tags list."""
    kind, _, connections = key.rpartition("_c")
    seconds = settings.duration if duration is None else duration
    accept = {"Accept": OCI_MANIFEST}
    manifest_url = f"{server.base_url}/v2/{REPO}/manifests/latest"
    if kind == "manifest_get":
        return wrk_rate(server, manifest_url, int(connections), seconds, accept)
    if kind == "manifest_head":
        return curl_head_rate(server, manifest_url, int(connections), seconds, accept)
    if kind == "tags":
        return wrk_rate(server, f"{server.base_url}/v2/{REPO}/tags/list", int(connections), seconds)
    raise ValueError(f"unknown rate row {key!r}")
