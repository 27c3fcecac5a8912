"""What garbage collection means in every store: what a pass reports, how old a session must be.

Each store collects its own way (local/gc.py over files, s3/gc.py over objects); both keep
what `indexops.reachable_digests` finds reachable from a repository's index.
"""

from __future__ import annotations

from dataclasses import dataclass

SESSION_MIN_AGE = 3600.0  # abandoned upload sessions are collected after an hour at least


@dataclass
class GcReport:
    manifests: int = 0
    blobs: int = 0
    uploads: int = 0
    dedupe_copies: int = 0
    bytes_freed: int = 0
