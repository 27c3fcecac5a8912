"""htpasswd (bcrypt) Basic authentication.

bcrypt is deliberately slow (tens to hundreds of milliseconds per check, by its cost), so checks
run as checks.py runs them: in a small thread pool (bcrypt releases the GIL), at most MAX_PENDING
waiting per worker (429 beyond), identical checks shared, successes remembered for a minute. A
storm of bad logins costs CPU, not the latency of every other request, /livez included.

An unknown user name (or an entry that is not a bcrypt hash) is checked against a dummy hash of
the file's usual cost, so how long a failure takes does not tell which user names exist.

A failed login is answered after `http.auth.failDelay` seconds (zot's brake on password guessing),
waited for with asyncio.sleep: it costs the guesser time, not the event loop.

A changed htpasswd file is re-read on its next mtime."""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import os
import re
from pathlib import Path

import bcrypt

from ..errors import Unauthorized
from ..tuning import env_int
from .checks import PasswordChecks

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
        self._checks: PasswordChecks[bool] = PasswordChecks(self._check, "password", threads, max_pending)
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
        self._users, self._mtime = users, mtime
        self._checks.forget()

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
        return bool(await self._checks.run(user, password))

    def _check(self, user: str, password: str) -> bool | None:
        # In the pool. Looked up here, so that the file's users at the time of the check count.
        hashed = self._users.get(user)
        known = hashed is not None and _cost(hashed) is not None
        ok = _bcrypt_matches(password, hashed if known and hashed is not None else self._dummy)
        return True if ok and known else None

    def close(self) -> None:
        self._checks.close()


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


def _bcrypt_matches(password: str, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password.encode(), hashed)
    except ValueError:  # not a bcrypt hash: htpasswd entries must be made with `htpasswd -B`
        return False
