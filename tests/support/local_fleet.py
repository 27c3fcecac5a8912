"""Up to five real member processes with storage local to each, and the operator's part of a
membership change driven through their control API (copy, freeze, switch) as the operator drives it.

Five members' configs and certificates are written once (127.0.0.1 .. .5, one port); each change
starts the members it adds with the current list in their config (as a new pod starts with the
ConfigMap of the moment) and stops the members it removes only after the switch (scale-down drains).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

from zot_registry.cluster.hashing import Routing, owner_of
from zot_registry.local.cluster import write_cluster

from tests.support.ports import port_free_on_all
from tests.support.rebalance import ControlClient
from tests.support.registry import RegistryProcess, start_all, stop_all, write_htpasswd

USER, PASSWORD = "member", "cluster-pw"
MAX_MEMBERS = 5


class Fleet:
    """Up to five members; `members` is the list they route by, `running` who runs."""

    def __init__(self, folder: Path, workers: int = 2, routing: Routing = "modulo") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        htpasswd = write_htpasswd(folder / "htpasswd", {USER: PASSWORD})
        self.port = port_free_on_all(MAX_MEMBERS)
        layout = write_cluster(folder, MAX_MEMBERS, self.port, tls=True, htpasswd=htpasswd, log_level="warn")
        assert layout.ca is not None
        self.folder, self.ca, self.all_members = folder, layout.ca, layout.members
        self.key = (folder / "hashkey").read_text().strip().encode()
        self.processes: dict[int, RegistryProcess] = {}
        self.configs = [json.loads(path.read_text()) for path in layout.configs]
        self.routing: Routing = routing
        for config in self.configs:
            if routing != "modulo":
                config["cluster"]["routing"] = routing
        self.workers = workers
        self.members: list[str] = []
        self.epoch = 0
        self.control = ControlClient(self.ca, folder / "server.crt", folder / "server.key")

    def url(self, index: int) -> str:
        return f"https://{self.all_members[index]}"

    def start(self, index: int, members: list[str]) -> None:
        self.start_members([index], members)

    def start_members(self, indexes: list[int], members: list[str]) -> None:
        """Members `indexes`, each with `members` as its list, started side by side."""
        started = {index: self._process(index, members) for index in indexes}
        start_all(started.values())
        self.processes.update(started)

    def _process(self, index: int, members: list[str]) -> RegistryProcess:
        config = json.loads(json.dumps(self.configs[index]))
        config["log"].pop("output", None)
        config["cluster"]["members"] = members
        path = self.folder / f"member-{index}.json"
        return RegistryProcess(path, config, self.folder / f"member-{index}.stdout", workers=self.workers)

    def start_cluster(self, count: int) -> None:
        self.members = self.all_members[:count]
        self.start_members(list(range(count)), self.members)

    def resize(self, count: int) -> dict[str, float]:
        """What the operator does for a new replica count: new members first, the change, then the
        members that left are stopped (their volumes kept)."""
        after = self.all_members[:count]
        self.start_members(list(range(len(self.members), count)), self.members)
        involved = sorted(set(range(max(len(self.members), count))) & set(self.processes))
        self.epoch += 1
        took = self.control.run_change([self.url(i) for i in involved], self.epoch, self.members, after)
        self.members = after
        stop_all([self.processes.pop(i) for i in range(count, MAX_MEMBERS) if i in self.processes])
        return took

    def urls(self) -> list[str]:
        return [f"https://{member}" for member in self.members]

    def owner(self, repo: str, members: list[str] | None = None) -> int:
        return owner_of(repo, self.key, members or self.members, self.routing)

    def stored(self, index: int) -> set[str]:
        return stored_repositories(Path(self.configs[index]["storage"]["rootDirectory"]))

    def holds_exactly(self, index: int, owned: set[str]) -> bool:
        return self.stored(index) == owned

    def stop(self) -> None:
        self.control.close()  # first: its idle connections would hold each member's stop (CLOSE_WAIT)
        stop_all(self.processes.values())


def stored_repositories(root: Path) -> set[str]:
    """The repositories a member's rootDirectory holds; copies set aside after a move (under .cluster/
    until they are reclaimed) are not counted."""
    return {str(p.parent.relative_to(root)) for p in root.rglob("index.json") if ".cluster" not in p.parts}


def names_with(prefix: str, count: int, wanted: Callable[[str], bool], at_least: int) -> list[str]:
    """`count` repository names, `at_least` of them such that `wanted` (the hash key is random: the
    names that give a test its case are picked by it, not hoped for)."""
    candidates = [f"{prefix}-{i}" for i in range(2000)]
    chosen = [n for n in candidates if wanted(n)][:at_least]
    return chosen + [n for n in candidates if n not in chosen][: count - len(chosen)]


def kill(process: RegistryProcess) -> None:
    """SIGKILL the member and its workers, as the kernel's OOM killer or a node failure would."""
    assert process.process is not None
    os.killpg(process.process.pid, signal.SIGKILL)
    process.process.wait()


def pause(process: RegistryProcess) -> None:
    """SIGSTOP the member and its workers: it keeps its sockets but answers nothing, as a frozen VM."""
    assert process.process is not None
    os.killpg(process.process.pid, signal.SIGSTOP)


def resume(process: RegistryProcess) -> None:
    assert process.process is not None
    os.killpg(process.process.pid, signal.SIGCONT)
