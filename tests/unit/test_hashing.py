"""Owner selection must route every repository exactly as zot does."""

from __future__ import annotations

import siphash24
from zot_registry.cluster.hashing import owner_index, repository_hash


def test_zots_own_vector() -> None:
    # pkg/api/controller_test.go in zot: key "loremipsumdolors", repo "zot-test", two members.
    assert repository_hash("zot-test", b"loremipsumdolors") == 0x7F5537BDF3DDF6A1
    assert owner_index("zot-test", b"loremipsumdolors", 2) == 1


def test_siphash_reference_vectors() -> None:
    key = bytes(range(16))
    assert int.from_bytes(siphash24.siphash24(b"", key=key).digest(), "little") == 0x726FDB47DD0E0E31
    assert int.from_bytes(siphash24.siphash24(bytes(range(15)), key=key).digest(), "little") == 0xA129CA6149BE45E5


def test_top_bit_names_use_the_unsigned_sum() -> None:
    # A name whose hash has the top bit set: the signed intdigest() would pick another member.
    key = b"loremipsumdolors"
    name = next(f"repo-{i}" for i in range(1000) if repository_hash(f"repo-{i}", key) >= 1 << 63)
    signed = siphash24.siphash24(name.encode(), key=key).intdigest()
    assert signed < 0
    assert owner_index(name, key, 3) == repository_hash(name, key) % 3
    # 2**64 % 3 == 1, so the signed value always lands on a different member here.
    assert owner_index(name, key, 3) != signed % 3


def test_owners_spread_over_members() -> None:
    owners = [owner_index(f"team/app-{i}", b"0123456789abcdef", 3) for i in range(300)]
    assert min(owners.count(i) for i in range(3)) > 60
