"""Digest parsing and streaming verification (sha256 and sha512, per the OCI image spec)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from .errors import DigestInvalid

_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)


def parse_digest(value: str) -> Digest:
    """Parse `alg:hex`; anything else (unknown algorithm, wrong length, upper case hex) is DIGEST_INVALID."""
    match = _DIGEST_RE.match(value or "")
    if not match:
        raise DigestInvalid(f"invalid digest format: {value!r}")
    algorithm, hex_part = match.groups()
    expected = _HEX_LENGTH.get(algorithm)
    if expected is None:
        raise DigestInvalid(f"unsupported digest algorithm: {algorithm!r}")
    if len(hex_part) != expected or not re.fullmatch(r"[0-9a-f]+", hex_part):
        raise DigestInvalid(f"invalid {algorithm} digest: {value!r}")
    return Digest(algorithm, hex_part)


def is_digest(reference: str) -> bool:
    return ":" in reference


def digest_of(data: bytes, algorithm: str = "sha256") -> Digest:
    return Digest(algorithm, hashlib.new(algorithm, data).hexdigest())
