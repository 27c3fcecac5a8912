"""Password checks that block (bcrypt, an LDAP round trip), run so that they cost the event loop
nothing: what htpasswd.py and ldap.py share.

- checks run in a small thread pool of their own, never on the event loop;
- at most `max_pending` may wait for that pool per worker; more get 429 TOOMANYREQUESTS with
  Retry-After at once, so a storm of logins cannot queue work without bound;
- concurrent checks of the same credentials share one computation, shielded: a client that hangs
  up does not cancel a check that others wait for;
- a success is remembered for CACHE_SECONDS keyed by a SHA-256 of the credentials, with what the
  check found (an LDAP user's groups); failures are not remembered.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from ..errors import TooManyRequests

CACHE_SECONDS = 60.0
_CACHE_MAX = 10_000

Found = TypeVar("Found")


def credentials_key(user: str, password: str) -> bytes:
    # Length-prefixed: ("a:b", "c") and ("a", "b:c") must not share an entry.
    name = user.encode()
    return hashlib.sha256(len(name).to_bytes(8, "big") + name + password.encode()).digest()


class PasswordChecks(Generic[Found]):
    """`check(user, password)` in a pool: what it found for right credentials, None for wrong ones;
    an exception it raises reaches every waiter."""

    def __init__(self, check: Callable[[str, str], Found | None], what: str, threads: int, max_pending: int) -> None:
        self._check = check
        self._what = what  # "password", "LDAP": for the 429's message and the threads' names
        self._threads = threads
        self._max_pending = max_pending
        self._pool: ThreadPoolExecutor | None = None
        self._pending = 0
        self._in_flight: dict[bytes, asyncio.Future[Found | None]] = {}
        self._verified: dict[bytes, tuple[float, Found]] = {}

    async def run(self, user: str, password: str) -> Found | None:
        key = credentials_key(user, password)
        now = time.monotonic()
        cached = self._verified.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        running = self._in_flight.get(key)
        if running is None:
            if self._pending >= self._max_pending:
                raise TooManyRequests(
                    f"too many {self._what} checks in progress ({self._pending}); retry shortly",
                    headers={"Retry-After": "1"},
                )
            running = asyncio.get_running_loop().run_in_executor(self._executor(), self._check, user, password)
            self._start(key, running)
        found = await asyncio.shield(running)
        if found is not None:
            if len(self._verified) >= _CACHE_MAX:
                self._verified = {k: entry for k, entry in self._verified.items() if entry[0] > now}
            self._verified[key] = (time.monotonic() + CACHE_SECONDS, found)
        return found

    def forget(self) -> None:
        """Drop what was remembered (the users' file changed)."""
        self._verified = {}

    def _start(self, key: bytes, future: asyncio.Future[Found | None]) -> None:
        self._pending += 1
        self._in_flight[key] = future

        def finished(_: asyncio.Future[Found | None]) -> None:
            self._pending -= 1
            if self._in_flight.get(key) is future:
                del self._in_flight[key]
            if not future.cancelled():
                future.exception()  # retrieved, even when every waiter hung up: no "never retrieved" log

        future.add_done_callback(finished)

    def _executor(self) -> ThreadPoolExecutor:
        # Made on first use: each hypercorn worker process has its own.
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix=self._what.lower())
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
