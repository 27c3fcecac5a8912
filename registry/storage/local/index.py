"""index.json of one repository: cached reads, locked read-modify-write.

Several hypercorn workers share the root directory, so updates take an flock on a per-repository
lock file and re-read the file under it; reads are served from a cache keyed by the file's
inode, mtime and size, which makes the hot path of a manifest GET one stat() call.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from stat import S_ISREG
from typing import Any

from ...errors import RegistryError, RepositoryUnreadable
from ..files import write_atomic
from ..index import Index

log = logging.getLogger("zot_registry.storage")

_CacheKey = tuple[int, int, int]


class IndexFiles:
    def __init__(self) -> None:
        # An unreadable index is cached too: it is logged once per version of the file, not per request.
        self._cache: dict[Path, tuple[_CacheKey, Index | RegistryError]] = {}

    def read(self, path: Path, name: str = "") -> Index | None:
        """The current index, or None when the repository has no index.json; RepositoryUnreadable
        (NAME_UNKNOWN, logged once per version of the file) when the file is not an index."""
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return None
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        cached = self._cache.get(path)
        if cached is None or cached[0] != key:
            where = f"index.json of repository {name!r}" if name else str(path)
            try:
                if not S_ISREG(stat.st_mode):
                    raise RepositoryUnreadable(f"{where} is not a file; it is left as found")
                found: Index | RegistryError = Index.parse(path.read_bytes(), where)
            except RepositoryUnreadable as err:
                log.error("repository unreadable: %s", err.message, extra={"path": str(path)})
                found = err
            except FileNotFoundError:
                return None
            cached = (key, found)
            self._cache[path] = cached
        if isinstance(cached[1], RegistryError):
            raise RepositoryUnreadable(cached[1].message)
        return cached[1]

    @contextmanager
    def _locked(self, lock_path: Path) -> Iterator[None]:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def update(
        self, path: Path, lock_path: Path, change: Callable[[list[dict[str, Any]]], bool], name: str = ""
    ) -> None:
        """Apply `change` to the manifests list under the lock; it returns whether it changed anything.

        An unreadable index raises before anything is written: it is never replaced.
        """
        with self._locked(lock_path):
            self._cache.pop(path, None)
            current = self.read(path, name) or Index.parse(b"")
            manifests = [dict(d) for d in current.manifests]
            if change(manifests):
                write_atomic(path, current.with_manifests(manifests))
                self._cache.pop(path, None)

    def create(self, path: Path, lock_path: Path, data: bytes) -> bool:
        """Write a new index.json as given (a copy from another member), unless one appeared meanwhile."""
        with self._locked(lock_path):
            if path.exists():
                return False
            write_atomic(path, data)
            self._cache.pop(path, None)
            return True
