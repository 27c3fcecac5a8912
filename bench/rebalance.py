"""The cost of a membership change in place, on real member processes with storage local to each.

    python -m bench.rebalance               # 1 GiB in the cluster; docs/rebalance-benchmarks.{md,png}
    python -m bench.rebalance --gib 0.25 --out /tmp/rebalance   # a quick check, elsewhere

Three members' configs and certificates are written as tests/cluster/test_rebalance.py writes them
(zot_registry.local.cluster.write_cluster: 127.0.0.1 .. .3 on one port, TLS, one CA, htpasswd,
storage in a folder of each member). Members 0 and 1 start with the 2-member list and are filled,
straight through each repository's owner, with repositories of LAYERS random layers (REPO_BYTES
each) totalling --gib. Member 2 starts with the current list, as a new pod starts with the
ConfigMap of the moment. Then the change 2 -> 3 is driven as the operator drives it (copy, freeze,
switch on each member, over the control API with the members' own certificate as client
certificate), timed per step, and `cp -a` of exactly the moved repositories' folders is timed right
after: the old owners keep their retired copies (keepOldCopiesSeconds) under .cluster/retired/1/,
the same files the change sent, still in the page cache, copied to a scratch folder on the same
disk, then `sync` of that disk.

Three times, each on a cluster of its own with the same names and hash key (the same repositories
move): alone; under load, with readers and writers running through a window of --before seconds
ahead of the change and through it (pull latency before and during; for each write, the time from
its first retryable answer to its success); and alone with the same repositories made of small
layers, which separates what a blob costs from what its bytes cost. CPU time of each member, of
this process and of the rest of the machine is taken over each window.

Every load loop is bounded and stops itself; members bind loopback only; members and scratch
folders are removed at the end, also on failure or SIGTERM.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import hashlib
import json
import os
import platform
import random
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import bcrypt
import httpx
import psutil
from zot_registry.cluster.control_models import CHANGE_PATH, STATE_PATH
from zot_registry.cluster.hashing import new_hash_key, owner_index
from zot_registry.cluster.rebalance import PARALLEL_REPOSITORIES
from zot_registry.local.addresses import port_free_for_members
from zot_registry.local.cluster import write_cluster
from zot_registry.local.processes import member_ready, start_member, stop_members

from bench.common import DOCS, cpu_model, pyplot, report_opening, save_figure, write_report
from bench.servers import busy_cores

NAME = "rebalance-benchmarks"
BEFORE, AFTER = 2, 3  # members
WORKERS = 2  # hypercorn workers per member, as the tests run them
REPO_BYTES = 16 << 20  # per repository: LAYERS layers (and a config, and the manifest)
LAYERS = 4
SMALL_LAYERS, SMALL_LAYER = 64, 64 << 10  # the third run: as many repositories, of 64 layers of 64 KiB
FILL_THREADS = 4
READERS, WRITERS = 3, 2
READ_PAUSE, WRITE_PAUSE = 0.04, 0.05  # seconds between one client's requests: a steady load, not a flood
RETRY_POLL = 0.1  # a client's wait after a retryable answer (Retry-After says 1 s; shorter measures finer)
RETRY_ATTEMPTS = 1200  # 120 s of retryable answers is a failure
MAX_ROUNDS = 100_000  # per load thread
LOAD_DEADLINE = 1800.0  # seconds a load thread runs at most, whatever happens
STEP_TIMEOUT = 900.0  # seconds a step may take before the run fails
CP_ROUNDS = 3
KEEP_OLD = 3600.0  # keepOldCopiesSeconds: the old owners keep what they sent, for cp
USER, PASSWORD = "bench", "bench-pw"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MIB = 1 << 20
QUIET_CORES, QUIET_WAIT = 0.3, 30.0  # other work that counts as a quiet machine; how long to wait for it


def log(message: str) -> None:
    print(f"[rebalance {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Image:
    config: bytes
    layers: list[bytes]
    manifest: bytes


def make_image(seed: str, layer_sizes: list[int]) -> Image:
    """An OCI image of random layers of `layer_sizes` bytes and a config naming `seed`."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    layers = [os.urandom(size) for size in layer_sizes]
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest_of(config),
            "size": len(config),
        },
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest_of(layer), "size": len(layer)}
            for layer in layers
        ],
    }
    return Image(config, layers, json.dumps(manifest).encode())


@dataclass(frozen=True)
class Pullable:
    """What a reader pulls of a filled repository: its manifest and its config blob."""

    repo: str
    manifest: bytes
    config_digest: str
    moves: bool


def _nothing() -> None:
    pass


# The members -------------------------------------------------------------------------------------


class Members:
    """Three members' configs and certificates; `running` is what clients spread requests over."""

    def __init__(self, folder: Path, hash_key: str | None = None) -> None:
        folder.mkdir(parents=True)
        htpasswd = folder / "htpasswd"
        htpasswd.write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()}\n")
        self.port = port_free_for_members(AFTER)
        layout = write_cluster(
            folder, AFTER, self.port, tls=True, htpasswd=htpasswd, hash_key=hash_key, log_level="warn"
        )
        assert layout.ca is not None
        self.folder, self.ca, self.addresses = folder, layout.ca, layout.members
        self.hash_key = hash_key or (folder / "hashkey").read_text().strip()
        self.key = self.hash_key.encode()
        self.configs: list[dict[str, Any]] = [json.loads(path.read_text()) for path in layout.configs]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.running: list[str] = []

    def url(self, index: int) -> str:
        return f"https://{self.addresses[index]}"

    def root(self, index: int) -> Path:
        return Path(self.configs[index]["storage"]["rootDirectory"])

    def start(self, index: int, members: list[str]) -> None:
        """Member `index` with `members` as its list in its config, serving once this returns (live;
        a member not in `members` is ready only once it has accepted a change that adds it)."""
        config = json.loads(json.dumps(self.configs[index]))
        config["cluster"]["members"] = members
        path = self.folder / f"member-{index}.json"
        path.write_text(json.dumps(config, indent=2))
        with open(self.folder / f"member-{index}.stdout", "ab") as output:
            self.processes[index] = start_member(path, WORKERS, output=output, own_session=True)
        deadline = time.monotonic() + 60
        while not self._live(index):
            if self.processes[index].poll() is not None or time.monotonic() > deadline:
                tail = (self.folder / f"member-{index}.stdout").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"member {index} did not come up:\n{tail}")
            time.sleep(0.1)

    def _live(self, index: int) -> bool:
        try:
            with httpx.Client(verify=ssl.create_default_context(cafile=str(self.ca)), timeout=1) as http:
                return http.get(f"{self.url(index)}/livez").status_code == 200
        except httpx.HTTPError:
            return False

    def admit_when_ready(self, index: int, timeout: float = 60) -> None:
        """Clients use member `index` from when it is ready, as a Service does."""
        deadline = time.monotonic() + timeout
        while not member_ready(self.url(index), self.ca, timeout=1):
            if time.monotonic() > deadline:
                raise RuntimeError(f"member {index} did not become ready")
            time.sleep(0.05)
        self.running = [*self.running, self.url(index)]

    def owner(self, repo: str, count: int) -> int:
        return owner_index(repo, self.key, count)

    def stop(self) -> None:
        stop_members(self.processes.values(), timeout=40, process_groups=True)


def registry_client(ca: Path) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=str(ca)), auth=(USER, PASSWORD), timeout=60)


def push_image(http: httpx.Client, url: str, repo: str, tag: str, image: Image) -> None:
    for blob in [image.config, *image.layers]:
        answer = http.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": digest_of(blob)}, content=blob)
        if answer.status_code != 201:
            raise RuntimeError(f"fill: blob of {repo} -> {answer.status_code} {answer.text[:200]}")
    answer = http.put(
        f"{url}/v2/{repo}/manifests/{tag}", content=image.manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    if answer.status_code != 201:
        raise RuntimeError(f"fill: manifest of {repo} -> {answer.status_code} {answer.text[:200]}")


@dataclass(frozen=True)
class Shape:
    """What a cluster is filled with: `repositories` of `layers` random layers of `layer` bytes each."""

    repositories: int
    layers: int
    layer: int

    @property
    def total(self) -> int:
        return self.repositories * self.layers * self.layer

    def describe(self) -> str:
        size = f"{self.layer >> 20} MiB" if self.layer >= MIB else f"{self.layer >> 10} KiB"
        return f"{self.repositories} repositories of {self.layers} random {size} layers"


def fill(members: Members, shape: Shape) -> list[Pullable]:
    """The repositories of `shape` (each an image: config, layers, manifest), pushed straight to their owners."""
    repos = [f"fill/team-{i % 8}/app-{i:03d}" for i in range(shape.repositories)]
    local = threading.local()
    clients: list[httpx.Client] = []
    lock = threading.Lock()

    def one(repo: str) -> Pullable:
        if not hasattr(local, "http"):
            local.http = registry_client(members.ca)
            with lock:
                clients.append(local.http)
        image = make_image(repo, [shape.layer] * shape.layers)
        push_image(local.http, members.url(members.owner(repo, BEFORE)), repo, "v1", image)
        moves = members.owner(repo, BEFORE) != members.owner(repo, AFTER)
        return Pullable(repo, image.manifest, digest_of(image.config), moves)

    try:
        with concurrent.futures.ThreadPoolExecutor(FILL_THREADS) as pool:
            return list(pool.map(one, repos))
    finally:
        for client in clients:
            client.close()


# The control API, as the operator calls it ---------------------------------------------------------


class Control:
    def __init__(self, ca: Path, cert: Path, key: Path) -> None:
        context = ssl.create_default_context(cafile=str(ca))
        context.load_cert_chain(str(cert), str(key))
        self.http = httpx.Client(verify=context, timeout=60)

    def state(self, url: str) -> dict[str, Any]:
        answer = self.http.get(f"{url}{STATE_PATH}")
        if answer.status_code != 200:
            raise RuntimeError(f"{url} state: {answer.status_code} {answer.text[:300]}")
        document: dict[str, Any] = answer.json()
        return document

    def ask(self, url: str, epoch: int, before: list[str], after: list[str], step: str) -> dict[str, Any]:
        body = {"epoch": epoch, "from": before, "to": after, "step": step, "keepOldCopiesSeconds": KEEP_OLD}
        answer = self.http.put(f"{url}{CHANGE_PATH}", json=body)
        if answer.status_code != 200:
            raise RuntimeError(f"{url} {step}: {answer.status_code} {answer.text[:300]}")
        document: dict[str, Any] = answer.json()
        return document

    def close(self) -> None:
        self.http.close()


@dataclass
class ChangeRun:
    """One change: monotonic times of its marks, the members' change documents once each step was
    reached, and the bulk copy's progress (bytes done, summed over the members) as polled."""

    started: float = 0.0
    marks: dict[str, float] = field(default_factory=dict)  # copy, freeze, switch -> when that step was done
    reached: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    progress: list[tuple[float, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # each distinct `error` a member reported, in order
    switched_wall: float = 0.0  # time.time() when the last member answered the switch

    def took(self, step: str) -> float:
        previous = {"copy": self.started, "freeze": self.marks["copy"], "switch": self.marks["freeze"]}[step]
        return self.marks[step] - previous

    @property
    def whole(self) -> float:
        return self.marks["switch"] - self.started


def run_change(control: Control, urls: list[str], before: list[str], after: list[str], asked: list[int]) -> ChangeRun:
    """The operator's part of change epoch 1 on every member of `urls`: each step asked of all (in the
    order of `asked`, indexes into `urls`), then the members' states polled until all reached it; the
    switch asked of each in turn, in index order."""
    run = ChangeRun(started=time.monotonic())
    for step, wanted in (("copy", ("copied", "frozen")), ("freeze", ("frozen",))):
        for index in asked:
            control.ask(urls[index], 1, before, after, step)
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            changes = [control.state(url).get("change") or {} for url in urls]
            if step == "copy":
                run.progress.append((time.monotonic(), sum(c.get("bytes", {}).get("done", 0) for c in changes)))
            for c in changes:
                if c.get("error") and c["error"] not in run.errors:
                    run.errors.append(c["error"])
            if all(c.get("epoch") == 1 and c.get("phase") in wanted for c in changes):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"step {step} not reached in {STEP_TIMEOUT:.0f} s: {changes}")
            time.sleep(0.05)
        run.marks[step] = time.monotonic()
        run.reached[step] = changes
    for url in urls:
        state = control.ask(url, 1, before, after, "switch")
        if state.get("epoch") != 1 or state.get("members") != after:
            raise RuntimeError(f"{url} did not switch: {state}")
    run.marks["switch"] = time.monotonic()
    run.switched_wall = time.time()
    return run


# The load ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pull:
    started: float  # monotonic
    seconds: float
    moves: bool
    ok: bool


@dataclass(frozen=True)
class Write:
    started: float
    first_refusal: float | None  # monotonic time of its first retryable answer
    finished: float
    ok: bool
    refusals: int

    @property
    def waited(self) -> float:
        return self.finished - self.first_refusal if self.first_refusal is not None else 0.0


@dataclass
class Load:
    """Readers pulling manifests and config blobs of moving and staying repositories, and writers
    pushing small images to moving ones, through a random running member each request, until
    stopped (bounded by MAX_ROUNDS and LOAD_DEADLINE in any case)."""

    members: Members
    pullables: list[Pullable]
    pulls: list[Pull] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    pushed: list[tuple[str, str, bytes]] = field(default_factory=list)  # acknowledged: repo, tag, manifest
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _retrying(self, send: Callable[[], httpx.Response], on_refusal: Callable[[], None]) -> httpx.Response:
        """`send` until its answer is not a retryable one, as registry clients do."""
        answer = send()
        for _ in range(RETRY_ATTEMPTS):
            if answer.status_code not in (429, 503) or "Retry-After" not in answer.headers:
                return answer
            on_refusal()
            time.sleep(RETRY_POLL)
            answer = send()
        return answer

    def _failed(self, what: str) -> None:
        with self._lock:
            self.failures.append(what)

    def _reader(self, number: int) -> None:
        rng = random.Random(number)
        moving = [p for p in self.pullables if p.moves]
        staying = [p for p in self.pullables if not p.moves] or moving
        end = time.monotonic() + LOAD_DEADLINE
        with registry_client(self.members.ca) as http:
            for round_ in range(MAX_ROUNDS):
                if self._stop.is_set() or time.monotonic() > end:
                    return
                target = rng.choice(moving if round_ % 2 else staying)
                url = rng.choice(self.members.running)
                started = time.monotonic()
                manifest = self._retrying(
                    partial(http.get, f"{url}/v2/{target.repo}/manifests/v1", headers={"Accept": OCI_MANIFEST}),
                    _nothing,
                )
                blob = self._retrying(
                    partial(http.get, f"{url}/v2/{target.repo}/blobs/{target.config_digest}"), _nothing
                )
                seconds = time.monotonic() - started
                ok = (
                    manifest.status_code == 200
                    and manifest.content == target.manifest
                    and blob.status_code == 200
                    and digest_of(blob.content) == target.config_digest
                )
                if not ok:
                    self._failed(
                        f"pull {target.repo} via {url}: manifest {manifest.status_code}, blob {blob.status_code}"
                    )
                with self._lock:
                    self.pulls.append(Pull(started, seconds, target.moves, ok))
                time.sleep(READ_PAUSE)

    def _writer(self, number: int) -> None:
        rng = random.Random(1000 + number)
        moving = [p.repo for p in self.pullables if p.moves]
        end = time.monotonic() + LOAD_DEADLINE
        with registry_client(self.members.ca) as http:
            for round_ in range(MAX_ROUNDS):
                if self._stop.is_set() or time.monotonic() > end:
                    return
                repo, tag = rng.choice(moving), f"w{number}-{round_}"
                image = make_image(f"{repo}:{tag}", [1024])
                self._write(http, rng, repo, tag, image)
                time.sleep(WRITE_PAUSE)

    def _write(self, http: httpx.Client, rng: random.Random, repo: str, tag: str, image: Image) -> None:
        """One push as a client does it, each request through a random running member."""
        first: list[float] = []

        def refused() -> None:
            first.append(time.monotonic())

        started = time.monotonic()
        ok = True
        for blob in [image.config, *image.layers]:
            url = rng.choice(self.members.running)
            answer = self._retrying(
                partial(http.post, f"{url}/v2/{repo}/blobs/uploads/", params={"digest": digest_of(blob)}, content=blob),
                refused,
            )
            if answer.status_code != 201:
                self._failed(f"push {repo}:{tag} blob via {url}: {answer.status_code} {answer.text[:200]}")
                ok = False
                break
        if ok:
            url = rng.choice(self.members.running)
            answer = self._retrying(
                partial(
                    http.put,
                    f"{url}/v2/{repo}/manifests/{tag}",
                    content=image.manifest,
                    headers={"Content-Type": OCI_MANIFEST},
                ),
                refused,
            )
            if answer.status_code != 201:
                self._failed(f"push {repo}:{tag} manifest via {url}: {answer.status_code} {answer.text[:200]}")
                ok = False
        with self._lock:
            self.writes.append(Write(started, first[0] if first else None, time.monotonic(), ok, len(first)))
            if ok:
                self.pushed.append((repo, tag, image.manifest))

    def _run(self, target: Callable[[int], None], count: int) -> None:
        threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(count)]
        self._threads += threads
        for thread in threads:
            thread.start()

    def start_readers(self) -> Load:
        self._run(self._reader, READERS)
        return self

    def start_writers(self) -> None:
        self._run(self._writer, WRITERS)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=180)


# Measuring -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuSample:
    at: float  # monotonic
    machine: float  # busy CPU-seconds of the whole machine so far
    bench: float  # this process (its client threads) and the children it waited for (cp, sync)
    members: tuple[float, ...]  # each member's process tree (supervisor and workers)


def cpu_sample(members: Members) -> CpuSample:
    system = psutil.cpu_times()
    busy = system.user + system.system + sum(getattr(system, k, 0.0) for k in ("nice", "irq", "softirq"))
    own = os.times()
    trees: list[float] = []
    for index in range(AFTER):
        total = 0.0
        process = members.processes.get(index)
        if process is not None:
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(process.pid)
                for each in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        times = each.cpu_times()
                        total += times.user + times.system
        trees.append(total)
    mine = own.user + own.system + own.children_user + own.children_system
    return CpuSample(time.monotonic(), busy, mine, tuple(trees))


@dataclass(frozen=True)
class Cpu:
    """Cores busy over a window, on average: each member, this process (clients, cp), everything else."""

    seconds: float
    members: tuple[float, ...]
    bench: float
    others: float

    @classmethod
    def between(cls, first: CpuSample, last: CpuSample) -> Cpu:
        wall = max(last.at - first.at, 1e-9)
        members = tuple((b - a) / wall for a, b in zip(first.members, last.members, strict=True))
        bench = (last.bench - first.bench) / wall
        others = max((last.machine - first.machine) / wall - sum(members) - bench, 0.0)
        return cls(wall, members, bench, others)


@dataclass
class Run:
    """One change 2 -> 3 on a cluster of its own, and `cp -a` of what it moved."""

    label: str
    shape: Shape
    pullables: list[Pullable]
    moved: dict[str, tuple[int, int]]  # repository -> its old owner's index and its new owner's
    moved_bytes: int  # files of the moved repositories' folders at their old owners (cp's input)
    moved_blobs: int  # blob files among them (layers, configs, manifests)
    sent_bytes: int  # zot_cluster_rebalance_bytes_total, summed over the members
    member_start: float  # seconds for member 2 to start (before the change, not part of it)
    change: ChangeRun
    frozen_since: float  # time.time() of the first member's freeze
    cp_rounds: list[CpRound]
    cpu_change: Cpu
    cpu_before: Cpu | None  # the window before the change, with the load running
    load: Load | None
    problems: list[str]  # acknowledged pushes that do not pull afterwards, repositories at the wrong member
    busy_ahead: float = 0.0  # cores busy with other work just before this run

    @property
    def cp(self) -> CpRound:
        """The median round of `cp -a` (by its time)."""
        return sorted(self.cp_rounds, key=lambda r: r.cp)[len(self.cp_rounds) // 2]

    @property
    def cp_seconds(self) -> float:
        return self.cp.cp

    @property
    def sync_seconds(self) -> float:
        return self.cp.sync

    @property
    def cpu_cp(self) -> Cpu:
        return self.cp.cpu


def _metric(control: Control, url: str, name: str) -> float:
    text = control.http.get(f"{url}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if re.match(rf"{name}(\{{| )", line))


def _files_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def _retired(members: Members, index: int) -> Path:
    return members.root(index) / ".cluster" / "retired" / "1"


def _wait_retired(members: Members, moved: dict[str, tuple[int, int]]) -> None:
    """The old owners move what left them under .cluster/retired/1/ a second after the switch."""
    deadline = time.monotonic() + 60
    for index in range(BEFORE):
        expected = sum(1 for old, _ in moved.values() if old == index)
        folder = _retired(members, index)
        while (len(list(folder.iterdir())) if folder.is_dir() else 0) < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"member {index} did not retire its {expected} moved repositories")
            time.sleep(0.1)


@dataclass(frozen=True)
class CpRound:
    cp: float  # seconds of `cp -a`
    sync: float  # seconds of the `sync -f` after it
    cpu: Cpu


def _cp_moved(members: Members, scratch: Path) -> list[CpRound]:
    """CP_ROUNDS times: `cp -a` of every moved repository's folder at its old owner into a fresh folder of
    `scratch`, then `sync -f` of that disk; the copy is removed (untimed) before the next round."""
    rounds: list[CpRound] = []
    for number in range(CP_ROUNDS):
        subprocess.run(["sync"], check=True)  # what the change (or the last round) left dirty is not cp's to write
        target = scratch / f"round-{number}"
        first = cpu_sample(members)
        started = time.monotonic()
        for index in range(BEFORE):
            folders = sorted(str(p) for p in _retired(members, index).iterdir())
            (target / f"from-member-{index}").mkdir(parents=True)
            if folders:
                subprocess.run(["cp", "-a", *folders, str(target / f"from-member-{index}")], check=True)
        copied = time.monotonic()
        subprocess.run(["sync", "-f", str(scratch)], check=True)
        synced = time.monotonic()
        rounds.append(CpRound(copied - started, synced - copied, Cpu.between(first, cpu_sample(members))))
        shutil.rmtree(target)
    return rounds


def _check_after(members: Members, pullables: list[Pullable], pushed: list[tuple[str, str, bytes]]) -> list[str]:
    """Every acknowledged push pulls its manifest and has its blobs through member 0; every filled
    repository is stored at its owner under the new list only."""
    problems: list[str] = []
    with registry_client(members.ca) as http:
        for repo, tag, manifest in pushed:
            answer = http.get(f"{members.url(0)}/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
            if answer.status_code != 200 or answer.content != manifest:
                problems.append(f"{repo}:{tag} after the change: {answer.status_code}")
            document = json.loads(manifest)
            for digest in [document["config"]["digest"], *(layer["digest"] for layer in document["layers"])]:
                if (status := http.head(f"{members.url(0)}/v2/{repo}/blobs/{digest}").status_code) != 200:
                    problems.append(f"{repo}:{tag} after the change: blob {digest} {status}")
    for pullable in pullables:
        owner = members.owner(pullable.repo, AFTER)
        holders = [i for i in range(AFTER) if (members.root(i) / pullable.repo / "index.json").is_file()]
        if holders != [owner]:
            problems.append(f"{pullable.repo} is stored at members {holders}, its owner is {owner}")
    return problems


def run_once(folder: Path, label: str, shape: Shape, asked: list[int], key: str, before: float | None) -> Run:
    """A cluster of its own in `folder`: fill, member 2, the change (with the load and a window of
    `before` seconds ahead of it, unless None), `cp -a` of what moved; everything stopped after."""
    members = Members(folder / "cluster", key)
    control = Control(members.ca, members.folder / "server.crt", members.folder / "server.key")
    load: Load | None = None
    try:
        old, new = members.addresses[:BEFORE], members.addresses[:AFTER]
        for index in range(BEFORE):
            members.start(index, old)
            members.admit_when_ready(index)
        started = time.monotonic()
        pullables = fill(members, shape)
        log(
            f"{label}: filled in {time.monotonic() - started:.1f} s; {sum(p.moves for p in pullables)} of "
            f"{len(pullables)} repositories move"
        )
        started = time.monotonic()
        members.start(2, old)  # the new member, with the list of the moment: live, ready once asked to join
        member_start = time.monotonic() - started
        cpu_before: Cpu | None = None
        if before is not None:
            load = Load(members, pullables).start_readers()
            log(f"{label}: readers running, {before:g} s before the change")
            first = cpu_sample(members)
            time.sleep(before)
            cpu_before = Cpu.between(first, cpu_sample(members))
        log(f"{label}: change 2 -> 3")
        urls = [members.url(i) for i in range(AFTER)]
        if load is not None:
            load.start_writers()  # writes to moving repositories while the change runs
        first = cpu_sample(members)
        change = run_change(control, urls, old, new, asked)
        cpu_change = Cpu.between(first, cpu_sample(members))
        members.admit_when_ready(2)  # clients spread over the list the cluster routes by: from now on, 3
        if load is not None:
            load.stop()
        log(
            f"{label}: switched after {change.whole:.1f} s (copy {change.took('copy'):.1f}, "
            f"freeze {change.took('freeze'):.2f}, switch {change.took('switch'):.2f})"
        )
        sent = int(sum(_metric(control, url, "zot_cluster_rebalance_bytes_total") for url in urls))
        moved = {p.repo: (members.owner(p.repo, BEFORE), members.owner(p.repo, AFTER)) for p in pullables if p.moves}
        _wait_retired(members, moved)
        moved_bytes = sum(_files_bytes(_retired(members, i)) for i in range(BEFORE))
        moved_blobs = sum(len(list(_retired(members, i).glob("*/blobs/*/*"))) for i in range(BEFORE))
        cp_rounds = _cp_moved(members, folder / "scratch")
        log(
            f"{label}: cp -a of the moved folders: "
            + ", ".join(f"{r.cp:.2f} s (sync {r.sync:.2f} s)" for r in cp_rounds)
        )
        problems = _check_after(members, pullables, load.pushed if load is not None else [])
        frozen = [float(c["frozenSince"]) for c in change.reached["freeze"] if c.get("frozenSince")]
        return Run(
            label=label,
            shape=shape,
            pullables=pullables,
            moved=moved,
            moved_bytes=moved_bytes,
            moved_blobs=moved_blobs,
            sent_bytes=sent,
            member_start=member_start,
            change=change,
            frozen_since=min(frozen) if frozen else change.switched_wall,
            cp_rounds=cp_rounds,
            cpu_change=cpu_change,
            cpu_before=cpu_before,
            load=load,
            problems=problems,
        )
    finally:
        if load is not None:
            load.stop()
        control.close()
        members.stop()


@dataclass
class Figures:
    gib: float
    asked: list[int]  # the order the members were asked for each step
    before_window: float
    busy_at_start: float  # cores busy with other work when the run began
    fs: str
    alone: Run  # the change with no client load
    loaded: Run  # the same change (same names, same hash key) while readers and writers run
    small: Run  # the change alone, the same repositories of small layers: what a blob costs


def _filesystem(path: Path) -> str:
    found = subprocess.run(
        ["findmnt", "-n", "-o", "FSTYPE,SOURCE", "--target", str(path)], capture_output=True, text=True, check=False
    ).stdout.split()
    return f"{found[0]} on {found[1]}" if len(found) == 2 else "?"


def wait_for_quiet(patience: float) -> float:
    """Give other work on the machine up to `patience` seconds to finish; the cores it keeps busy."""
    deadline = time.monotonic() + patience
    while True:
        busy = busy_cores(2.0)
        if busy < QUIET_CORES or time.monotonic() > deadline:
            if busy >= QUIET_CORES:
                log(f"the machine stays busy ({busy:.2f} cores in use by others): measuring anyway, see the report")
            return busy
        log(f"waiting for a quieter machine ({busy:.2f} cores in use by others)")


def measure(workdir: Path, gib: float, before: float, asked: list[int], patience: float) -> Figures:
    busy = wait_for_quiet(patience)
    key = new_hash_key()  # the clusters route alike: the same repositories move, between the same members
    repositories = max(2, round(gib * (1 << 30) / REPO_BYTES))
    shape = Shape(repositories, LAYERS, REPO_BYTES // LAYERS)
    runs: list[Run] = []
    for name, label, each, window in (
        ("alone", "alone", shape, None),
        ("loaded", "under load", shape, before),
        ("small", f"alone, {SMALL_LAYER >> 10} KiB layers", Shape(repositories, SMALL_LAYERS, SMALL_LAYER), None),
    ):
        ahead = busy if not runs else wait_for_quiet(patience)
        runs.append(run_once(workdir / name, label, each, asked, key, window))
        runs[-1].busy_ahead = ahead
        shutil.rmtree(workdir / name, ignore_errors=True)
    return Figures(gib, asked, before, busy, _filesystem(workdir), *runs)


# The report --------------------------------------------------------------------------------------


def percentiles(values: list[float]) -> tuple[float, float, float, float]:
    """p50, p95, p99 and max of `values` (seconds), in milliseconds."""
    if len(values) < 2:
        only = values[0] * 1000 if values else float("nan")
        return only, only, only, only
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[94] * 1000, cuts[98] * 1000, max(values) * 1000


def windows(run: Run) -> dict[str, list[Pull]]:
    """The pulls that started in the window before the change, and during it (start to the last switch)."""
    pulls = run.load.pulls if run.load is not None else []
    change = run.change
    return {
        "before": [p for p in pulls if p.started < change.started],
        "during": [p for p in pulls if change.started <= p.started <= change.marks["switch"]],
    }


def _mbps(size: int, seconds: float) -> float:
    return size / 1e6 / seconds if seconds > 0 else float("nan")


def _pairs(run: Run) -> str:
    counts: dict[tuple[int, int], int] = {}
    for pair in run.moved.values():
        counts[pair] = counts.get(pair, 0) + 1
    return ", ".join(f"{a}->{b}: {n}" for (a, b), n in sorted(counts.items()))


def _cores(cpu: Cpu) -> str:
    return " / ".join(f"{c:.2f}" for c in cpu.members)


def _memory_facts() -> str:
    """What makes memory cost vary here: a balloon that hands free memory back, DAMON reclaiming cold pages."""
    facts = []
    if Path("/sys/bus/virtio/drivers/virtio_balloon").is_dir():
        facts.append("a virtio balloon")
    with contextlib.suppress(OSError):
        if Path("/sys/kernel/mm/damon/admin/kdamonds/0/state").read_text().strip() == "on":
            facts.append("DAMON reclaiming cold memory")
    return f" (a virtual machine with {' and '.join(facts)})" if facts else ""


def machine(fs: str) -> str:
    memory = psutil.virtual_memory().total / (1 << 30)
    return (
        f"{os.cpu_count()} cores ({cpu_model()}), {memory:.0f} GiB RAM{_memory_facts()}, Linux {platform.release()}, "
        f"Python {platform.python_version()}; the members' storage and cp's scratch folder on {fs}"
    )


def _time_rows(runs: list[Run]) -> list[str]:
    def row(title: str, cell: Callable[[Run], str]) -> str:
        return f"| {title} | " + " | ".join(cell(run) for run in runs) + " |"

    def whole_cp(run: Run) -> float:
        return run.cp_seconds + run.sync_seconds

    def failures(run: Run) -> int:
        return sum(int(c.get("failures", 0)) for c in run.change.reached["freeze"])

    return [
        "| | " + " | ".join(f"change {run.label}" for run in runs) + " |",
        "|---|" + "--:|" * len(runs),
        row("filled with", lambda r: r.shape.describe()),
        row("repositories that moved (owner changed)", lambda r: f"{len(r.moved)} of {len(r.pullables)}"),
        row("old -> new member: repositories", _pairs),
        row(
            "bytes that moved (the moved repositories' files at their old owners)",
            lambda r: f"{r.moved_bytes / MIB:,.0f} MiB",
        ),
        row("blobs that moved (layers, configs, manifests)", lambda r: f"{r.moved_blobs:,}"),
        row(
            "bytes the members sent (`zot_cluster_rebalance_bytes_total`, summed)",
            lambda r: f"{r.sent_bytes / MIB:,.0f} MiB",
        ),
        row("member 2 started (before the change, not part of it)", lambda r: f"{r.member_start:.1f} s"),
        row("copy (bulk copy, writes go on)", lambda r: f"{r.change.took('copy'):.2f} s"),
        row("freeze (writes wait; delta copy; each new owner publishes)", lambda r: f"{r.change.took('freeze'):.2f} s"),
        row("switch (asked of each member in turn)", lambda r: f"{r.change.took('switch'):.2f} s"),
        row("**whole change** (copy + freeze + switch)", lambda r: f"**{r.change.whole:.2f} s**"),
        row(
            f"`cp -a` of the same folders, same disk, right after: median of {CP_ROUNDS} (fastest - slowest)",
            lambda r: (
                f"{r.cp_seconds:.2f} s ({min(c.cp for c in r.cp_rounds):.2f} - {max(c.cp for c in r.cp_rounds):.2f})"
            ),
        ),
        row("`cp -a`, then `sync -f` of that disk", lambda r: f"{whole_cp(r):.2f} s"),
        row("**whole change / `cp -a`**", lambda r: f"**{r.change.whole / r.cp_seconds:.1f} x**"),
        row("whole change / (`cp -a` + `sync`)", lambda r: f"{r.change.whole / whole_cp(r):.1f} x"),
        row("MB/s, whole change", lambda r: f"{_mbps(r.moved_bytes, r.change.whole):,.0f}"),
        row("MB/s, copy step", lambda r: f"{_mbps(r.moved_bytes, r.change.took('copy')):,.0f}"),
        row(
            "MB/s, `cp -a` / `cp -a` + `sync`",
            lambda r: f"{_mbps(r.moved_bytes, r.cp_seconds):,.0f} / {_mbps(r.moved_bytes, whole_cp(r)):,.0f}",
        ),
        row("copies that failed and were retried (`failures`, summed)", lambda r: str(failures(r))),
        row("blobs/s, copy step", lambda r: f"{r.moved_blobs / r.change.took('copy'):,.0f}"),
        row("cores busy during the change: members 0 / 1 / 2", lambda r: _cores(r.cpu_change)),
        row("the members' CPU-seconds in the change", lambda r: f"{_member_cpu(r):.2f} s"),
        row("cores busy during the change: this process (clients, polling)", lambda r: f"{r.cpu_change.bench:.2f}"),
        row("cores busy during the change: other work on the machine", lambda r: f"{r.cpu_change.others:.2f}"),
        row("cores busy with other work just before the run", lambda r: f"{r.busy_ahead:.2f}"),
        row(
            "cores busy during `cp -a` + `sync`: cp / other work",
            lambda r: f"{r.cpu_cp.bench:.2f} / {r.cpu_cp.others:.2f}",
        ),
    ]


def _member_cpu(run: Run) -> float:
    return sum(run.cpu_change.members) * run.cpu_change.seconds


def per_mib_and_blob(first: Run, second: Run) -> tuple[float, float]:
    """The members' CPU-seconds per moved MiB and per moved blob that fit both runs (two equations,
    two unknowns: cpu = a * MiB + b * blobs); NaN when the runs do not tell them apart."""
    m1, b1, c1 = first.moved_bytes / MIB, first.moved_blobs, _member_cpu(first)
    m2, b2, c2 = second.moved_bytes / MIB, second.moved_blobs, _member_cpu(second)
    det = m1 * b2 - m2 * b1
    if abs(det) < 1e-9:
        return float("nan"), float("nan")
    return (c1 * b2 - c2 * b1) / det, (m1 * c2 - m2 * c1) / det


def report(figures: Figures, out: Path, elapsed: float) -> None:
    alone, loaded, small = figures.alone, figures.loaded, figures.small
    assert loaded.load is not None
    load = loaded.load
    asked = ", ".join(str(i) for i in figures.asked)
    lines = report_opening(
        "The cost of a membership change",
        "bench.rebalance",
        elapsed,
        f": {machine(figures.fs)}. Three members on 127.0.0.1-3 (one port, TLS, {WORKERS} workers each, storage "
        "in a folder of each, dedupe on, htpasswd), as `tests/cluster/test_rebalance.py` builds them. Members 0 "
        f"and 1 hold {alone.shape.describe()} each ({alone.shape.total / (1 << 30):.2f} GiB, "
        "pushed straight to each owner); member 2 starts with their list; then the change 2 -> 3 is driven "
        "as the operator drives it: each step (copy, freeze, switch) asked of every member over the control "
        f"API, with the members' own certificate as client certificate (members asked in the order {asked}), "
        "then each member's state polled every 50 ms until all reached it. Three times, each on a cluster of "
        "its own with the same repository names and hash key (so the same repositories move between the same "
        f"members): alone; while {READERS} readers and {WRITERS} writers run (below); and alone again with "
        f"{SMALL_LAYERS} layers of {SMALL_LAYER >> 10} KiB per repository instead, which tells what a blob costs "
        "apart from its bytes. Before each run the benchmark waits (up to a limit) for the machine to be quiet: "
        "the other work it found is in the table.",
    )
    per_mib, per_blob = per_mib_and_blob(alone, small)
    lines += [
        "",
        "## Time to rebalance, against `cp`",
        "",
        *_time_rows([alone, loaded, small]),
        "",
        f"From the two runs alone: the members spend **{per_mib * 1000:.1f} ms of CPU per MiB moved** and "
        f"**{per_blob * 1000:.2f} ms per blob** moved, apart from its bytes (cpu = a x MiB + b x blobs, solved "
        f"for both), that is {1 / per_mib * MIB / 1e6 if per_mib > 0 else float('nan'):,.0f} MB/s per core for the "
        f"bytes and {1 / per_blob if per_blob > 0 else float('nan'):,.0f} blobs/s per core for the rest.",
    ]
    errors = [*alone.change.errors, *loaded.change.errors, *small.change.errors]
    if errors:
        lines += ["", f"The first copy failure the members reported: `{errors[0][:300]}`"]
    change = loaded.change
    writes = [w for w in load.writes if w.started <= change.marks["switch"]]
    waited = [w for w in writes if w.first_refusal is not None]
    longest = max((w.waited for w in waited), default=0.0)
    median_wait = statistics.median([w.waited for w in waited]) if waited else 0.0
    lines += [
        "",
        "## Writes during the change",
        "",
        f"From the first `copy` request to the switch, {WRITERS} writers push small images (a config and one 1 KiB "
        f"layer, a new tag each) to moving repositories, {WRITE_PAUSE * 1000:.0f} ms apart, each request through "
        "a random member of the list the cluster routes by (member 2 only from the switch on); a retryable "
        "answer is retried after "
        f"{RETRY_POLL * 1000:.0f} ms (clients wait Retry-After, 1 s; the shorter wait measures the pause finer).",
        "",
        "| figure | value |",
        "|---|--:|",
        f"| writes acknowledged | {sum(w.ok for w in writes)} |",
        f"| writes that got a retryable answer (503 with Retry-After) and waited | {len(waited)} |",
        f"| **longest wait**: first retryable answer to success | **{longest:.2f} s** |",
        f"| median wait of those that waited | {median_wait:.2f} s |",
        f"| the members' own window: the first `frozenSince` to the last switch answer | "
        f"{change.switched_wall - loaded.frozen_since:.2f} s |",
        f"| writes that failed (an answer neither success nor retryable) | {sum(not w.ok for w in load.writes)} |",
        f"| acknowledged pushes that do not pull after the change, repositories at the wrong member | "
        f"{len(loaded.problems) + len(alone.problems) + len(small.problems)} |",
    ]
    if failed_writes := [f for f in load.failures if f.startswith("push")]:
        lines += ["", f"The first write that failed: `{failed_writes[0][:300]}`"]
    if problems := [*alone.problems, *loaded.problems, *small.problems]:
        lines += ["", f"The first problem after the change: `{problems[0][:300]}`"]
    split = windows(loaded)
    stats = {name: percentiles([p.seconds for p in pulls if p.ok]) for name, pulls in split.items()}
    before_cpu = loaded.cpu_before
    lines += [
        "",
        "## Pull latency: before the change and during it",
        "",
        f"{READERS} readers pull, {READ_PAUSE * 1000:.0f} ms apart, a manifest and its config blob (one pull: both "
        "GETs), of a moving and of a staying repository in turn, each through a random member of the list the "
        "cluster routes by; before the change for a window of its own, then through the change (with the "
        "writers above).",
        "",
        "| window | pulls | p50 ms | p95 ms | p99 ms | max ms | cores busy: members 0 / 1 / 2 |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for name, seconds, cpu in (
        ("before", figures.before_window, before_cpu),
        ("during", change.whole, loaded.cpu_change),
    ):
        p50, p95, p99, top = stats[name]
        cores = _cores(cpu) if cpu is not None else ""
        lines.append(
            f"| {name} ({seconds:.1f} s) | {len(split[name])} | {p50:.1f} | {p95:.1f} | {p99:.1f} | {top:.0f} "
            f"| {cores} |"
        )
    ratio = [d / b if b else float("nan") for b, d in zip(stats["before"], stats["during"], strict=True)]
    lines.append(f"| during / before | | {ratio[0]:.1f} x | {ratio[1]:.1f} x | {ratio[2]:.1f} x | {ratio[3]:.1f} x | |")
    for moves, label in ((True, "moving"), (False, "staying")):
        p50, p95, p99, top = percentiles([p.seconds for p in split["during"] if p.ok and p.moves == moves])
        count = sum(1 for p in split["during"] if p.moves == moves)
        lines.append(
            f"| during, {label} repositories only | {count} | {p50:.1f} | {p95:.1f} | {p99:.1f} | {top:.0f} | |"
        )
    failed = sum(1 for p in load.pulls if not p.ok)
    if failed:
        lines += ["", f"{failed} pulls failed; the first: `{next(f for f in load.failures if f.startswith('pull'))}`"]
    write_report(
        out,
        NAME,
        lines,
        "rebalance against cp, pull latency before and during",
        _closing(figures),
        lambda png: plot(figures, png),
    )


def _closing(figures: Figures) -> str:
    alone, loaded, small = figures.alone, figures.loaded, figures.small
    assert loaded.load is not None
    cores = os.cpu_count() or 0
    per_mib, per_blob = per_mib_and_blob(alone, small)
    cp_cpu = alone.cpu_cp.bench * alone.cpu_cp.seconds / (alone.moved_bytes / MIB) if alone.moved_bytes else 0.0
    split = windows(loaded)
    before, during = (percentiles([p.seconds for p in split[w] if p.ok]) for w in ("before", "during"))
    waited = [
        w for w in loaded.load.writes if w.first_refusal is not None and w.started <= loaded.change.marks["switch"]
    ]
    longest = max((w.waited for w in waited), default=0.0)
    small_copy = small.change.took("copy")
    failed = sum(not w.ok for w in loaded.load.writes)
    problems = len(alone.problems) + len(loaded.problems) + len(small.problems)
    broken = (
        f"- **{failed} writes failed, and {problems} checks after the change found something missing or "
        "misplaced** (the first of each above): a write answered neither with success nor with a retryable "
        "answer, or an acknowledged push that does not pull whole afterwards, is what the change must never "
        "cause (docs/rebalancing.md, Guarantees).\n"
        if failed or problems
        else ""
    )
    busy = sum(alone.cpu_change.members) + alone.cpu_change.bench + alone.cpu_change.others
    bound = "bound by CPU" if busy >= 0.8 * cores else f"not bound by CPU ({busy:.2f} of {cores} cores busy)"
    load_cores = sum(loaded.cpu_before.members) + loaded.cpu_before.bench if loaded.cpu_before else float("nan")
    return f"""\
## How the figures were taken

- The change's time runs from the first `copy` request to the last member's answer to `switch`;
  each step from the previous one's end until every member's state showed it reached (polled every
  50 ms). Member 2's start is not in it: the operator starts the new pod first, and the pod is ready
  only once it has accepted the change.
- "Bytes that moved" are the files of the moved repositories' folders at their old owners, which
  keep what they sent (`keepOldCopiesSeconds` {KEEP_OLD:.0f}) under `.cluster/retired/1/`; `cp -a`
  copies exactly those folders, on the same disk, right after the change. The files are in the page
  cache for both (written by the fill a minute before; nothing is dropped), so neither reads the
  disk. The change fsyncs every blob it receives; `cp` does not, which the `sync` row adds back.
  `cp` runs {CP_ROUNDS} times, into a fresh folder each time: the same copy takes from
  {min(c.cp for c in alone.cp_rounds):.2f} to {max(c.cp for c in alone.cp_rounds):.2f} s here (on this
  virtual machine, memory the host took back costs page faults when it is written again, more or less from
  one copy to the next), so the table gives the median.
- "Cores busy" is CPU-seconds over wall seconds in each window, from /proc: each member's supervisor
  and workers, this process (client threads, polling; `cp` and `sync` as its children), and the rest
  of the machine (other work: the machine is shared). Rows adding up to about {cores} mean the window
  was bound by CPU.

## What they mean

- Alone, the change moved {alone.moved_bytes / MIB:,.0f} MiB in {alone.change.whole:.1f} s:
  {_mbps(alone.moved_bytes, alone.change.whole):,.0f} MB/s, {alone.change.whole / alone.cp_seconds:.0f} x
  the time of `cp -a` ({alone.change.whole / (alone.cp_seconds + alone.sync_seconds):.0f} x `cp -a` + `sync`).
  The copy step is {alone.change.took("copy") / alone.change.whole:.0%} of it.
- Where the time goes: on {cores} cores the change is {bound}, {per_mib * 1000:.1f} ms of the members' CPU
  per MiB against {cp_cpu * 1000:.1f} ms for `cp`. Every copied byte is read by the old owner in Python, crosses
  TLS twice (encrypted by the old owner, decrypted by the new), is hashed by the new owner as it arrives
  (SHA-256 against its digest), written and fsynced there, {PARALLEL_REPOSITORIES} repositories at a time per
  sending member; `cp` moves it in the kernel, unencrypted and unhashed.
- On top of its bytes, every blob costs {per_blob * 1000:.2f} ms of CPU: it is one `PUT .../import/blob`
  request member to member over HTTPS (parsed by aiohttp and hypercorn, the client certificate checked
  against the cluster CA on each request), an fsync, `utime` and rename at the new owner, and at publish
  a link into the repository and a read of the blob (the publish reads every referenced blob whole to
  find manifests among them). With {SMALL_LAYER >> 10} KiB layers the copy made
  {small.moved_blobs / small_copy:,.0f} blobs/s, {_mbps(small.moved_bytes, small_copy):,.0f} MB/s.
- Under load the same change took {loaded.change.whole:.1f} s instead of {alone.change.whole:.1f} s: the
  readers and writers alone kept {load_cores:.2f} cores busy before the change (members and clients), on the
  same {cores} cores the copy needs.
- Writes wait only from their member's freeze to the switch, never during the bulk copy: the longest
  wait was {longest:.2f} s ({len(waited)} writes waited), about the freeze step plus a retry interval.
{broken}- Pulls are served throughout, by the old owner until the switch: the median pull took
  {during[0] / before[0]:.1f} x as long during the change as before it, p99 {during[2] / before[2]:.1f} x, because the
  copy competes with them for the same cores, not because anything waits for the change.
"""


def plot(figures: Figures, path: Path) -> None:
    plt = pyplot()
    alone, loaded = figures.alone, figures.loaded
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), gridspec_kw={"width_ratios": [1.1, 1.1, 2]})
    # Time: each change by step, against cp.
    ax = axes[0]
    steps = (("copy", "tab:blue"), ("freeze", "tab:orange"), ("switch", "tab:green"))
    for x, run in enumerate((alone, loaded)):
        bottom = 0.0
        for step, color in steps:
            ax.bar(x, run.change.took(step), bottom=bottom, color=color, label=step if x == 0 else None)
            bottom += run.change.took(step)
    ax.bar(2, alone.cp_seconds, color="tab:gray", label="cp -a")
    ax.bar(2, alone.sync_seconds, bottom=alone.cp_seconds, color="silver", label="sync")
    ax.set_xticks([0, 1, 2], ["change\nalone", "change\nunder load", "cp -a\n(+ sync)"])
    ax.set_ylabel("seconds")
    ax.set_title(f"moving {alone.moved_bytes / MIB:,.0f} MiB")
    ax.legend(fontsize=8)
    # Pull latency, before and during: distribution.
    ax = axes[1]
    for name, pulls in windows(loaded).items():
        values = sorted(p.seconds * 1000 for p in pulls if p.ok)
        if values:
            ax.plot(values, [(i + 1) / len(values) for i in range(len(values))], label=f"{name} ({len(values)} pulls)")
    ax.set_xscale("log")
    ax.set_xlabel("pull latency, ms (log)")
    ax.set_ylabel("fraction of pulls")
    ax.set_title("pull latency (manifest + config blob), CDF")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    # Over time, under load: pulls, writes that waited, the steps.
    ax = axes[2]
    change = loaded.change
    zero = change.started
    assert loaded.load is not None
    for moves, color, label in ((False, "tab:cyan", "pull, staying repo"), (True, "tab:purple", "pull, moving repo")):
        points = [(p.started - zero, p.seconds * 1000) for p in loaded.load.pulls if p.ok and p.moves == moves]
        if points:
            ax.scatter(*zip(*points, strict=True), s=4, color=color, label=label)
    waits = [(w.first_refusal - zero, w.waited * 1000) for w in loaded.load.writes if w.first_refusal is not None]
    if waits:
        ax.scatter(*zip(*waits, strict=True), s=22, marker="x", color="tab:red", label="write's wait, from its 1st 503")
    for start, end, color in (
        (zero, change.marks["copy"], "tab:blue"),
        (change.marks["copy"], change.marks["freeze"], "tab:orange"),
        (change.marks["freeze"], change.marks["switch"], "tab:green"),
    ):
        ax.axvspan(start - zero, max(end, start + 0.1) - zero, color=color, alpha=0.12)
    ax.set_yscale("log")
    ax.set_xlabel("seconds from the start of the change (shaded: copy, freeze, switch)")
    ax.set_ylabel("ms (log)")
    ax.set_title("under load, over time")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    save_figure(fig, path)


# Running ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP end the run as Ctrl-C does, through every `finally` (members stopped, scratch removed)."""

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rebalance", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--gib",
        type=float,
        default=float(os.environ.get("BENCH_REBALANCE_GIB", "1")),
        help="GiB in the cluster before the change (env BENCH_REBALANCE_GIB; default 1)",
    )
    parser.add_argument("--before", type=float, default=15.0, help="seconds of load before the change (default 15)")
    parser.add_argument(
        "--ask-order",
        choices=("new-first", "index"),
        default="new-first",
        help="the order members are asked for each step: the joining member first (default), or by index, "
        "as tests/support/rebalance.py does",
    )
    parser.add_argument(
        "--quiet-wait", type=float, default=QUIET_WAIT, help="seconds to wait for other work on the machine to end"
    )
    parser.add_argument("--out", type=Path, default=DOCS, help="folder of the page and figure (default docs/)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    asked = [2, 0, 1] if args.ask_order == "new-first" else [0, 1, 2]
    with _stopped_by_signals(), tempfile.TemporaryDirectory(prefix="zot-rebalance-bench-") as tmp:
        figures = measure(Path(tmp), args.gib, args.before, asked, args.quiet_wait)
    args.out.mkdir(parents=True, exist_ok=True)
    report(figures, args.out, time.monotonic() - started)
    log(f"wrote {args.out / NAME}.md and .png in {time.monotonic() - started:.0f} s")
    assert figures.loaded.load is not None
    for problem in figures.loaded.load.failures[:10] + figures.alone.problems[:10] + figures.loaded.problems[:10]:
        log(f"problem: {problem}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
