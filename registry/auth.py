"""htpasswd (bcrypt) Basic authentication.

bcrypt is deliberately slow (tens of milliseconds), so a successful check is remembered for a short
while keyed by a SHA-256 of the credentials; a changed htpasswd file is re-read on its next mtime.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import time
from pathlib import Path

import bcrypt

from .errors import Unauthorized

_CACHE_SECONDS = 60.0


class HtpasswdAuth:
    def __init__(self, path: str | Path, realm: str = "zot") -> None:
        self.path = Path(path)
        self.realm = realm
        self._users: dict[str, bytes] = {}
        self._mtime: int | None = None
        self._verified: dict[bytes, float] = {}
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
        self._users, self._mtime, self._verified = users, mtime, {}

    def challenge(self) -> dict[str, str]:
        return {"WWW-Authenticate": f'Basic realm="{self.realm}"'}

    def authenticate(self, header: str | None) -> str:
        """The user name, or UNAUTHORIZED with a Basic challenge."""
        if not header or not header.lower().startswith("basic "):
            raise Unauthorized("authentication required", headers=self.challenge())
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
            user, password = decoded.split(":", 1)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise Unauthorized("malformed Basic credentials", headers=self.challenge()) from None
        self._load()
        key = hashlib.sha256(decoded.encode()).digest()
        now = time.monotonic()
        if self._verified.get(key, 0.0) > now:
            return user
        hashed = self._users.get(user)
        if hashed is None or not _check(password, hashed):
            raise Unauthorized("invalid username or password", headers=self.challenge())
        self._verified[key] = now + _CACHE_SECONDS
        return user


def _check(password: str, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password.encode(), hashed)
    except ValueError:  # not a bcrypt hash: htpasswd entries must be made with `htpasswd -B`
        return False
