"""Memory of a registry under test while blobs stream: its resident size (all its processes), sampled
during a transfer, and a 1 GiB push and pull to measure."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator

import httpx
import psutil

GIB = 1 << 30
CHUNK = 1 << 20
LIMIT = 64 << 20


def server_rss(pid: int) -> int:
    parent = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)])


class PeakSampler:
    """Samples the registry's RSS (all its processes) every 20 ms while a transfer runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, server_rss(self.pid))

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def one_gib(block: bytes) -> Iterator[bytes]:
    for i in range(GIB // CHUNK):
        # vary every block a little so nothing could be deduplicated or compressed away
        yield i.to_bytes(8, "little") + block[8:]


def round_trip_one_gib(client: httpx.Client, repo: str, pid: int) -> tuple[int, int, int]:
    """Pushes a 1 GiB blob (POST, then PUT with the whole body) and pulls it back whole.

    Returns the RSS of `pid` and its children before, and its peaks during the push and the pull.
    """
    block = os.urandom(CHUNK)
    hasher = hashlib.sha256()
    for chunk in one_gib(block):
        hasher.update(chunk)
    digest = "sha256:" + hasher.hexdigest()
    baseline = server_rss(pid)
    with PeakSampler(pid) as push:
        location = client.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
        done = client.put(
            location,
            params={"digest": digest},
            content=one_gib(block),
            headers={"Content-Type": "application/octet-stream"},
        )
        assert done.status_code == 201, done.text
    pulled = hashlib.sha256()
    size = 0
    with PeakSampler(pid) as pull, client.stream("GET", f"/v2/{repo}/blobs/{digest}") as response:
        assert response.status_code == 200
        for chunk in response.iter_raw(CHUNK):
            pulled.update(chunk)
            size += len(chunk)
    assert size == GIB
    assert "sha256:" + pulled.hexdigest() == digest
    return baseline, push.peak, pull.peak
