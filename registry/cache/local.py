"""The cache of one member (`remoteCache: false`): SQLite and file locks under rootDirectory.

zot keeps a local boltdb then; here the hypercorn workers of the member share one SQLite file
(WAL mode, so readers do not wait for the writer) and flock(2) locks. Neither is seen by other
members, which is why several members on one bucket need a remote cache.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from ..errors import CacheUnavailable

T = TypeVar("T")
BUSY_TIMEOUT = 30.0  # seconds a statement waits for another connection's write

SCHEMA = """
CREATE TABLE IF NOT EXISTS holders (digest TEXT NOT NULL, repo TEXT NOT NULL, PRIMARY KEY (digest, repo));
CREATE TABLE IF NOT EXISTS repos (name TEXT PRIMARY KEY, meta TEXT NOT NULL);
"""


class LocalCache:
    name = "local"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.path = self.root / "cache.db"
        self._locks = self.root / ".locks"
        self._set_up = False
        self._set_up_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        self.root.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        if not self._set_up:
            with self._set_up_lock:
                if not self._set_up:
                    self._set_up_file(connection)
                    self._set_up = True
        return connection

    @staticmethod
    def _set_up_file(connection: sqlite3.Connection) -> None:
        """WAL mode and the tables, once per instance. Connections setting up a new file at the same
        time (this member's workers, or its threads) can be refused "database is locked" at once,
        without SQLite's busy wait (4 new caches in 60 under 50 concurrent writes). Retried here."""
        deadline = time.monotonic() + BUSY_TIMEOUT
        while True:
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.executescript(SCHEMA)
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            connection = self._connect()
            try:
                return work(connection)
            finally:
                connection.close()

        try:
            return await asyncio.to_thread(run)
        except (sqlite3.Error, OSError) as err:
            raise CacheUnavailable(f"local cache {self.path}: {err}") from None

    async def add_blob_holder(self, digest: str, repo: str) -> None:
        await self._run(lambda db: db.execute("INSERT OR IGNORE INTO holders VALUES (?, ?)", (digest, repo)))

    async def remove_blob_holder(self, digest: str, repo: str) -> int:
        def work(db: sqlite3.Connection) -> int:
            db.execute("DELETE FROM holders WHERE digest = ? AND repo = ?", (digest, repo))
            return int(db.execute("SELECT COUNT(*) FROM holders WHERE digest = ?", (digest,)).fetchone()[0])

        return await self._run(work)

    async def blob_holders(self, digest: str) -> set[str]:
        rows = await self._run(lambda db: db.execute("SELECT repo FROM holders WHERE digest = ?", (digest,)).fetchall())
        return {row[0] for row in rows}

    async def put_repo_meta(self, repo: str, meta: dict[str, Any]) -> None:
        await self._run(lambda db: db.execute("INSERT OR REPLACE INTO repos VALUES (?, ?)", (repo, json.dumps(meta))))

    async def get_repo_meta(self, repo: str) -> dict[str, Any] | None:
        row = await self._run(lambda db: db.execute("SELECT meta FROM repos WHERE name = ?", (repo,)).fetchone())
        return json.loads(row[0]) if row else None

    async def delete_repo_meta(self, repo: str) -> None:
        await self._run(lambda db: db.execute("DELETE FROM repos WHERE name = ?", (repo,)))

    async def repositories(self) -> list[str]:
        rows = await self._run(lambda db: db.execute("SELECT name FROM repos ORDER BY name").fetchall())
        return [row[0] for row in rows]

    @asynccontextmanager
    async def lock(self, key: str, timeout: float = 30.0) -> AsyncIterator[None]:
        # flock is released by the kernel when a holder dies, so `timeout` bounds only the wait.
        self._locks.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._locks / hashlib.sha256(key.encode()).hexdigest(), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise CacheUnavailable(f"lock {key!r} still held after {timeout:g}s") from None
                    await asyncio.sleep(0.01)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    async def ping(self) -> str:
        return ""

    async def close(self) -> None:
        return None
