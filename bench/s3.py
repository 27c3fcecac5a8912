"""S3-backed push and pull against the limit: the same S3 server written and read directly, in one run.

versitygw (the S3 gateway the tests use, on a local directory) and redis-server on loopback; one
registry member storing in the bucket (dedupe off, as in zot's examples), and a 3-member cluster on
127.0.0.1-3 (one port, plain HTTP) storing in the same bucket under its own prefix, driven through a
member that does not own the repository (so every byte also crosses the member-to-owner proxy).
For each blob size:
- the limit: aiobotocore straight to the bucket, multipart with the registry's part size
  to push, a streamed GET to pull;
- the registry, with curl: a monolithic push (POST ?digest=, streamed into parts and completed once
  the digest matched), a session push (POST, one PATCH, PUT: the blob is assembled under the
  session and copied home once verified, which costs a server-side copy), and a pull;
- the same three through the 3-member cluster's non-owner.
Median of a few runs each. Writes docs/s3-benchmarks.md and docs/s3-benchmarks.png.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aiobotocore.session import get_session
from botocore.config import Config as BotoConfig
from zot_registry.cluster.hashing import owner_index
from zot_registry.local.addresses import port_free_for_members
from zot_registry.local.configs import ClusterSettings, RedisCache, S3Storage
from zot_registry.storage.s3.parts import PART_SIZE as PART

from bench.common import (
    DOCS,
    Panel,
    bar_panels,
    binary,
    curl,
    free_port,
    registry_config,
    report_opening,
    stop_all,
    wait_for_status,
    write_report,
)

SIZES = (16 << 20, 64 << 20, 256 << 20)
RUNS = 3
ACCESS, SECRET = "bench-access", "bench-secret-key"
BUCKET = "bench"
HASH_KEY = "loremipsumdolors"  # zot's example key
CLUSTER = 3


@dataclass
class Row:
    size: int
    path: str  # limit, registry, cluster
    push_mbps: float
    session_push_mbps: float
    pull_mbps: float


def _config(
    workdir: Path, name: str, s3_port: int, redis_port: int, host: str, port: int, members: list[str] | None = None
) -> Path:
    """A member's config: the S3 driver and redis cache; a cluster's members share prefix and key prefix."""
    prefix = name.split("-")[0]
    (workdir / name).mkdir(parents=True)
    return registry_config(
        workdir / name / "config.json",
        workdir / name / "root",
        port,
        host,
        log_level="error",
        indent=None,
        dedupe=False,
        s3=S3Storage(f"127.0.0.1:{s3_port}", BUCKET, "/" + prefix),
        cache=RedisCache(f"redis://127.0.0.1:{redis_port}", prefix),
        cluster=ClusterSettings(members, HASH_KEY) if members else None,
    )


@dataclass
class Servers:
    endpoint: str  # S3
    single: str  # one member
    cluster: list[str]  # the members of the 3-member cluster, in list order


@contextmanager
def _servers(workdir: Path) -> Iterator[Servers]:
    """versitygw, redis-server, one registry member and a 3-member cluster on 127.0.0.1-3."""
    (workdir / "data").mkdir()
    (workdir / "meta").mkdir()
    s3_port, redis_port, registry_port = free_port(), free_port(), free_port()
    cluster_port = port_free_for_members(CLUSTER)
    env = {
        **os.environ,
        "ROOT_ACCESS_KEY_ID": ACCESS,
        "ROOT_SECRET_ACCESS_KEY": SECRET,
        "AWS_ACCESS_KEY_ID": ACCESS,
        "AWS_SECRET_ACCESS_KEY": SECRET,
    }
    quiet = subprocess.DEVNULL
    processes = [
        subprocess.Popen(
            [
                binary("versitygw", "bench.s3"),
                "--port",
                f"127.0.0.1:{s3_port}",
                "posix",
                "--sidecar",
                str(workdir / "meta"),
                str(workdir / "data"),
            ],
            env=env,
            stdout=quiet,
            stderr=quiet,
        ),
        subprocess.Popen(
            [
                binary("redis-server", "bench.s3"),
                "--bind",
                "127.0.0.1",
                "--port",
                str(redis_port),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cwd=workdir,
            stdout=quiet,
            stderr=quiet,
        ),
    ]
    hosts = [f"127.0.0.{i + 1}" for i in range(CLUSTER)]
    members = [f"{host}:{cluster_port}" for host in hosts]
    configs = [_config(workdir, "single", s3_port, redis_port, "127.0.0.1", registry_port)]
    configs += [
        _config(workdir, f"cluster-{i}", s3_port, redis_port, host, cluster_port, members)
        for i, host in enumerate(hosts)
    ]
    try:
        deadline = time.monotonic() + 60
        wait_for_status(f"http://127.0.0.1:{s3_port}/", deadline, ok=(403,))  # answers unsigned requests with 403
        for config in configs:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "zot_registry.cli", "serve", str(config)],
                    env=env,
                    stdout=quiet,
                    stderr=quiet,
                )
            )
        urls = [f"http://127.0.0.1:{registry_port}"] + [f"http://{member}" for member in members]
        for url in urls:
            wait_for_status(f"{url}/readyz", deadline)
        yield Servers(f"http://127.0.0.1:{s3_port}", urls[0], urls[1:])
    finally:
        stop_all(processes, timeout=30)


async def _limit(endpoint: str, path: Path, size: int) -> tuple[float, float]:
    """Seconds to push (multipart, the registry's part size) and to pull (streamed) straight to the bucket."""
    config = BotoConfig(
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    async with get_session().create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS,
        aws_secret_access_key=SECRET,
        config=config,
    ) as s3:
        key = f"limit/{path.name}"
        started = time.perf_counter()
        upload = (await s3.create_multipart_upload(Bucket=BUCKET, Key=key))["UploadId"]
        parts = []
        with path.open("rb") as handle:
            number = 1
            while data := handle.read(PART):
                answer = await s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=number, Body=data)
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})
                number += 1
        await s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})
        pushed = time.perf_counter() - started
        started = time.perf_counter()
        received = 0
        answer = await s3.get_object(Bucket=BUCKET, Key=key)
        async with answer["Body"] as body:
            async for chunk in body.iter_chunks(1 << 20):
                received += len(chunk)
        assert received == size
        return pushed, time.perf_counter() - started


def _registry(url: str, path: Path, digest: str, repo: str) -> tuple[float, float, float]:
    """Seconds for a monolithic push, a session push (POST, PATCH, PUT) and a pull, with curl."""
    octets = ["-H", "Content-Type: application/octet-stream"]
    started = time.perf_counter()
    curl(["-X", "POST", *octets, "--data-binary", f"@{path}", f"{url}/v2/{repo}/mono/blobs/uploads/?digest={digest}"])
    monolithic = time.perf_counter() - started
    started = time.perf_counter()
    headers = curl(["-X", "POST", "-D", "-", "-o", "/dev/null", f"{url}/v2/{repo}/session/blobs/uploads/"])
    location = next(
        line.split(":", 1)[1].strip() for line in headers.splitlines() if line.lower().startswith("location:")
    )
    headers = curl(
        ["-X", "PATCH", *octets, "--data-binary", f"@{path}", "-D", "-", "-o", "/dev/null", f"{url}{location}"]
    )
    location = next(
        line.split(":", 1)[1].strip() for line in headers.splitlines() if line.lower().startswith("location:")
    )
    separator = "&" if "?" in location else "?"
    curl(["-X", "PUT", f"{url}{location}{separator}digest={digest}"])
    session = time.perf_counter() - started
    started = time.perf_counter()
    curl(["-o", "/dev/null", f"{url}/v2/{repo}/mono/blobs/{digest}"])
    return monolithic, session, time.perf_counter() - started


def measure(workdir: Path) -> list[Row]:
    rows = []
    with _servers(workdir) as servers:
        for size in SIZES:
            path = workdir / f"blob-{size >> 20}m"
            limit_push: list[float] = []
            limit_pull: list[float] = []
            timings: dict[str, list[tuple[float, float, float]]] = {"registry": [], "cluster": []}
            for run in range(RUNS):
                path.write_bytes(os.urandom(size))
                digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
                pushed, pulled = asyncio.run(_limit(servers.endpoint, path, size))
                limit_push.append(pushed)
                limit_pull.append(pulled)
                timings["registry"].append(_registry(servers.single, path, digest, f"bench/{size >> 20}m-{run}"))
                # Member 0 is the entry; the repository (both its .../mono and .../session) is owned elsewhere.
                repo = next(
                    f"bench/{size >> 20}m-{run}-{i}"
                    for i in range(1000)
                    if all(
                        owner_index(f"bench/{size >> 20}m-{run}-{i}/{leaf}", HASH_KEY.encode(), CLUSTER)
                        for leaf in ("mono", "session")
                    )
                )
                timings["cluster"].append(_registry(servers.cluster[0], path, repo=repo, digest=digest))
            mb = size / 1e6
            rows.append(
                Row(
                    size,
                    "limit",
                    mb / statistics.median(limit_push),
                    mb / statistics.median(limit_push),
                    mb / statistics.median(limit_pull),
                )
            )
            for name, runs in timings.items():
                rows.append(Row(size, name, *(mb / statistics.median(column) for column in zip(*runs, strict=True))))
    return rows


READING_THE_TABLE = """\
## Reading the table

- A monolithic push streams the body into S3 parts while hashing it and completes the multipart
  upload at the blob's own key once the digest matched: the bytes cross S3 once, as in the limit.
- A session push (what skopeo and most clients do) cannot know the digest until the PUT, so the
  parts are assembled under the session and copied to the blob's key after verification: a
  server-side copy of every byte, which on a gateway over a local disk costs as much as the write.
- The registry hashes every byte it receives (SHA-256) and runs on the same two cores as the S3
  server and the client; the limit does neither of those on the push side.
- Through a non-owner, every request is streamed once more, member to owner, over loopback; the
  owner does the S3 work. On these two cores that extra hop competes with the owner and versitygw
  for the same CPU; on separate hosts it costs a network hop, not storage work: nothing is stored
  twice and the entry member keeps no copy."""


def _plot(rows: list[Row], path: Path) -> None:
    paths = (("limit", "limit (aiobotocore)"), ("registry", "1 member"), ("cluster", "3 members, via non-owner"))

    def value(attr: str, size: int, name: str) -> float:
        return next(getattr(r, attr) for r in rows if r.size == size and r.path == name)

    panels: list[Panel] = [
        (title, [(label, [value(attr, size, name) for size in SIZES]) for name, label in paths])
        for attr, title in (("push_mbps", "push MB/s"), ("pull_mbps", "pull MB/s"))
    ]
    bar_panels(path, (9, 4), [f"{size >> 20} MiB" for size in SIZES], panels, shared=True)


def report(rows: list[Row], out: Path, elapsed: float) -> None:
    lines = report_opening(
        "S3-backed push and pull, against the S3 server written directly",
        "bench.s3",
        elapsed,
        ". versitygw on a local directory is the S3 server; one registry member "
        "(2 workers) stores in it with a redis cache, and so does a 3-member cluster (127.0.0.1-3, plain HTTP) driven "
        "through a member that does not own the repository. "
        "The limit is aiobotocore writing the same bytes to the same bucket "
        f"(multipart, {PART >> 20} MiB parts, as the registry) and reading them back; the registry is driven "
        f"by curl. Median of {RUNS} runs; MB/s.",
    )
    header = [
        "| blob | limit push | registry push (POST ?digest) | ratio | registry push (POST, PATCH, PUT) | ratio | "
        "limit pull | registry pull | ratio |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for path, title in (
        ("registry", "One member"),
        ("cluster", "Three members, through a member that does not own the repository"),
    ):
        lines += ["", f"### {title}", "", *header]
        for size in SIZES:
            limit = next(r for r in rows if r.size == size and r.path == "limit")
            ours = next(r for r in rows if r.size == size and r.path == path)
            lines.append(
                f"| {size >> 20} MiB | {limit.push_mbps:,.0f} | {ours.push_mbps:,.0f} | "
                f"{ours.push_mbps / limit.push_mbps:.2f} | {ours.session_push_mbps:,.0f} | "
                f"{ours.session_push_mbps / limit.push_mbps:.2f} | {limit.pull_mbps:,.0f} | "
                f"{ours.pull_mbps:,.0f} | {ours.pull_mbps / limit.pull_mbps:.2f} |"
            )
    write_report(
        out, "s3-benchmarks", lines, "registry, cluster and limit", READING_THE_TABLE, lambda png: _plot(rows, png)
    )


def main() -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="zot-s3-bench-") as tmp:
        rows = measure(Path(tmp))
    report(rows, DOCS, time.monotonic() - started)
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
