"""Garbage collection of the local store: blobs no manifest references, abandoned uploads, unreferenced dedupe copies.

Runs every `gcInterval` and only touches files older than `gcDelay`, so a blob pushed just before
its manifest is never taken. Age is the later of mtime and ctime: linking a deduplicated blob into
another repository changes the inode's ctime, which protects a freshly mounted old blob.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ...digests import parse_digest
from ...errors import RegistryError
from ..gc import SESSION_MIN_AGE, GcReport
from ..index import Index
from ..indexops import reachable_digests
from ..layout import SESSION_ID
from .layout import LocalLayout

log = logging.getLogger("zot_registry.gc")


class Collectable(Protocol):
    """What garbage collection needs from the local store: its layout, its repositories and their indexes."""

    @property
    def layout(self) -> LocalLayout: ...

    def repository_names(self) -> list[str]: ...

    def read_index(self, name: str) -> Index | None: ...


def _age(path: Path, now: float) -> float:
    stat = path.stat()
    return now - max(stat.st_mtime, stat.st_ctime)


def referenced_digests(store: Collectable, name: str) -> set[str]:
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


def _blob_files(blobs: Path) -> list[tuple[str, Path]]:
    """(digest, path) of each blob under blobs/<alg>/<hex>; anything else found there is not ours to judge."""
    found = []
    for algorithm in ("sha256", "sha512"):
        folder = blobs / algorithm
        for blob in folder.iterdir() if folder.is_dir() else []:
            digest = f"{algorithm}:{blob.name}"
            try:
                parse_digest(digest)
            except RegistryError:
                continue
            if blob.is_file():
                found.append((digest, blob))
    return found


def collect_repository(store: Collectable, name: str, delay: float, report: GcReport) -> None:
    """Unreferenced blobs and abandoned sessions of one repository. Raises RepositoryUnreadable, before
    touching anything, when its index.json cannot be read: what it references is then unknown."""
    now = time.time()
    keep = referenced_digests(store, name)
    for digest, blob in _blob_files(store.layout.blobs(name)):
        if digest in keep:
            continue
        with contextlib.suppress(FileNotFoundError):
            if _age(blob, now) >= delay:
                size = blob.stat().st_size
                blob.unlink()
                report.blobs += 1
                report.bytes_freed += size
    uploads = store.layout.uploads(name)
    for session in uploads.iterdir() if uploads.is_dir() else []:
        if session.name.startswith(".index") or not session.is_file():
            continue
        with contextlib.suppress(FileNotFoundError):
            if _age(session, now) >= max(delay, SESSION_MIN_AGE) and _unlink_unless_in_use(session):
                report.uploads += 1


def _unlink_unless_in_use(path: Path) -> bool:
    """Removes an abandoned session or temporary file, unless a request holds its lock right now."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if SESSION_ID.fullmatch(path.name):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
        path.unlink()
        return True
    finally:
        os.close(fd)


def collect_dedupe_copies(store: Collectable, delay: float, report: GcReport) -> None:
    """A canonical copy whose only link is itself belongs to no repository any more."""
    now = time.time()
    root = store.layout.dedupe_blobs()
    for _, blob in _blob_files(root):
        with contextlib.suppress(FileNotFoundError):
            stat = blob.stat()
            if stat.st_nlink == 1 and _age(blob, now) >= delay:
                blob.unlink()
                report.dedupe_copies += 1
                report.bytes_freed += stat.st_size


def collect(store: Collectable, delay: float, owns: Callable[[str], bool] = lambda _: True) -> GcReport | None:
    """One pass over the repositories `owns` accepts; None when another worker is already collecting."""
    lock_path = store.layout.gc_lock()
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        report = GcReport()
        for name in filter(owns, store.repository_names()):
            try:
                collect_repository(store, name, delay, report)
            except (OSError, RegistryError) as err:
                # One repository that cannot be collected (unreadable index.json, odd files) keeps all it
                # has, and the pass goes on with the others.
                log.warning("garbage collection skipped repository %r: %s", name, getattr(err, "message", err))
        collect_dedupe_copies(store, delay, report)
        return report
