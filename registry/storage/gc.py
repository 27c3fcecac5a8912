"""Garbage collection: blobs no manifest references, abandoned uploads, unreferenced dedupe copies.

Runs every `gcInterval` and only touches files older than `gcDelay`, so a blob pushed just before
its manifest is never taken. Age is the later of mtime and ctime: linking a deduplicated blob into
another repository changes the inode's ctime, which protects a freshly mounted old blob.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..digests import parse_digest
from ..errors import RegistryError
from .base import GcReport
from .indexops import reachable_digests

if TYPE_CHECKING:
    from .store import ImageStore

log = logging.getLogger("zot_registry.gc")


def _age(path: Path, now: float) -> float:
    stat = path.stat()
    return now - max(stat.st_mtime, stat.st_ctime)


def referenced_digests(store: ImageStore, name: str) -> set[str]:
    """Every digest reachable from the repository's index: manifests, their configs, layers and children."""
    index = store.read_index(name)
    if index is None:
        return set()

    def read(digest: str) -> bytes | None:
        try:
            return store.layout.blob(name, parse_digest(digest)).read_bytes()
        except (FileNotFoundError, RegistryError):
            return None

    return reachable_digests(index, read)


def collect_repository(store: ImageStore, name: str, delay: float, report: GcReport) -> None:
    now = time.time()
    keep = referenced_digests(store, name)
    blobs = store.layout.repo(name) / "blobs"
    for algorithm_dir in blobs.iterdir() if blobs.is_dir() else []:
        for blob in algorithm_dir.iterdir():
            if f"{algorithm_dir.name}:{blob.name}" in keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                if _age(blob, now) >= delay:
                    size = blob.stat().st_size
                    blob.unlink()
                    report.blobs += 1
                    report.bytes_freed += size
    uploads = store.layout.uploads(name)
    for session in uploads.iterdir() if uploads.is_dir() else []:
        if session.name.startswith(".index"):
            continue
        with contextlib.suppress(FileNotFoundError):
            if _age(session, now) >= max(delay, 3600.0):
                session.unlink()
                report.uploads += 1


def collect_dedupe_copies(store: ImageStore, delay: float, report: GcReport) -> None:
    """A canonical copy whose only link is itself belongs to no repository any more."""
    now = time.time()
    root = store.layout.root / ".dedupe" / "blobs"
    for algorithm_dir in root.iterdir() if root.is_dir() else []:
        for blob in algorithm_dir.iterdir():
            with contextlib.suppress(FileNotFoundError):
                stat = blob.stat()
                if stat.st_nlink == 1 and _age(blob, now) >= delay:
                    blob.unlink()
                    report.dedupe_copies += 1
                    report.bytes_freed += stat.st_size


def collect(store: ImageStore, delay: float, owns: Callable[[str], bool] = lambda _: True) -> GcReport | None:
    """One pass over the repositories `owns` accepts; None when another worker is already collecting."""
    lock_path = store.layout.root / ".gc.lock"
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        report = GcReport()
        for name in filter(owns, store.repository_names()):
            collect_repository(store, name, delay, report)
        collect_dedupe_copies(store, delay, report)
        return report
