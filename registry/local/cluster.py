"""`zot-registry local-cluster`: a whole scale-out cluster on one machine.

Member i listens on 127.0.0.(i+1) at the same port, as members on different hosts would; all share
one generated hash key, one CA and one certificate, and talk TLS to each other. Ctrl-C stops them.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..certs import make_ca, make_server_cert
from ..cluster.hashing import new_hash_key
from ..console import say
from .addresses import member_address
from .configs import ClusterSettings, TlsFiles, member_config, write_config
from .processes import start_member, stop_members


@dataclass
class LocalCluster:
    folder: Path
    configs: list[Path]
    members: list[str]
    ca: Path | None


def write_cluster(
    folder: Path,
    members: int,
    port: int,
    tls: bool = True,
    htpasswd: Path | None = None,
    hash_key: str | None = None,
    log_level: str = "info",
    extra: dict[str, Any] | None = None,
) -> LocalCluster:
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
    tls_files: TlsFiles | None = None
    if tls:
        ca = make_ca("zot local cluster CA")
        server = make_server_cert(ca, ["localhost", *addresses])
        ca_path = folder / "ca.crt"
        ca_path.write_bytes(ca.cert_pem)
        (folder / "server.crt").write_bytes(server.cert_pem)
        (folder / "server.key").write_bytes(server.key_pem)
        (folder / "server.key").chmod(0o600)
        tls_files = TlsFiles(folder / "server.crt", folder / "server.key")
    member_list = [f"{address}:{port}" for address in addresses]
    settings = ClusterSettings(member_list, hash_key, ca_path)
    configs: list[Path] = []
    for index, address in enumerate(addresses):
        config = member_config(
            folder / f"member-{index}",
            port,
            address,
            gc=None,
            tls=tls_files,
            htpasswd=htpasswd.absolute() if htpasswd else None,
            log_level=log_level,
            log_output=folder / f"member-{index}.log",
            cluster=settings,
        )
        configs.append(write_config(folder / f"member-{index}.json", {**config, **(extra or {})}))
    return LocalCluster(folder, configs, member_list, ca_path)


def run_local_cluster(folder: Path, members: int, port: int, tls: bool, htpasswd: Path | None, workers: int) -> int:
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
