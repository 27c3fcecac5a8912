"""Prometheus metrics: requests by route and status, latency, bytes in and out, storage usage.

With several hypercorn workers the counters live in PROMETHEUS_MULTIPROC_DIR (set by the server
before the workers start) so that /metrics on any worker reports the whole server.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

REQUESTS = Counter(
    "zot_http_requests_total", "HTTP requests by route, method and status", ["route", "method", "status"]
)
LATENCY = Histogram(
    "zot_http_request_duration_seconds",
    "HTTP request latency by route and method",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BYTES_IN = Counter("zot_http_received_bytes_total", "Request body bytes received", ["route"])
BYTES_OUT = Counter("zot_http_sent_bytes_total", "Response body bytes sent", ["route"])


class StorageUsage(Collector):
    """Disk used by the root directory, computed at scrape time and cached: walking it is not free."""

    def __init__(self, measure: Callable[[], int], ttl: float = 30.0) -> None:
        self._measure = measure
        self._ttl = ttl
        self._value = 0
        self._at = 0.0

    def collect(self) -> Iterable[GaugeMetricFamily]:
        if time.monotonic() - self._at > self._ttl:
            self._value = self._measure()
            self._at = time.monotonic()
        yield GaugeMetricFamily("zot_storage_used_bytes", "Bytes stored under the root directory", value=self._value)


def render(storage: StorageUsage) -> bytes:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        for metric in (
            REQUESTS,
            LATENCY,
            BYTES_IN,
            BYTES_OUT,
            PROXIED,
            PROXIED_BYTES,
            PEER_ERRORS,
            REBALANCE_REPOSITORIES,
            REBALANCE_BYTES,
            REBALANCE_FAILURES,
            SYNCED_IMAGES,
            SYNCED_BYTES,
            SYNC_UPSTREAM_ERRORS,
            SYNC_LAST_SUCCESS,
        ):
            registry.register(metric)
    registry.register(storage)
    return generate_latest(registry)


PROXIED = Counter(
    "zot_cluster_proxied_requests_total", "Requests proxied to the owning member", ["peer", "route", "status"]
)
PROXIED_BYTES = Counter(
    "zot_cluster_proxied_bytes_total", "Body bytes proxied to and from peers", ["peer", "direction"]
)
PEER_ERRORS = Counter(
    "zot_cluster_peer_errors_total", "Peers that could not be reached or failed mid-request", ["peer", "kind"]
)
# Membership changes (cluster/rebalance.py): what this member sent to the repositories' next owners.
REBALANCE_REPOSITORIES = Counter(
    "zot_cluster_rebalance_repositories_total",
    "Repositories copied to their next owner (stage copied) and published there (stage published)",
    ["stage"],
)
REBALANCE_BYTES = Counter("zot_cluster_rebalance_bytes_total", "Blob bytes sent to the repositories' next owners")
REBALANCE_FAILURES = Counter("zot_cluster_rebalance_failures_total", "Repository copies that failed and were retried")
# Sync (registry/sync/): what came from each upstream, what failed, and when each repository last synced.
SYNCED_IMAGES = Counter("zot_sync_images_total", "Images copied from an upstream registry", ["registry"])
SYNCED_BYTES = Counter("zot_sync_bytes_total", "Blob bytes copied from an upstream registry", ["registry"])
SYNC_UPSTREAM_ERRORS = Counter(
    "zot_sync_upstream_errors_total", "Syncs from an upstream registry that failed", ["registry"]
)
SYNC_LAST_SUCCESS = Gauge(
    "zot_sync_last_success_timestamp_seconds",
    "When a repository last synced from an upstream (copied, or found up to date)",
    ["repository"],
    multiprocess_mode="max",
)
