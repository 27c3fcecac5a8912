"""What local mode prints: members with their owner shares, the entry URL, a push command, moves."""

from __future__ import annotations

import shlex
from collections import Counter

from zot_registry.cluster.hashing import owner_index

from ..plans import moved_share
from .state import LocalLayout

SAMPLE = 10_000  # repository names hashed to show how evenly the members share the hash space


def owner_shares(hash_key: str, members: int, sample: int = SAMPLE) -> list[float]:
    """The fraction of a sample of repository names each member owns (zot's SipHash rule)."""
    counts = Counter(owner_index(f"library/app-{i}", hash_key.encode(), members) for i in range(sample))
    return [counts[i] / sample for i in range(members)]


def moved_message(before: list[str], after: list[str]) -> str:
    """The operator's RepositoriesMoved condition message, word for word."""
    return (
        f"{moved_share(before, after)}; with storage local to each member they stay on their old "
        "member's volume until copied"
    )


def push_command(layout: LocalLayout) -> str:
    entry = layout.members[0]
    parts = ["skopeo", "copy", "--dest-cert-dir", str(layout.client_certs)]
    if layout.credentials:
        password = layout.credentials.password or "PASSWORD"
        parts += ["--dest-creds", f"{layout.credentials.user}:{password}"]
    parts += ["docker://docker.io/library/busybox:latest", f"docker://{entry}/library/busybox:latest"]
    return " ".join(shlex.quote(p) for p in parts)


def summary(layout: LocalLayout) -> list[str]:
    shares = owner_shares(layout.hash_key, len(layout.members))
    lines = [f"members ({len(layout.members)}, one hash key, TLS from the cluster CA {layout.ca}):"]
    for index, (ordinal, member) in enumerate(zip(layout.ordinals, layout.members, strict=True)):
        lines.append(
            f"  {index}: https://{member}  owns {shares[index]:.1%} of repository names "
            f"(sample of {SAMPLE})  data {layout.folder / 'data' / f'member-{ordinal}'}"
        )
    lines.append(f"entry URL: {layout.url(0)}  (any member serves any repository: it proxies to the owner)")
    if layout.credentials:
        password = layout.credentials.password or "(the one for this user in the Secret)"
        lines.append(f"credentials: {layout.credentials.user} / {password} ({layout.credentials.source})")
    lines.append(f"push: {push_command(layout)}")
    return lines
