"""Blobs stream through the registry: a 1 GiB push and pull barely moves its resident memory."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.support.memory import LIMIT, round_trip_one_gib
from tests.support.registry import RegistryProcess


def test_one_gib_blob_push_and_pull_stays_within_64_mib(start_registry: Callable[..., RegistryProcess]) -> None:
    registry = start_registry(workers=1)
    assert registry.process is not None
    with httpx.Client(base_url=registry.url, timeout=600) as client:
        client.get("/v2/")
        baseline, push_peak, pull_peak = round_trip_one_gib(client, "big", registry.process.pid)
    growth = max(push_peak, pull_peak) - baseline
    print(f"baseline RSS {baseline >> 20} MiB, push peak {push_peak >> 20} MiB, pull peak {pull_peak >> 20} MiB")
    assert growth < LIMIT, f"resident memory grew by {growth >> 20} MiB moving 1 GiB"
