"""A cluster under test: N members of `write_cluster`'s layout on 127.0.0.1 .. 127.0.0.N (one port),
each a `zot-registry serve` process, and which member owns which repository."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zot_registry.cluster.hashing import owner_index
from zot_registry.local.cluster import write_cluster

from tests.support.ports import port_free_on_all
from tests.support.registry import RegistryProcess, start_all, stop_all, write_htpasswd

USER, PASSWORD = "member", "cluster-pw"


@dataclass
class ClusterUnderTest:
    members: list[RegistryProcess]
    hash_key: bytes
    ca: Path | None
    auth: tuple[str, str] | None

    def owner(self, repo: str) -> int:
        return owner_index(repo, self.hash_key, len(self.members))

    def repo_not_owned_by(self, member: int, prefix: str) -> str:
        return next(f"{prefix}-{i}" for i in range(1000) if self.owner(f"{prefix}-{i}") != member)

    def repo_owned_by(self, member: int, prefix: str) -> str:
        return next(f"{prefix}-{i}" for i in range(1000) if self.owner(f"{prefix}-{i}") == member)

    def restart_with(self, index: int, change: Callable[[dict[str, Any]], None]) -> RegistryProcess:
        """Stops member `index`, applies `change` to its config and starts it again (alone)."""
        member = self.members[index]
        member.stop()
        change(member.config)
        return member.start()

    def stop(self) -> None:
        stop_all(self.members)


def start_cluster(
    folder: Path,
    count: int = 3,
    tls: bool = True,
    auth: bool = True,
    workers: int = 1,
    env: dict[str, str] | None = None,
    configure: Callable[[dict[str, Any]], None] | None = None,
) -> ClusterUnderTest:
    """`count` members started together; `configure` changes each member's config before it starts."""
    folder.mkdir(parents=True, exist_ok=True)
    htpasswd = write_htpasswd(folder / "htpasswd", {USER: PASSWORD}) if auth else None
    port = port_free_on_all(count)
    layout = write_cluster(folder, count, port, tls=tls, htpasswd=htpasswd, log_level="warn")
    members = []
    for index, path in enumerate(layout.configs):
        config = json.loads(path.read_text())
        config["log"].pop("output")
        if configure is not None:
            configure(config)
        members.append(RegistryProcess(path, config, folder / f"member-{index}.stdout", workers=workers, env=env or {}))
    cluster = ClusterUnderTest(
        members, (folder / "hashkey").read_text().strip().encode(), layout.ca, (USER, PASSWORD) if auth else None
    )
    start_all(members)
    return cluster
