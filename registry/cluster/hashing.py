"""Which member owns a repository: zot's rule, and the consistent one clusters of ours may choose.

zot's (`cluster.routing` "modulo", the default): SipHash-2-4 of the repository name's UTF-8 bytes,
keyed with the 16 bytes of `cluster.hashKey`, read as an UNSIGNED 64-bit integer (siphash24's
intdigest() is signed, zot's Sum64 is not), modulo the number of members. A new member count moves
most repositories (3 -> 4: 75%). Vectors, zot's own among them, live in tests/unit/test_hashing.py.

Beyond zot ("rendezvous", highest random weight): each member scores SipHash of the name and its own
address, and the highest score owns the repository. Adding a member moves only what it wins, about
1/(N+1) of the repositories; removing one moves only what it owned. zot members do not know this
rule, so it needs every member to be ours.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Sequence
from typing import Literal

import siphash24

_KEY_ALPHABET = string.ascii_letters + string.digits


def repository_hash(name: str, key: bytes) -> int:
    return int.from_bytes(siphash24.siphash24(name.encode("utf-8"), key=key).digest(), "little")


def owner_index(name: str, key: bytes, members: int) -> int:
    return repository_hash(name, key) % members


Routing = Literal["modulo", "rendezvous"]


def rendezvous_index(name: str, key: bytes, members: Sequence[str]) -> int:
    """The member whose score for `name` is highest (the first of equal ones)."""
    scores = [repository_hash(f"{name}\n{member}", key) for member in members]
    return scores.index(max(scores))


def owner_of(name: str, key: bytes, members: Sequence[str], routing: Routing = "modulo") -> int:
    """The index in `members` (host:port, in list order) of the member that owns `name`."""
    if routing == "rendezvous":
        return rendezvous_index(name, key, members)
    return owner_index(name, key, len(members))


def new_hash_key() -> str:
    """A new cluster.hashKey: 16 printable ASCII characters, exactly the 16 bytes zot wants and
    safe in a JSON config."""
    return "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))
