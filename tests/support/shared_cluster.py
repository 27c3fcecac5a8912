"""zot's published scale-out configs, run as a cluster of real processes on loopback.

Each member's config is zot's example with only what must differ here rewritten: member addresses
(127.0.0.N on one port, as on separate hosts), the S3 and cache endpoints (the fixtures' servers),
certificates, the local root directory, and the log level. A resize rewrites the member list and
restarts every member, as the operator (and zot's docs) do.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.certs import CertFiles, make_certs
from tests.support.images import Image, assert_absent_or_whole, assert_pullable
from tests.support.paths import REPO_ROOT, ZOT_EXAMPLES
from tests.support.peers import Peer
from tests.support.ports import port_free_on_all
from tests.support.registry import RegistryProcess, start_all, stop_all
from tests.support.s3 import S3_ENV

MAX_MEMBERS = 5


def load_example(name: str) -> dict[str, Any]:
    """A published example; the redis ones carry a trailing comma (not JSON), dropped as a user would."""
    text = (ZOT_EXAMPLES / name).read_text()
    document: dict[str, Any] = json.loads(re.sub(r",(\s*\})", r"\1", text))
    return document


def address(index: int) -> str:
    return f"127.0.0.{index + 1}"


@dataclass
class SharedCluster:
    folder: Path
    example: dict[str, Any]
    s3: Peer
    cache: Peer
    certs: CertFiles
    port: int
    workers: int = 1
    members: list[RegistryProcess] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)  # address index of each running member, in list order

    def member_config(self, index: int, count: int | list[int]) -> dict[str, Any]:
        """Member `index` (address 127.0.0.<index+1>) of a cluster of the first `count` addresses, or of
        the listed address indexes (a member dropped from the middle keeps the others' addresses)."""
        slots = list(range(count)) if isinstance(count, int) else count
        config = copy.deepcopy(self.example)
        storage = config["storage"]
        storage["rootDirectory"] = str(self.folder / f"member-{index}" / "root")
        storage["storageDriver"]["regionendpoint"] = f"{self.s3.host}:{self.s3.port}"
        cache = storage["cacheDriver"]
        if cache["name"] == "redis":
            cache["url"] = f"redis://{self.cache.host}:{self.cache.port}"
        else:
            cache["endpoint"] = self.cache.url
        config["http"].update(
            {
                "address": address(index),
                "port": str(self.port),
                "tls": {"cert": str(self.certs.cert), "key": str(self.certs.key)},
            }
        )
        config["log"] = {"level": "warn"}
        config["cluster"]["members"] = [f"{address(i)}:{self.port}" for i in slots]
        config["cluster"]["tls"] = {"cacert": str(self.certs.ca)}
        return config

    def start(self, count: int | list[int]) -> SharedCluster:
        """(Re)starts the cluster with `count` members (or the listed address indexes), every one of them
        with the new member list: the operator's restart of all members on a change of membership."""
        slots = list(range(count)) if isinstance(count, int) else count
        self.stop()
        self.members = []
        self.slots = slots
        for index in slots:
            folder = self.folder / f"member-{index}"
            folder.mkdir(parents=True, exist_ok=True)
            env = {**S3_ENV, "SSL_CERT_FILE": str(self.certs.ca)}
            self.members.append(
                RegistryProcess(
                    folder / "config.json",
                    self.member_config(index, slots),
                    folder / "registry.log",
                    workers=self.workers,
                    env=env,
                )
            )
        start_all(self.members)
        return self

    def client(self, member: int, timeout: float = 60) -> httpx.Client:
        """An HTTP client for the member at `member` (list position), trusting the cluster's CA."""
        return httpx.Client(
            base_url=self.members[member].url,
            timeout=timeout,
            verify=ssl.create_default_context(cafile=str(self.certs.ca)),
        )

    def without(self, position: int) -> SharedCluster:
        """Rewrites the member list without the member at `position` and restarts every survivor."""
        return self.start([slot for i, slot in enumerate(self.slots) if i != position])

    def stop(self) -> None:
        stop_all(self.members)


def shared_cluster(folder: Path, example_name: str, s3: Peer, cache: Peer, **storage: Any) -> SharedCluster:
    """A cluster (not started) from one of zot's examples; `storage` overrides keys such as dedupe."""
    example = load_example(example_name)
    example["storage"].update(storage)
    folder.mkdir(parents=True, exist_ok=True)
    certs = make_certs(folder / "certs", [address(i) for i in range(MAX_MEMBERS)])
    return SharedCluster(folder, example, s3, cache, certs, port_free_on_all(MAX_MEMBERS))


def haproxy_config(cluster: SharedCluster, port: int) -> str:
    """examples/haproxy-sticky.cfg with this cluster's addresses, port and CA, nothing else changed."""
    text = (REPO_ROOT / "examples" / "haproxy-sticky.cfg").read_text()
    text = text.replace("bind 127.0.0.1:8080", f"bind 127.0.0.1:{port}")
    text = text.replace("/etc/zot/ca.crt", str(cluster.certs.ca))
    for member in cluster.members:
        text = re.sub(rf"\b{re.escape(member.host)}:9000\b", member.hostport, text)
    return text


def kill_during_pushes(
    cluster: SharedCluster,
    victim: int,
    images: dict[str, Image],
    push: Callable[[int, str, Image], None],
    outcome: dict[str, Any],
    completed_first: int,
) -> tuple[list[str], list[str]]:
    """`push(number, repo, image)` for every image at once, each in a thread that records its status in
    `outcome`; once `completed_first` got their 201 (bounded wait), SIGKILL to the member at position
    `victim` (its whole process group). Returns the repositories completed and those that were not."""
    threads = [
        threading.Thread(target=push, args=(n, repo, image), daemon=True)
        for n, (repo, image) in enumerate(images.items())
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60  # bounded wait for some pushes to finish before the kill
    while time.monotonic() < deadline and sum(status == 201 for status in outcome.values()) < completed_first:
        time.sleep(0.05)
    killed = cluster.members[victim].process
    assert killed is not None
    os.killpg(killed.pid, signal.SIGKILL)  # in the middle: some pushes done, others mid-layer
    for thread in threads:
        thread.join(timeout=180)
    assert not any(thread.is_alive() for thread in threads)
    completed = sorted(repo for repo, status in outcome.items() if status == 201)
    return completed, sorted(set(images) - set(completed))


def assert_survivors_serve(
    cluster: SharedCluster, pullable: dict[str, Image], unfinished: dict[str, Image], manifest_sent: set[str]
) -> None:
    """Through every running member: each of `pullable` pulls whole, and each of `unfinished` is absent or
    whole (whole only if its manifest PUT was sent), the same everywhere."""
    survivors = [cluster.client(index) for index in range(len(cluster.members))]
    try:
        for http in survivors:
            for repo, image in pullable.items():
                assert_pullable(http, repo, image)
        for repo, image in unfinished.items():
            assert_absent_or_whole(survivors, repo, image, repo in manifest_sent)
    finally:
        for http in survivors:
            http.close()
