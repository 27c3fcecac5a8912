"""What the workloads share: their settings, the content they push first (`populate`, `make_blobs`) and
what they measure (`BlobPhase`, `Rate`, `ServerResult`). The workloads themselves, each run with the same
client against either registry, are in `bench/blob_workloads.py` (blob push and pull) and
`bench/rate_workloads.py` (request rates).
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .servers import Server

REPO = "bench/app"
BLOB_REPO = "bench/big"  # not ".../blobs": an OCI layout entry is no name component (NAME_INVALID)
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


def absolute(base: str, location: str) -> httpx.URL:
    return httpx.URL(base).join(location)


def _push_small(client: httpx.Client, base: str, repo: str, data: bytes) -> str:
    """POST then PUT with the whole body: the upload every registry supports."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    started = client.post(f"{base}/v2/{repo}/blobs/uploads/")
    started.raise_for_status()
    url = absolute(base, started.headers["Location"]).copy_merge_params({"digest": digest})
    done = client.put(url, content=data, headers={"Content-Type": "application/octet-stream"})
    if done.status_code != 201:
        raise RuntimeError(f"blob push answered {done.status_code}: {done.text[:200]}")
    return digest


def populate(server: Server) -> str:
    """A small image (config + two layers) under several tags; returns the manifest digest."""
    base = server.base_url
    with httpx.Client(timeout=30.0, **server.access.httpx_args()) as client:
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
