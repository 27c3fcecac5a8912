"""index.json of one repository: cached reads, locked read-modify-write.

Several hypercorn workers share the root directory, so updates take an flock on a per-repository
lock file and re-read the file under it; reads are served from a cache keyed by the file's
inode, mtime and size, which makes the hot path of a manifest GET one stat() call.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG
from typing import Any

from ..errors import RegistryError, RepositoryUnreadable
from .files import write_atomic
from .schema import annotations_ok

log = logging.getLogger("zot_registry.storage")

TAG_ANNOTATION = "org.opencontainers.image.ref.name"
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")


def usable_descriptor(entry: Any) -> bool:
    """An index entry a reader can serve: an object with a mediaType, a digest we can verify, a size."""
    return (isinstance(entry, dict) and isinstance(entry.get("mediaType"), str)
            and isinstance(entry.get("digest"), str) and _DIGEST.fullmatch(entry["digest"]) is not None
            and isinstance(entry.get("size"), int) and not isinstance(entry["size"], bool)
            and ("annotations" not in entry or annotations_ok(entry["annotations"])))


@dataclass
class Index:
    """The parsed index plus lookups built once per version of the file.

    What zot writes is read as is: `"manifests": null` (a repository with only blobs, or whose
    manifests were all deleted) is an empty list. Entries no reader can use (not an object, no
    valid digest, mediaType or size) are `foreign`: never served, and written back unchanged.
    A document that is not an index at all (not JSON, not an object, `manifests` not a list)
    makes the repository unreadable (NAME_UNKNOWN), and no write ever replaces it.
    """

    document: dict[str, Any]
    manifests: list[dict[str, Any]] = field(default_factory=list)
    foreign: list[Any] = field(default_factory=list)
    by_tag: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_digest: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: bytes, where: str = "index.json") -> Index:
        if not raw.strip():
            return cls({"schemaVersion": 2, "manifests": []})
        try:
            document = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as err:
            raise RepositoryUnreadable(f"{where} is not JSON ({err}); it is left as found") from None
        except RecursionError:
            raise RepositoryUnreadable(f"{where} is nested too deeply to be an index; it is left as found") from None
        if not isinstance(document, dict):
            raise RepositoryUnreadable(f"{where} is not a JSON object; it is left as found")
        entries = document.get("manifests")
        if entries is None:
            entries = []
        if not isinstance(entries, list):
            raise RepositoryUnreadable(f"{where}: manifests is not a list; it is left as found")
        index = cls(document)
        for entry in entries:
            if not usable_descriptor(entry):
                index.foreign.append(entry)
                continue
            index.manifests.append(entry)
            index.by_digest.setdefault(entry["digest"], entry)
            tag = (entry.get("annotations") or {}).get(TAG_ANNOTATION)
            if tag:
                index.by_tag[tag] = entry
        if index.foreign:
            log.warning("%s: %d index entries without a usable descriptor are ignored and kept as found",
                        where, len(index.foreign))
        return index

    def with_manifests(self, manifests: list[dict[str, Any]]) -> bytes:
        """This index with `manifests` in place of its usable entries; everything else kept as found."""
        try:
            return json.dumps({**self.document, "manifests": [*manifests, *self.foreign]},
                              separators=(",", ":")).encode()
        except RecursionError:
            raise RepositoryUnreadable("index.json is nested too deeply to be rewritten; it is left as found") from None

    def tags(self) -> list[str]:
        return sorted(self.by_tag)


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

    def update(self, path: Path, lock_path: Path, change: Callable[[list[dict[str, Any]]], bool],
               name: str = "") -> None:
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
