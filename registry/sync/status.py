"""What sync reports: the metrics (registry/metrics.py: images and bytes copied and upstream
errors by registry, the last successful sync per repository) and one log line per sync."""

from __future__ import annotations

import logging
import time

from .. import metrics

log = logging.getLogger("zot_registry.sync")


def failed(registry: str) -> None:
    metrics.SYNC_UPSTREAM_ERRORS.labels(registry).inc()


def copied(registry: str, blob_bytes: int) -> None:
    metrics.SYNCED_IMAGES.labels(registry).inc()
    metrics.SYNCED_BYTES.labels(registry).inc(blob_bytes)


def record(repository: str, reference: str, digest: str, registry: str, copied: bool) -> None:
    """A repository synced from `registry`: its image was copied, or found the same as upstream."""
    metrics.SYNC_LAST_SUCCESS.labels(repository).set(time.time())
    if not copied:
        log.debug(
            "sync: up to date",
            extra={"repository": repository, "reference": reference, "digest": digest, "upstream": registry},
        )
