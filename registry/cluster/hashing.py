"""Which member owns a repository: zot's rule, in one function.

SipHash-2-4 of the repository name's UTF-8 bytes, keyed with the 16 bytes of `cluster.hashKey`,
read as an UNSIGNED 64-bit integer (siphash24's intdigest() is signed, zot's Sum64 is not), modulo
the number of members. Vectors, zot's own among them, live in tests/unit/test_hashing.py.
"""

from __future__ import annotations

import secrets
import string

import siphash24

_KEY_ALPHABET = string.ascii_letters + string.digits


def repository_hash(name: str, key: bytes) -> int:
    return int.from_bytes(siphash24.siphash24(name.encode("utf-8"), key=key).digest(), "little")


def owner_index(name: str, key: bytes, members: int) -> int:
    return repository_hash(name, key) % members


def new_hash_key() -> str:
    """A new cluster.hashKey: 16 printable ASCII characters, exactly the 16 bytes zot wants and
    safe in a JSON config."""
    return "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))
