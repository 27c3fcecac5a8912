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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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

    def change(
        self,
        url: str,
        epoch: int,
        before: list[str],
        after: list[str],
        step: str,
        keep: float = 0,
        absent: list[str] | None = None,
    ) -> Any:
        body = {
            "epoch": epoch,
            "from": before,
            "to": after,
            "step": step,
            "keepOldCopiesSeconds": keep,
            "absent": absent or [],
        }
        return self.http.put(f"{url}{CONTROL}/change", json=body)

    def run_change(
        self,
        urls: list[str],
        epoch: int,
        before: list[str],
        after: list[str],
        timeout: float = 120,
        between_steps: Callable[[str], None] | None = None,
        absent: list[str] | None = None,
        keep: float = 0,
    ) -> dict[str, float]:
        """The operator's part of one change, on every member of `urls`; the seconds each step took."""
        took: dict[str, float] = {}
        for step, reached in (("copy", ("copied", "frozen")), ("freeze", ("frozen",))):
            started = time.monotonic()
            for url in urls:
                response = self.change(url, epoch, before, after, step, keep, absent)
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
            response = self.change(url, epoch, before, after, "switch", keep, absent)
            assert response.status_code == 200, f"{url} switch: {response.status_code} {response.text}"
            assert response.json()["epoch"] == epoch and response.json()["members"] == after
        took["switch"] = time.monotonic() - started
        return took

    def close(self) -> None:
        self.http.close()


RETRY_FOR = 60.0  # seconds a client keeps retrying one request before it gives up


def retryable(response: httpx.Response) -> bool:
    """An answer that says to come back (Retry-After): a moving repository, a member that is down."""
    return response.status_code in (429, 502, 503, 504) and "Retry-After" in response.headers


def _blob_on_an_away_member(response: httpx.Response | None) -> bool:
    """The manifest was refused for a blob that the member standing in lacks because the repository's
    own member is down (registry/cluster/node.py, away_instead). Any other MANIFEST_BLOB_UNKNOWN is a
    lost blob: a failure."""
    if response is None or response.status_code != 400:
        return False
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        return False
    return any(e.get("code") == "MANIFEST_BLOB_UNKNOWN" and "which is down" in e.get("message", "") for e in errors)


@dataclass
class WorkloadStats:
    pushes: int = 0
    pulls: int = 0
    retried: int = 0  # answers with Retry-After waited out, and members not answering (another tried)
    refused_writes: int = 0  # writes that got a retryable answer at least once
    unavailable: int = 0  # requests still answered 'retry' after RETRY_FOR: the repository's member is away
    failures: list[str] = field(default_factory=list)  # answers that were neither success nor retryable
    longest_unwritable: float = 0.0  # seconds from a write's first retryable answer to its success
    restarted_pushes: int = 0  # pushes made again: a blob acknowledged by a member that then died


@dataclass
class Outcome:
    response: httpx.Response | None  # None: no member answered at all
    url: str
    first_retry: float | None  # when the first retryable answer came (time.monotonic)
    retries: int


@dataclass
class Workload:
    """Pushers and pullers against `urls` (a random member per request) until stopped, bounded.

    As clients behind a load balancer: a member that does not answer (stopped with its pod) is left for
    another; an answer with Retry-After is waited out and sent again, to any member."""

    urls: Callable[[], list[str]]
    ca: Path
    auth: tuple[str, str] | None
    repositories: list[str]
    pushed: dict[tuple[str, str], Image] = field(default_factory=dict)  # (repository, tag) -> image
    stats: WorkloadStats = field(default_factory=WorkloadStats)
    max_rounds: int = 100_000
    context: ssl.SSLContext | None = None  # how clients verify members (default: the CA, with host names)
    pause: float = 0.05  # seconds a pusher waits between two pushes
    # Seconds a puller waits between two pulls: without a pause, pullers alone kept a core busy
    # through long tests, most of it while nothing was moving.
    pull_pause: float = 0.02
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self) -> httpx.Client:
        verify = self.context or ssl.create_default_context(cafile=str(self.ca))
        return httpx.Client(verify=verify, auth=self.auth, timeout=60)

    def send(self, http: httpx.Client, method: str, path: str, url: str | None = None, **kwargs: Any) -> Outcome:
        """One request, retried as clients do, through `url` or a random member each time."""
        deadline = time.monotonic() + RETRY_FOR
        first_retry: float | None = None
        retries = 0
        response: httpx.Response | None = None
        target = url or random.choice(self.urls())
        while True:
            try:
                response = http.request(method, f"{target}{path}", **kwargs)
                if not retryable(response):
                    return Outcome(response, target, first_retry, retries)
                first_retry = first_retry or time.monotonic()
                pause = min(float(response.headers["Retry-After"]), 1.0) / 4
            except httpx.TransportError:
                pause = 0.05
            retries += 1
            if time.monotonic() + pause > deadline:
                return Outcome(response, target, first_retry, retries)
            time.sleep(pause)
            target = url or random.choice(self.urls())

    def _count(self, outcome: Outcome, write: bool) -> None:
        with self._lock:
            self.stats.retried += outcome.retries
            if write and outcome.first_retry is not None:
                self.stats.refused_writes += 1
                if outcome.response is not None and outcome.response.is_success:
                    waited = time.monotonic() - outcome.first_retry
                    self.stats.longest_unwritable = max(self.stats.longest_unwritable, waited)

    def _judge(self, outcome: Outcome, ok: bool, what: str) -> bool:
        """True when `ok`; else counts the request as unavailable (still 'retry') or failed."""
        if ok:
            return True
        response = outcome.response
        with self._lock:
            if response is None or retryable(response):
                self.stats.unavailable += 1
            else:
                self.stats.failures.append(f"{what} via {outcome.url}: {response.status_code} {response.text[:200]}")
        return False

    def push(self, http: httpx.Client, repo: str, tag: str, image: Image) -> bool:
        """One image, as a client pushes it; True when acknowledged (201 for the manifest)."""
        if not self._push_blobs(http, repo, tag, image, check_first=False):
            return False
        outcome = self._push_manifest(http, repo, tag, image)
        if _blob_on_an_away_member(outcome.response):
            # The member that acknowledged this push's first blobs died, and was dropped; they are on its
            # disk until it is back, and the member standing in says so. A client pushes the image again
            # then (a re-run of docker push, skopeo --retry-times: each checks every blob first).
            with self._lock:
                self.stats.restarted_pushes += 1
            if not self._push_blobs(http, repo, tag, image, check_first=True):
                return False
            outcome = self._push_manifest(http, repo, tag, image)
        if not self._judge(
            outcome, outcome.response is not None and outcome.response.status_code == 201, f"push {repo}:{tag} manifest"
        ):
            return False
        with self._lock:
            self.pushed[(repo, tag)] = image
            self.stats.pushes += 1
        return True

    def _push_blobs(self, http: httpx.Client, repo: str, tag: str, image: Image, check_first: bool) -> bool:
        """Each blob of `image` uploaded in one request; with `check_first`, only those HEAD says are missing."""
        for blob in [image.config, *image.layers]:
            if check_first:
                head = self.send(http, "HEAD", f"/v2/{repo}/blobs/{sha256(blob)}")
                self._count(head, write=False)
                if head.response is not None and head.response.status_code == 200:
                    continue
            outcome = self.send(
                http, "POST", f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(blob)}, content=blob
            )
            self._count(outcome, write=True)
            if not self._judge(
                outcome, outcome.response is not None and outcome.response.status_code == 201, f"push {repo}:{tag} blob"
            ):
                return False
        return True

    def _push_manifest(self, http: httpx.Client, repo: str, tag: str, image: Image) -> Outcome:
        outcome = self.send(
            http, "PUT", f"/v2/{repo}/manifests/{tag}", content=image.manifest, headers={"Content-Type": OCI_MANIFEST}
        )
        self._count(outcome, write=True)
        return outcome

    def pull(self, http: httpx.Client, repo: str, tag: str, image: Image, url: str | None = None) -> bool:
        """`repo:tag` pulled whole (through `url`, or any member), else counted as unavailable or failed."""
        outcome = self.send(http, "GET", f"/v2/{repo}/manifests/{tag}", url, headers={"Accept": OCI_MANIFEST})
        self._count(outcome, write=False)
        response = outcome.response
        whole = response is not None and response.status_code == 200 and response.content == image.manifest
        if not self._judge(outcome, whole, f"pull {repo}:{tag} manifest"):
            return False
        for blob in [image.config, *image.layers]:
            outcome = self.send(http, "GET", f"/v2/{repo}/blobs/{sha256(blob)}", url)
            self._count(outcome, write=False)
            response = outcome.response
            if not self._judge(
                outcome,
                response is not None and response.status_code == 200 and sha256(response.content) == sha256(blob),
                f"pull {repo}:{tag} blob",
            ):
                return False
        return True

    def _pusher(self, number: int) -> None:
        with self.client() as http:
            for round_ in range(self.max_rounds):
                if self._stop.is_set():
                    return
                repo = random.choice(self.repositories)
                tag = f"w{number}-{round_}"
                self.push(http, repo, tag, make_image(f"{repo}-{tag}", (512, 700)))
                self._stop.wait(self.pause)

    def _puller(self) -> None:
        with self.client() as http:
            for _ in range(self.max_rounds):
                if self._stop.is_set():
                    return
                with self._lock:
                    chosen = random.choice(list(self.pushed.items())) if self.pushed else None
                if chosen is not None:  # else nothing acknowledged yet: wait for the pushers
                    (repo, tag), image = chosen
                    self.pull(http, repo, tag, image)
                    with self._lock:
                        self.stats.pulls += 1
                self._stop.wait(self.pull_pause)

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

    def check_everything_pulls(self, urls: list[str], parallel: int = 4) -> list[str]:
        """Every acknowledged push, through every member in `urls`: the problems found (none retried)."""
        checker = Workload(lambda: urls, self.ca, self.auth, self.repositories, context=self.context)
        pushed = sorted(self.pushed.items())

        def check(share: list[tuple[tuple[str, str], Image]]) -> None:
            with self.client() as http:
                for (repo, tag), image in share:
                    for url in urls:
                        checker.pull(http, repo, tag, image, url)

        with ThreadPoolExecutor(max_workers=parallel) as pool:
            list(pool.map(check, [pushed[i::parallel] for i in range(parallel)]))
        return checker.stats.failures + [f"{checker.stats.unavailable} pulls still answered 'retry'"] * bool(
            checker.stats.unavailable
        )
