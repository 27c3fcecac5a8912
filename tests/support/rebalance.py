"""Membership changes in tests: the control API as the operator calls it (copy, freeze, switch, with a
client certificate of the cluster CA), and a workload of clients that push and pull while it runs.

The workload's clients behave as registry clients do: an answer with Retry-After (503, 429) is waited
out and retried; anything else that is not a success counts as a failure. Every acknowledged push is
recorded, so the test can check afterwards that each one pulls whole through every member.
"""

from __future__ import annotations

import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from tests.support.images import OCI_MANIFEST, Image, make_image, sha256
from tests.support.kubectl import wait_for

CONTROL = "/_cluster/v1"


class ControlClient:
    """The cluster control API of members, authenticated with `cert`/`key` (issued by the cluster CA)."""

    def __init__(self, ca: Path, cert: Path, key: Path) -> None:
        context = ssl.create_default_context(cafile=str(ca))
        context.load_cert_chain(str(cert), str(key))
        self.http = httpx.Client(verify=context, timeout=30)

    def state(self, url: str) -> dict[str, Any]:
        response = self.http.get(f"{url}{CONTROL}/state")
        assert response.status_code == 200, response.text
        document: dict[str, Any] = response.json()
        return document

    def change(self, url: str, epoch: int, before: list[str], after: list[str], step: str, keep: float = 0) -> Any:
        body = {"epoch": epoch, "from": before, "to": after, "step": step, "keepOldCopiesSeconds": keep}
        return self.http.put(f"{url}{CONTROL}/change", json=body)

    def run_change(
        self,
        urls: list[str],
        epoch: int,
        before: list[str],
        after: list[str],
        timeout: float = 120,
        between_steps: Callable[[str], None] | None = None,
    ) -> dict[str, float]:
        """The operator's part of one change, on every member of `urls`; the seconds each step took."""
        took: dict[str, float] = {}
        for step, reached in (("copy", ("copied", "frozen")), ("freeze", ("frozen",))):
            started = time.monotonic()
            for url in urls:
                response = self.change(url, epoch, before, after, step)
                assert response.status_code == 200, f"{url} {step}: {response.status_code} {response.text}"

            def all_reached(wanted: tuple[str, ...] = reached) -> bool:
                changes = [self.state(url).get("change") or {} for url in urls]
                return all(c.get("epoch") == epoch and c.get("phase") in wanted for c in changes)

            wait_for(f"every member {reached[0]}", all_reached, timeout=timeout, interval=0.1)
            took[step] = time.monotonic() - started
            if between_steps is not None:
                between_steps(step)
        started = time.monotonic()
        for url in urls:
            response = self.change(url, epoch, before, after, "switch")
            assert response.status_code == 200, f"{url} switch: {response.status_code} {response.text}"
            assert response.json()["epoch"] == epoch and response.json()["members"] == after
        took["switch"] = time.monotonic() - started
        return took

    def close(self) -> None:
        self.http.close()


def retrying(send: Callable[[], httpx.Response], stats: WorkloadStats, attempts: int = 120) -> httpx.Response:
    """`send` until its answer is not a retryable one (503/429 with Retry-After), as clients do."""
    response = send()
    for _ in range(attempts):
        if response.status_code not in (429, 503) or "Retry-After" not in response.headers:
            return response
        stats.retried += 1
        time.sleep(min(float(response.headers["Retry-After"]), 1.0) / 4)
        response = send()
    return response


@dataclass
class WorkloadStats:
    pushes: int = 0
    pulls: int = 0
    retried: int = 0  # answers with Retry-After, waited out
    refused_writes: int = 0  # writes that got a retryable answer at least once
    failures: list[str] = field(default_factory=list)  # answers that were neither success nor retryable
    longest_unwritable: float = 0.0  # seconds from a write's first retryable answer to its success


@dataclass
class Workload:
    """Pushers and pullers against `urls` (a random member per request) until stopped, bounded."""

    urls: Callable[[], list[str]]
    ca: Path
    auth: tuple[str, str] | None
    repositories: list[str]
    pushed: dict[tuple[str, str], Image] = field(default_factory=dict)  # (repository, tag) -> image
    stats: WorkloadStats = field(default_factory=WorkloadStats)
    max_rounds: int = 100_000
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self) -> httpx.Client:
        return httpx.Client(verify=ssl.create_default_context(cafile=str(self.ca)), auth=self.auth, timeout=60)

    @staticmethod
    def _post_blob(http: httpx.Client, url: str, repo: str, blob: bytes) -> httpx.Response:
        return http.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": sha256(blob)}, content=blob)

    def push(self, http: httpx.Client, repo: str, tag: str, image: Image) -> bool:
        """One image, as a client pushes it; True when acknowledged (201 for the manifest)."""
        first_refusal: float | None = None
        stats = WorkloadStats()
        for blob in [image.config, *image.layers]:
            url = random.choice(self.urls())
            response = retrying(partial(self._post_blob, http, url, repo, blob), stats)
            if stats.retried and first_refusal is None:
                first_refusal = time.monotonic()
            if response.status_code != 201:
                self._failed(f"push {repo}:{tag} blob via {url}: {response.status_code} {response.text[:200]}")
                return False
        url = random.choice(self.urls())
        response = retrying(
            lambda: http.put(
                f"{url}/v2/{repo}/manifests/{tag}", content=image.manifest, headers={"Content-Type": OCI_MANIFEST}
            ),
            stats,
        )
        if stats.retried and first_refusal is None:
            first_refusal = time.monotonic()
        with self._lock:
            self.stats.retried += stats.retried
            if stats.retried:
                self.stats.refused_writes += 1
            if first_refusal is not None:
                self.stats.longest_unwritable = max(self.stats.longest_unwritable, time.monotonic() - first_refusal)
        if response.status_code != 201:
            self._failed(f"push {repo}:{tag} manifest via {url}: {response.status_code} {response.text[:200]}")
            return False
        with self._lock:
            self.pushed[(repo, tag)] = image
            self.stats.pushes += 1
        return True

    def pull_ok(self, http: httpx.Client, url: str, repo: str, tag: str, image: Image) -> str:
        """ "" when `repo:tag` pulls whole through `url`, else what went wrong."""
        stats = WorkloadStats()
        manifest = retrying(
            lambda: http.get(f"{url}/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST}), stats
        )
        if manifest.status_code != 200 or manifest.content != image.manifest:
            return f"pull {repo}:{tag} via {url}: manifest {manifest.status_code} {manifest.text[:200]}"
        for blob in [image.config, *image.layers]:
            pulled = retrying(partial(http.get, f"{url}/v2/{repo}/blobs/{sha256(blob)}"), stats)
            if pulled.status_code != 200 or sha256(pulled.content) != sha256(blob):
                return f"pull {repo}:{tag} via {url}: blob {pulled.status_code}"
        with self._lock:
            self.stats.retried += stats.retried
        return ""

    def _failed(self, what: str) -> None:
        with self._lock:
            self.stats.failures.append(what)

    def _pusher(self, number: int) -> None:
        with self.client() as http:
            for round_ in range(self.max_rounds):
                if self._stop.is_set():
                    return
                repo = random.choice(self.repositories)
                tag = f"w{number}-{round_}"
                self.push(http, repo, tag, make_image(f"{repo}-{tag}", (512, 700)))

    def _puller(self) -> None:
        with self.client() as http:
            for _ in range(self.max_rounds):
                if self._stop.is_set():
                    return
                with self._lock:
                    if not self.pushed:
                        continue
                    (repo, tag), image = random.choice(list(self.pushed.items()))
                problem = self.pull_ok(http, random.choice(self.urls()), repo, tag, image)
                with self._lock:
                    self.stats.pulls += 1
                if problem:
                    self._failed(problem)

    def start(self, pushers: int = 3, pullers: int = 3) -> Workload:
        self._threads = [threading.Thread(target=self._pusher, args=(i,), daemon=True) for i in range(pushers)]
        self._threads += [threading.Thread(target=self._puller, daemon=True) for _ in range(pullers)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def check_everything_pulls(self, urls: list[str]) -> list[str]:
        """Every acknowledged push, through every member in `urls`: the problems found."""
        problems: list[str] = []
        with self.client() as http:
            for (repo, tag), image in sorted(self.pushed.items()):
                for url in urls:
                    if problem := self.pull_ok(http, url, repo, tag, image):
                        problems.append(problem)
        return problems
