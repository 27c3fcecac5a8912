"""The workloads, each run with the same client against either registry.

- Blob push and pull: `curl` (monolithic push, pull to /dev/null; its own `time_total` is the time)
  and a small httpx client on one keep-alive connection for the chunked push (POST, PATCH with
  Content-Range per chunk, following each Location, then PUT ?digest=). Chunks are in memory first.
- Request rates: `wrk` for GET (manifest, tags list); `curl --parallel` for HEAD, because wrk 4.1.0
  waits for a body after a HEAD answer that carries Content-Length (as both registries' do) and so
  never completes one.

Every loop is bounded by a count and a subprocess timeout.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .servers import Server

REPO = "bench/app"
BLOB_REPO = "bench/blobs"
TAGS = ["latest", *[f"v1.{i}" for i in range(9)]]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MB = 1_000_000
GIB = 1 << 30

CURL_TIMEOUT = 120.0
WRK_SLACK = 15.0


@dataclass(frozen=True)
class BlobFile:
    path: Path
    digest: str
    size: int


@dataclass(frozen=True)
class Settings:
    blob_size: int = 64 << 20
    chunk_size: int = 8 << 20
    reps: int = 5
    duration: float = 5.0
    connections: tuple[int, ...] = (1, 32)


@dataclass
class BlobPhase:
    """One blob workload: the time of each transfer and the server CPU spent during the phase."""

    seconds: list[float] = field(default_factory=list)
    bytes_each: int = 0
    cpu_seconds: float = 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes_each / statistics.median(self.seconds) / MB if self.seconds else 0.0

    @property
    def cpu_per_gib(self) -> float:
        moved = self.bytes_each * len(self.seconds)
        return self.cpu_seconds / (moved / GIB) if moved else 0.0


@dataclass
class Rate:
    """A request-rate run: completed requests, elapsed time, failures and latency where known."""

    client: str
    requests: int
    seconds: float
    failures: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


# Content -----------------------------------------------------------------------------------------


def make_blobs(directory: Path, count: int, size: int) -> list[BlobFile]:
    """`count` distinct blobs of `size` bytes: one random body, each with its own 16-byte header."""
    body = os.urandom(size)
    blobs: list[BlobFile] = []
    for index in range(count):
        header = f"zot-bench-{index:06d}".encode()[:16].ljust(16, b"-")
        data = header + body[16:]
        path = directory / f"blob-{index:03d}"
        path.write_bytes(data)
        blobs.append(BlobFile(path, "sha256:" + hashlib.sha256(data).hexdigest(), size))
    return blobs


def _absolute(base: str, location: str) -> httpx.URL:
    return httpx.URL(base).join(location)


def _push_small(client: httpx.Client, base: str, repo: str, data: bytes) -> str:
    """POST then PUT with the whole body: the upload every registry supports."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    started = client.post(f"{base}/v2/{repo}/blobs/uploads/")
    started.raise_for_status()
    url = _absolute(base, started.headers["Location"]).copy_merge_params({"digest": digest})
    done = client.put(url, content=data, headers={"Content-Type": "application/octet-stream"})
    if done.status_code != 201:
        raise RuntimeError(f"blob push answered {done.status_code}: {done.text[:200]}")
    return digest


def populate(server: Server) -> str:
    """A small image (config + two layers) under several tags; returns the manifest digest."""
    base = server.base_url
    with httpx.Client(timeout=30.0) as client:
        config = json.dumps(
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
        ).encode()
        layers = [os.urandom(4096), os.urandom(2048)]
        config_digest = _push_small(client, base, REPO, config)
        layer_digests = [_push_small(client, base, REPO, layer) for layer in layers]
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
                "layers": [
                    {"mediaType": OCI_LAYER, "digest": d, "size": len(b)}
                    for d, b in zip(layer_digests, layers, strict=True)
                ],
                "annotations": {"org.opencontainers.image.title": "zot-bench"},
            },
            indent=2,
        ).encode()
        digest = ""
        for tag in TAGS:
            answer = client.put(
                f"{base}/v2/{REPO}/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST}
            )
            if answer.status_code != 201:
                raise RuntimeError(f"manifest push answered {answer.status_code}: {answer.text[:200]}")
            digest = answer.headers["Docker-Content-Digest"]
        check = client.get(f"{base}/v2/{REPO}/tags/list")
        check.raise_for_status()
        if sorted(check.json()["tags"]) != sorted(TAGS):
            raise RuntimeError(f"tags list is {check.json()}")
        return digest


# Blobs ---------------------------------------------------------------------------------------------


def _curl(args: list[str]) -> list[str]:
    """Run curl with `-w` output as the last line, split on spaces."""
    done = subprocess.run(
        ["curl", "-sS", "--max-time", str(int(CURL_TIMEOUT)), *args],
        capture_output=True,
        text=True,
        timeout=CURL_TIMEOUT + 10,
    )
    if done.returncode != 0:
        raise RuntimeError(f"curl {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1].split(" ")


_BODY = ["-H", "Content-Type: application/octet-stream", "-H", "Expect:"]


def push_single_post(server: Server, blob: BlobFile) -> float:
    """POST /uploads/?digest= with the whole body. distribution 2.8.2 does not implement it (202, session)."""
    url = f"{server.base_url}/v2/{BLOB_REPO}/blobs/uploads/?digest={blob.digest}"
    code, seconds, sent = _curl(
        [
            "-X",
            "POST",
            *_BODY,
            "--data-binary",
            f"@{blob.path}",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{time_total} %{size_upload}",
            url,
        ]
    )
    if code != "201" or int(sent) != blob.size:
        raise RuntimeError(f"{server.label}: single-POST push answered {code} after {sent} bytes")
    return float(seconds)


def push_post_put(server: Server, blob: BlobFile) -> float:
    """Monolithic upload as clients do it everywhere: POST opens a session, PUT ?digest= sends the body."""
    code, opened, location = _curl(
        [
            "-X",
            "POST",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{time_total} %header{location}",
            f"{server.base_url}/v2/{BLOB_REPO}/blobs/uploads/",
        ]
    )
    if code != "202" or not location:
        raise RuntimeError(f"{server.label}: upload POST answered {code}")
    url = str(_absolute(server.base_url, location).copy_merge_params({"digest": blob.digest}))
    code, seconds, sent = _curl(
        [
            "-X",
            "PUT",
            *_BODY,
            "--data-binary",
            f"@{blob.path}",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{time_total} %{size_upload}",
            url,
        ]
    )
    if code != "201" or int(sent) != blob.size:
        raise RuntimeError(f"{server.label}: monolithic PUT answered {code} after {sent} bytes")
    return float(opened) + float(seconds)


def push_chunked(server: Server, blob: BlobFile, chunk_size: int, client: httpx.Client) -> float:
    """POST, then one PATCH per chunk with Content-Range (following each Location), then PUT ?digest=."""
    data = blob.path.read_bytes()
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]
    base = server.base_url
    started = time.perf_counter()
    answer = client.post(f"{base}/v2/{BLOB_REPO}/blobs/uploads/")
    if answer.status_code != 202:
        raise RuntimeError(f"{server.label}: upload POST answered {answer.status_code}")
    location = answer.headers["Location"]
    offset = 0
    for chunk in chunks:
        answer = client.patch(
            _absolute(base, location),
            content=chunk,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
            },
        )
        if answer.status_code != 202:
            raise RuntimeError(f"{server.label}: PATCH at {offset} answered {answer.status_code}: {answer.text[:200]}")
        location = answer.headers["Location"]
        offset += len(chunk)
    answer = client.put(_absolute(base, location).copy_merge_params({"digest": blob.digest}))
    if answer.status_code != 201:
        raise RuntimeError(f"{server.label}: closing PUT answered {answer.status_code}: {answer.text[:200]}")
    return time.perf_counter() - started


def pull(server: Server, blob: BlobFile) -> float:
    code, seconds, received = _curl(
        [
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{time_total} %{size_download}",
            f"{server.base_url}/v2/{BLOB_REPO}/blobs/{blob.digest}",
        ]
    )
    if code != "200" or int(received) != blob.size:
        raise RuntimeError(f"{server.label}: blob GET answered {code} with {received} bytes")
    return float(seconds)


def supports_single_post(server: Server) -> bool:
    """Whether POST /uploads/?digest= with a body completes the upload (201) rather than opening a session."""
    data = b"zot-bench single POST probe"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with httpx.Client(timeout=30.0) as client:
        answer = client.post(
            f"{server.base_url}/v2/{BLOB_REPO}/blobs/uploads/",
            params={"digest": digest},
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if answer.status_code == 202 and "Location" in answer.headers:  # cancel the session it opened
            client.delete(_absolute(server.base_url, answer.headers["Location"]))
        return answer.status_code == 201


def blob_phase(server: Server, blobs: list[BlobFile], transfer: Callable[[BlobFile], float]) -> BlobPhase:
    phase = BlobPhase(bytes_each=blobs[0].size if blobs else 0)
    before = server.cpu_seconds()
    for blob in blobs:
        phase.seconds.append(transfer(blob))
    phase.cpu_seconds = server.cpu_seconds() - before
    return phase


BLOB_ROWS = ("push_single", "push_mono", "push_chunked", "pull")
PULL_ROUNDS = 4


def blob_sets(blobs: list[BlobFile], reps: int) -> dict[str, list[BlobFile]]:
    """Which blobs each blob row moves: distinct ones per push row; pulls read the monolithic ones, each
    PULL_ROUNDS times, because a pull takes only tens of milliseconds and a few samples are noisy."""
    return {
        "push_mono": blobs[:reps],
        "push_chunked": blobs[reps : 2 * reps],
        "push_single": blobs[2 * reps : 3 * reps],
        "pull": blobs[:reps] * PULL_ROUNDS,
    }


def run_blob_row(server: Server, key: str, blobs: list[BlobFile], settings: Settings) -> BlobPhase:
    """One blob row over its blobs (`pull` needs them pushed first: `push_mono` does that)."""
    if key == "push_single":
        return blob_phase(server, blobs, lambda blob: push_single_post(server, blob))
    if key == "push_mono":
        return blob_phase(server, blobs, lambda blob: push_post_put(server, blob))
    if key == "push_chunked":
        with httpx.Client(timeout=CURL_TIMEOUT) as client:
            return blob_phase(server, blobs, lambda blob: push_chunked(server, blob, settings.chunk_size, client))
    if key == "pull":
        return blob_phase(server, blobs, lambda blob: pull(server, blob))
    raise ValueError(f"unknown blob row {key!r}")


# Request rates ----------------------------------------------------------------------------------

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
        for key, value in (headers or {}).items():
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
    base_args = ["curl", "-sS", "--head", "-w", "%{http_code}\\n"]
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


@dataclass
class ServerResult:
    """Everything measured on one server configuration."""

    label: str
    kind: str
    workers: int | None
    blobs: dict[str, BlobPhase] = field(default_factory=dict)
    rates: dict[str, Rate] = field(default_factory=dict)
    single_post: bool = False
    other_load_cores: float = 0.0
    disk_written_mb: float = 0.0
    pushed_mb: float = 0.0
    seconds: float = 0.0
    peak_rss: int = 0
