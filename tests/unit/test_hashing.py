"""Owner selection must route every repository exactly as zot does."""

from __future__ import annotations

import siphash24
from zot_registry.cluster.hashing import owner_index, owner_of, repository_hash


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


def _owners(members: list[str], names: list[str], key: bytes = b"0123456789abcdef") -> dict[str, str]:
    return {n: members[owner_of(n, key, members, "rendezvous")] for n in names}


def test_rendezvous_moves_only_what_a_new_member_wins_or_a_gone_one_had() -> None:
    names = [f"team/app-{i}" for i in range(3000)]
    three = ["m0:5000", "m1:5000", "m2:5000"]
    before = _owners(three, names)
    after = _owners([*three, "m3:5000"], names)
    moved = [n for n in names if before[n] != after[n]]
    assert all(after[n] == "m3:5000" for n in moved)  # only to the new member
    assert 0.2 < len(moved) / len(names) < 0.3  # about 1/4, where zot's rule moves 3/4
    assert sum(owner_index(n, b"0123456789abcdef", 3) != owner_index(n, b"0123456789abcdef", 4) for n in names) > 2000
    # Dropping a member in the middle moves its repositories only, wherever it stood in the list.
    without = _owners(["m0:5000", "m2:5000"], names)
    assert all(without[n] == before[n] for n in names if before[n] != "m1:5000")


def test_zot_rule_through_owner_of_is_owner_index() -> None:
    members = ["a:1", "b:1", "c:1"]
    assert all(
        owner_of(f"r{i}", b"loremipsumdolors", members) == owner_index(f"r{i}", b"loremipsumdolors", 3)
        for i in range(200)
    )
