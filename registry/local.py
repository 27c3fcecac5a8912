"""`zot-registry local-cluster`: a whole scale-out cluster on one machine.

Member i listens on 127.0.0.(i+1) at the same port, as members on different hosts would; all share
one generated hash key, one CA and one certificate, and talk TLS to each other. Ctrl-C stops them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .certs import make_ca, make_server_cert
from .cluster.hashing import new_hash_key
from .console import say


@dataclass
class LocalCluster:
    folder: Path
    configs: list[Path]
    members: list[str]
    ca: Path | None


def member_address(index: int) -> str:
    if not 0 <= index < 254:
        raise ValueError("local-cluster supports 1 to 254 members")
    return f"127.0.0.{index + 1}"


def port_taken(hosts: Iterable[str], port: int) -> str | None:
    """The first of `hosts` where `port` cannot be bound (something listens there), else None.

    SO_REUSEADDR as hypercorn sets it, so sockets of a member that just stopped (TIME_WAIT) do not count.
    """
    for host in hosts:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                return host
    return None


def port_free_for_members(count: int, attempts: int = 50) -> int:
    """One port free on every member address (127.0.0.1 .. 127.0.0.N): members share a port, as on hosts."""
    for _ in range(attempts):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port_taken([member_address(i) for i in range(count)], port) is None:
            return port
    raise RuntimeError(f"no port free on all of 127.0.0.1 .. 127.0.0.{count}")


def start_member(config: Path, workers: int = 1, output: IO[bytes] | None = None,
                 own_session: bool = False) -> subprocess.Popen[bytes]:
    """`zot-registry serve CONFIG` as a child process, with this interpreter (no PATH lookup).

    `own_session` keeps a terminal's Ctrl-C away from the member, so its supervisor alone decides
    when and in which order members stop.
    """
    return subprocess.Popen([sys.executable, "-m", "zot_registry.cli", "serve", str(config), "--workers", str(workers)],
                            stdout=output, stderr=subprocess.STDOUT if output else None,
                            start_new_session=own_session)


def member_ready(url: str, ca: Path | None, timeout: float = 2.0) -> bool:
    """True when the member at `url` answers its readiness probe with 200."""
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=timeout, context=context) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_members(processes: Iterable[subprocess.Popen[bytes]], timeout: float = 40.0,
                 process_groups: bool = False) -> list[int]:
    """SIGTERM every member at once (hypercorn's graceful shutdown), SIGKILL what is left after `timeout`.

    `process_groups` (members started with `own_session`): then each member's hypercorn workers are
    in its process group, and whatever of the group outlives the member (a worker orphaned when the
    member was killed) is stopped too, so nothing is left holding the port.
    """
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + timeout
    codes: list[int] = []
    for process in processes:
        try:
            codes.append(process.wait(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            process.kill()
            codes.append(process.wait())
    if process_groups:
        groups = [p.pid for p in processes if _group_alive(p.pid)]
        for pgid in groups:
            os.killpg(pgid, signal.SIGTERM)
        while groups and time.monotonic() < deadline:
            time.sleep(0.1)
            groups = [g for g in groups if _group_alive(g)]
        for pgid in groups:
            os.killpg(pgid, signal.SIGKILL)
    return codes


def write_cluster(folder: Path, members: int, port: int, tls: bool = True, htpasswd: Path | None = None,
                  hash_key: str | None = None, log_level: str = "info",
                  extra: dict[str, Any] | None = None) -> LocalCluster:
    """Configs, key and certificates of an N-member cluster in `folder` (kept between runs)."""
    folder = folder.absolute()
    folder.mkdir(parents=True, exist_ok=True)
    addresses = [member_address(i) for i in range(members)]
    key_file = folder / "hashkey"
    if hash_key is None:
        if not key_file.exists():
            key_file.write_text(new_hash_key())
        hash_key = key_file.read_text().strip()
    ca_path: Path | None = None
    http_tls: dict[str, str] | None = None
    if tls:
        ca = make_ca("zot local cluster CA")
        server = make_server_cert(ca, ["localhost", *addresses])
        ca_path = folder / "ca.crt"
        ca_path.write_bytes(ca.cert_pem)
        (folder / "server.crt").write_bytes(server.cert_pem)
        (folder / "server.key").write_bytes(server.key_pem)
        (folder / "server.key").chmod(0o600)
        http_tls = {"cert": str(folder / "server.crt"), "key": str(folder / "server.key")}
    member_list = [f"{address}:{port}" for address in addresses]
    configs: list[Path] = []
    for index, address in enumerate(addresses):
        http: dict[str, Any] = {"address": address, "port": str(port)}
        if http_tls:
            http["tls"] = http_tls
        if htpasswd:
            http["auth"] = {"htpasswd": {"path": str(htpasswd.absolute())}}
        cluster: dict[str, Any] = {"members": member_list, "hashKey": hash_key}
        if ca_path:
            cluster["tls"] = {"cacert": str(ca_path)}
        config = {
            "distSpecVersion": "1.1.1",
            "storage": {"rootDirectory": str(folder / f"member-{index}"), "dedupe": True},
            "http": http,
            "log": {"level": log_level, "output": str(folder / f"member-{index}.log")},
            "cluster": cluster,
            **(extra or {}),
        }
        path = folder / f"member-{index}.json"
        path.write_text(json.dumps(config, indent=2) + "\n")
        configs.append(path)
    return LocalCluster(folder, configs, member_list, ca_path)


def run_local_cluster(folder: Path, members: int, port: int, tls: bool, htpasswd: Path | None,
                      workers: int) -> int:
    cluster = write_cluster(folder, members, port, tls=tls, htpasswd=htpasswd)
    processes = [start_member(config, workers) for config in cluster.configs]
    scheme = "https" if tls else "http"
    say(f"local cluster of {members} in {cluster.folder} (logs: member-N.log)")
    for member in cluster.members:
        say(f"  {scheme}://{member}")
    if cluster.ca:
        say(f"CA: {cluster.ca}  (e.g. oras push --ca-file {cluster.ca} {cluster.members[0]}/demo:v1 FILE)")
    say("Ctrl-C stops all members")
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    # A closed terminal sends SIGHUP: a stop like Ctrl-C, so members never outlive their supervisor.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    while not stopping and all(p.poll() is None for p in processes):
        time.sleep(0.2)
    codes = stop_members(processes)
    failed = [i for i, code in enumerate(codes) if code not in (0, -signal.SIGTERM)]
    if failed and not stopping:
        say(f"member(s) {failed} exited: see their logs in {cluster.folder}", error=True)
        return 1
    say("all members stopped")
    return 0
