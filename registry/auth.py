"""htpasswd (bcrypt) Basic authentication.

bcrypt is deliberately slow (tens to hundreds of milliseconds per check, by its cost), so:

- checks run in a small thread pool, never on the event loop (bcrypt releases the GIL): a storm of
  bad logins costs CPU, not the latency of every other request, /livez included;
- at most MAX_PENDING checks may wait for that pool per worker; more get 429 TOOMANYREQUESTS with
  Retry-After at once, so a storm cannot queue work without bound;
- concurrent checks of the same credentials share one computation;
- a successful check is remembered for a short while keyed by a SHA-256 of the credentials;
- an unknown user name (or an entry that is not a bcrypt hash) is checked against a dummy hash of
  the file's usual cost, so how long a failure takes does not tell which user names exist.

A failed login is answered after `http.auth.failDelay` seconds (zot's brake on password guessing),
waited for with asyncio.sleep: it costs the guesser time, not the event loop.

A changed htpasswd file is re-read on its next mtime.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import hashlib
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bcrypt

from .errors import TooManyRequests, Unauthorized
from .tuning import env_int

_CACHE_SECONDS = 60.0
_CACHE_MAX = 10_000
# Threads per worker that run bcrypt; a worker also serves everything else on its event loop.
THREADS = max(env_int("ZOT_AUTH_THREADS", 2), 1)
# Checks that may wait for those threads; beyond this a request gets 429 at once.
MAX_PENDING = max(env_int("ZOT_AUTH_MAX_PENDING", 32), 1)
_DEFAULT_COST = 10  # bcrypt's own default, for a file with no bcrypt entry to copy
_BCRYPT_RE = re.compile(rb"^\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}$")


def _cost(hashed: bytes) -> int | None:
    found = _BCRYPT_RE.match(hashed)
    return int(found[1]) if found and 4 <= int(found[1]) <= 31 else None


class HtpasswdAuth:
    def __init__(
        self,
        path: str | Path,
        realm: str = "zot",
        threads: int = THREADS,
        max_pending: int = MAX_PENDING,
        fail_delay: float = 0.0,
    ) -> None:
        self.path = Path(path)
        self.realm = realm
        self.fail_delay = fail_delay
        self._users: dict[str, bytes] = {}
        self._dummy = b""
        self._mtime: int | None = None
        self._verified: dict[bytes, float] = {}
        self._threads = threads
        self._max_pending = max_pending
        self._pool: ThreadPoolExecutor | None = None
        self._pending = 0
        self._in_flight: dict[bytes, asyncio.Future[bool]] = {}
        self._load()

    def _load(self) -> None:
        mtime = os.stat(self.path).st_mtime_ns
        if mtime == self._mtime:
            return
        users: dict[str, bytes] = {}
        for line in self.path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and ":" in line:
                user, hashed = line.split(":", 1)
                users[user] = hashed.encode()
        costs = collections.Counter(cost for hashed in users.values() if (cost := _cost(hashed)) is not None)
        cost = costs.most_common(1)[0][0] if costs else _DEFAULT_COST
        # A salt of that cost and any 31 characters: checking a password against it costs a real check.
        self._dummy = bcrypt.gensalt(rounds=cost) + b"." * 31
        self._users, self._mtime, self._verified = users, mtime, {}

    def challenge(self) -> dict[str, str]:
        return {"WWW-Authenticate": f'Basic realm="{self.realm}"'}

    async def authenticate(self, header: str | None) -> str:
        """The user name, or UNAUTHORIZED with a Basic challenge (TOOMANYREQUESTS when checks pile up)."""
        user, password = parse_basic(header, self.challenge())
        if not await self.verify(user, password):
            if self.fail_delay > 0:
                await asyncio.sleep(self.fail_delay)
            raise Unauthorized("invalid username or password", headers=self.challenge())
        return user

    async def verify(self, user: str, password: str) -> bool:
        """Whether the file holds `user` with `password` (TOOMANYREQUESTS when checks pile up)."""
        self._load()
        key = hashlib.sha256(f"{user}:{password}".encode()).digest()
        now = time.monotonic()
        if self._verified.get(key, 0.0) > now:
            return True
        if not await self._check_shared(key, user, password):
            return False
        if len(self._verified) >= _CACHE_MAX:
            self._verified = {k: until for k, until in self._verified.items() if until > now}
        self._verified[key] = time.monotonic() + _CACHE_SECONDS
        return True

    async def _check_shared(self, key: bytes, user: str, password: str) -> bool:
        hashed = self._users.get(user)
        known = hashed is not None and _cost(hashed) is not None
        running = self._in_flight.get(key)
        if running is None:
            if self._pending >= self._max_pending:
                raise TooManyRequests(
                    f"too many password checks in progress ({self._pending}); retry shortly",
                    headers={"Retry-After": "1"},
                )
            running = asyncio.get_running_loop().run_in_executor(
                self._executor(), _check, password, hashed if known and hashed is not None else self._dummy
            )
            self._start(key, running)
        # Shielded: a client that hangs up does not cancel the check that others may share.
        return await asyncio.shield(running) and known

    def _start(self, key: bytes, future: asyncio.Future[bool]) -> None:
        self._pending += 1
        self._in_flight[key] = future

        def finished(_: asyncio.Future[bool]) -> None:
            self._pending -= 1
            if self._in_flight.get(key) is future:
                del self._in_flight[key]

        future.add_done_callback(finished)

    def _executor(self) -> ThreadPoolExecutor:
        # Made on first use: each hypercorn worker process has its own.
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="bcrypt")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def parse_basic(header: str | None, challenge: dict[str, str]) -> tuple[str, str]:
    """User and password of a Basic Authorization header; UNAUTHORIZED (with `challenge`) for none
    or a malformed one."""
    if not header or not header.lower().startswith("basic "):
        raise Unauthorized("authentication required", headers=challenge)
    try:
        user, password = base64.b64decode(header[6:].strip(), validate=True).decode().split(":", 1)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Unauthorized("malformed Basic credentials", headers=challenge) from None
    return user, password


def _check(password: str, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password.encode(), hashed)
    except ValueError:  # not a bcrypt hash: htpasswd entries must be made with `htpasswd -B`
        return False
