"""In-process memory of a store: manifest bytes by digest, and running hashes of chunked uploads."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class ManifestCache:
    """Manifest bytes by digest: content-addressed, so an entry can never go stale."""

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes

    def get(self, digest: str) -> bytes | None:
        data = self._entries.get(digest)
        if data is not None:
            self._entries.move_to_end(digest)
        return data

    def put(self, digest: str, data: bytes) -> None:
        if digest in self._entries or len(data) > self._max // 4:
            return
        self._entries[digest] = data
        self._bytes += len(data)
        while self._bytes > self._max:
            _, old = self._entries.popitem(last=False)
            self._bytes -= len(old)


class Hashers:
    """Running hash state of chunked uploads in this process, so finishing need not re-read the file.

    Another worker may have received some chunks; the offset check then fails and the file is re-hashed.
    """

    def __init__(self, limit: int = 1024) -> None:
        self._states: OrderedDict[str, tuple[int, Any]] = OrderedDict()
        self._limit = limit

    def take(self, session: str, offset: int) -> Any | None:
        state = self._states.pop(session, None)
        return state[1] if state and state[0] == offset else None

    def keep(self, session: str, offset: int, hasher: Any) -> None:
        self._states[session] = (offset, hasher)
        while len(self._states) > self._limit:
            self._states.popitem(last=False)

    def drop(self, session: str) -> None:
        self._states.pop(session, None)
