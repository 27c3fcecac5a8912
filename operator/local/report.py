"""What local mode prints: members with their owner shares, the entry URL, a push command, moves."""

from __future__ import annotations

import shlex
import sys
from collections import Counter
from pathlib import Path

from zot_registry.cluster.hashing import owner_index

from ..plans import moved_share
from .sample_image import FOLDER, TAG
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


def program() -> str:
    """This program as the user can run it again from the same folder: as it was started. `make run` starts
    `.venv/bin/zot-operator`, which is not on the user's PATH (only on make's), so a bare `zot-operator`
    in a hint would not be found."""
    invoked = Path(sys.argv[0])
    if invoked.name != "zot-operator":  # python -m zot_operator.cli
        return f"{shlex.quote(sys.executable)} -m zot_operator.cli"
    if invoked.parent == Path():
        return "zot-operator"  # found on PATH under its bare name
    try:
        return shlex.quote(str(invoked.absolute().relative_to(Path.cwd())))
    except ValueError:
        return shlex.quote(str(invoked.absolute()))


def scale_hint(folder: Path) -> str:
    """The resize command for the cluster in `folder`: `--dir` only when `local scale` would not find it."""
    command = f"{program()} local scale N"
    if folder.absolute().parent == Path.cwd() / ".zot-local":  # where `local scale` looks (scale.find_folder)
        return command
    return f"{command} --dir {shlex.quote(str(folder))}"


def push_command(layout: LocalLayout) -> str:
    """A push that needs no internet: the sample image written into the state folder (sample_image)."""
    entry = layout.members[0]
    parts = ["skopeo", "copy", "--dest-cert-dir", str(layout.client_certs)]
    if layout.credentials:
        password = layout.credentials.password or "PASSWORD"
        parts += ["--dest-creds", f"{layout.credentials.user}:{password}"]
    parts += [f"oci:{layout.folder / FOLDER}:{TAG}", f"docker://{entry}/{layout.ref.name}/sample:{TAG}"]
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
    lines.append(
        f"  ({FOLDER}/ is a one-file image written here, so the push needs no internet; "
        "docker://docker.io/library/busybox:latest or any other image works as the source too)"
    )
    return lines
