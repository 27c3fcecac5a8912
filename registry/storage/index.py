"""index.json of one repository: cached reads, locked read-modify-write.

Several hypercorn workers share the root directory, so updates take an flock on a per-repository
lock file and re-read the file under it; reads are served from a cache keyed by the file's
inode, mtime and size, which makes the hot path of a manifest GET one stat() call.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .files import write_atomic

TAG_ANNOTATION = "org.opencontainers.image.ref.name"


@dataclass
class Index:
    """The parsed index plus lookups built once per version of the file."""

    document: dict[str, Any]
    by_tag: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_digest: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: bytes) -> Index:
        document: dict[str, Any] = json.loads(raw) if raw.strip() else {"schemaVersion": 2, "manifests": []}
        document.setdefault("manifests", [])
        index = cls(document)
        for descriptor in document["manifests"]:
            index.by_digest.setdefault(descriptor["digest"], descriptor)
            tag = (descriptor.get("annotations") or {}).get(TAG_ANNOTATION)
            if tag:
                index.by_tag[tag] = descriptor
        return index

    @property
    def manifests(self) -> list[dict[str, Any]]:
        manifests: list[dict[str, Any]] = self.document["manifests"]
        return manifests

    def tags(self) -> list[str]:
        return sorted(self.by_tag)


_CacheKey = tuple[int, int, int]


class IndexFiles:
    def __init__(self) -> None:
        self._cache: dict[Path, tuple[_CacheKey, Index]] = {}

    def read(self, path: Path) -> Index | None:
        """The current index, or None when the repository has no index.json."""
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return None
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        cached = self._cache.get(path)
        if cached and cached[0] == key:
            return cached[1]
        index = Index.parse(path.read_bytes())
        self._cache[path] = (key, index)
        return index

    @contextmanager
    def _locked(self, lock_path: Path) -> Iterator[None]:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def update(self, path: Path, lock_path: Path, change: Callable[[list[dict[str, Any]]], bool]) -> None:
        """Apply `change` to the manifests list under the lock; it returns whether it changed anything."""
        with self._locked(lock_path):
            self._cache.pop(path, None)
            current = self.read(path)
            document: dict[str, Any] = current.document if current else {"schemaVersion": 2, "manifests": []}
            manifests = [dict(d) for d in document["manifests"]]
            if change(manifests):
                new_document = {**document, "manifests": manifests}
                write_atomic(path, json.dumps(new_document, separators=(",", ":")).encode())
                self._cache.pop(path, None)
