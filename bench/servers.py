"""Start and stop the registries under measure on loopback, and account for their CPU time.

- ours: `.venv/bin/zot-registry serve CONFIG --workers N` (hypercorn, uvloop worker class);
- distribution 2.8.2: Debian's `/usr/bin/docker-registry serve CONFIG`;
- distribution 3.x: `.tools/bin/distribution3 serve CONFIG` (hack/install-go-tools.sh);
- zot: `$ZOT_BIN serve CONFIG`, when ZOT_BIN names a zot binary (built beside the project, never
  part of it); the same zot config as ours;
- the stack's ceiling: `python -m bench.ceiling_server CONFIG --workers N`, hypercorn as ours runs it
  with an app that only hashes what it receives and answers constants (bench/ceiling_app.py).

Each gets a fresh temporary root, a free 127.0.0.1 port, its log in a file, and the mode's access
(access.py: plain, TLS, TLS + htpasswd); `running()` removes all of it again, error or not.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
import psutil
from zot_registry.local.configs import TlsFiles

from .access import PLAIN, Access
from .common import REPO_ROOT, TOOLS_BIN, free_port, registry_config

OURS_BIN = REPO_ROOT / ".venv" / "bin" / "zot-registry"
DISTRIBUTION_BIN = Path("/usr/bin/docker-registry")
DISTRIBUTION3_BIN = TOOLS_BIN / "distribution3"

Kind = Literal["ours", "distribution", "distribution3", "zot", "ceiling"]
PEER_TITLES = {
    "distribution": "distribution 2.8",
    "distribution3": "distribution 3",
    "zot": "zot",
    "ceiling": "hypercorn alone",
}
# Kinds that run on our stack, with our worker processes: started with --workers N.
OUR_STACK: tuple[Kind, ...] = ("ours", "ceiling")


def zot_bin() -> Path | None:
    """The zot binary ZOT_BIN names, or None when it is unset (zot's rows are left out then)."""
    value = os.environ.get("ZOT_BIN", "").strip()
    if not value:
        return None
    path = Path(value)
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise SystemExit(f"ZOT_BIN={value}: not an executable file")
    return path


def binary_of(kind: Kind) -> Path:
    if kind in OUR_STACK:
        return OURS_BIN
    if kind == "distribution":
        return DISTRIBUTION_BIN
    if kind == "distribution3":
        return DISTRIBUTION3_BIN
    found = zot_bin()
    if found is None:
        raise SystemExit("zot: set ZOT_BIN to a zot binary")
    return found


START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


@dataclass
class Server:
    kind: Kind
    workers: int | None
    port: int
    workdir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    access: Access = PLAIN

    @property
    def label(self) -> str:
        if self.kind != "ours":
            return PEER_TITLES[self.kind]
        return f"ours ({self.workers} worker{'s' if self.workers != 1 else ''})"

    @property
    def base_url(self) -> str:
        return f"{self.access.scheme}://127.0.0.1:{self.port}"

    def processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and all its children so far (reaped children included)."""
        total = 0.0
        for index, proc in enumerate(self.processes()):
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
            if index == 0:
                total += times.children_user + times.children_system
        return total

    def rss_bytes(self) -> int:
        total = 0
        for proc in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += proc.memory_info().rss
        return total

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM (graceful), then SIGKILL to the server's own process group if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_TIMEOUT)
        # Workers live in the process group the server was started in (start_new_session=True).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_TIMEOUT)


def zot_config(workdir: Path, port: int, log_level: str, access: Access) -> Path:
    """Ours and zot read the same config."""
    tls = TlsFiles(access.cert, access.key) if access.cert and access.key else None
    return registry_config(
        workdir / "config.json", workdir / "data", port, log_level=log_level, tls=tls, htpasswd=access.htpasswd
    )


def _distribution_access(access: Access) -> str:
    """The YAML lines of distribution's http.tls and auth.htpasswd (the same in 2.8 and 3.x)."""
    text = ""
    if access.cert and access.key:
        text += f"  tls:\n    certificate: {access.cert}\n    key: {access.key}\n"
    if access.htpasswd:
        text += f"auth:\n  htpasswd:\n    realm: zot-bench\n    path: {access.htpasswd}\n"
    return text


def _distribution_config(workdir: Path, port: int, log_level: str, access: Access) -> Path:
    # One log line per request at info ("response completed"), like ours; the Apache-style access
    # log would be a second line per request, so it is off. Upstream's default config keeps blob
    # descriptors in memory, which is what a fair comparison uses (hack/README.md).
    text = f"""version: 0.1
log:
  level: {log_level}
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {workdir / "data"}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:{port}
  secret: local-benchmark-not-a-secret
"""
    text += _distribution_access(access)
    path = workdir / "config.yml"
    path.write_text(text)
    return path


# distribution 3 traces every request and, by default, posts the traces to https://localhost:4318
# (logging an error per failed export): no exporter, as a registry measured on its own.
PEER_ENV = {"OTEL_TRACES_EXPORTER": "none"}


def _spawn(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **PEER_ENV},
        )


def _wait_ready(server: Server, deadline: float) -> None:
    with httpx.Client(timeout=2.0, **server.access.httpx_args()) as client:
        while True:
            if server.process.poll() is not None:
                raise RuntimeError(f"{server.label} exited with {server.process.returncode}:\n{server.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{server.base_url}/v2/").status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server.label} did not answer /v2/ in {START_TIMEOUT:.0f} s:\n{server.log_tail()}")
            time.sleep(0.1)
    if server.kind in OUR_STACK and server.workers:
        # The listening socket is shared, so the first 200 may come from the first worker alone:
        # wait until every worker has said "Running on" (hypercorn's info line), within the deadline.
        while time.monotonic() < deadline:
            if server.log_path.read_text(errors="replace").count("Running on") >= server.workers:
                return
            time.sleep(0.1)
        time.sleep(1.0)


def start(
    kind: Kind, workdir: Path, workers: int | None = None, log_level: str = "info", access: Access | None = None
) -> Server:
    access = access or PLAIN
    port = free_port()
    log_path = workdir / f"{kind}.log"
    if kind in ("ours", "zot", "ceiling"):
        config = zot_config(workdir, port, log_level, access)
    else:
        config = _distribution_config(workdir, port, log_level, access)
    if kind == "ceiling":
        argv = [sys.executable, "-m", "bench.ceiling_server", str(config)]
    else:
        argv = [str(binary_of(kind)), "serve", str(config)]
    if kind in OUR_STACK and workers:
        argv += ["--workers", str(workers)]
    process = _spawn(argv, log_path)
    server = Server(kind, workers if kind in OUR_STACK else None, port, workdir, log_path, process, access)
    try:
        _wait_ready(server, time.monotonic() + START_TIMEOUT)
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def running(
    kind: Kind, workers: int | None = None, log_level: str = "info", access: Access | None = None
) -> Iterator[Server]:
    """A started server in a fresh temporary directory; stopped and removed on the way out."""
    workdir = Path(tempfile.mkdtemp(prefix=f"zot-bench-{kind}-"))
    server: Server | None = None
    try:
        server = start(kind, workdir, workers, log_level, access)
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


class MachineLoad:
    """CPU used on the machine by anything but this benchmark, its clients and the server under test.

    Other people's test runs on a shared 2-core machine show up here; the report prints it per run.
    """

    def __init__(self, server: Server) -> None:
        self._server = server
        self._start = self._sample()
        self._written = self._disk_written()

    @staticmethod
    def _disk_written() -> int:
        counters = psutil.disk_io_counters()
        return int(counters.write_bytes) if counters is not None else 0

    def disk_written_mb(self) -> float:
        """MB written to the machine's disks since construction, by everyone (this run's pushes included)."""
        return (self._disk_written() - self._written) / 1e6

    def _sample(self) -> tuple[float, float, float, float]:
        system = psutil.cpu_times()
        busy = system.user + system.system + sum(getattr(system, k, 0.0) for k in ("nice", "irq", "softirq"))
        own = os.times()
        mine = own.user + own.system + own.children_user + own.children_system
        return time.monotonic(), busy, mine, self._server.cpu_seconds()

    def foreign_cores(self) -> float:
        """Average number of cores busy with other work since construction."""
        now = self._sample()
        wall = now[0] - self._start[0]
        if wall <= 0:
            return 0.0
        foreign = (now[1] - self._start[1]) - (now[2] - self._start[2]) - (now[3] - self._start[3])
        return max(foreign, 0.0) / wall


def busy_cores(seconds: float = 2.0) -> float:
    """Average number of busy cores on the whole machine over the next `seconds`."""
    before = psutil.cpu_times()
    time.sleep(seconds)
    after = psutil.cpu_times()
    busy = 0.0
    for key in ("user", "system", "nice", "irq", "softirq"):
        busy += getattr(after, key, 0.0) - getattr(before, key, 0.0)
    return busy / seconds
