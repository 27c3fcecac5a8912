"""Runs the app under hypercorn: workers (started and stopped by supervisor.py), uvloop, TLS, zot's
read and write timeouts (hypercorn_patches.py), graceful shutdown on SIGTERM."""

from __future__ import annotations

import logging
import os
import shutil
import ssl
import sys
import tempfile

from hypercorn.config import Config as HypercornConfig

from .config import LoadedConfig
from .hypercorn_patches import TimeoutConfig
from .supervisor import StartError, Supervisor, bind_sockets
from .tuning import env_seconds

log = logging.getLogger("zot_registry")


def default_workers() -> int:
    """ZOT_REGISTRY_WORKERS when set (0: the default), else the CPU count, at most 4.
    Raises StartError for a value that is not a count."""
    text = os.environ.get("ZOT_REGISTRY_WORKERS", "").strip()
    if text and not text.isdigit():
        raise StartError(f"ZOT_REGISTRY_WORKERS must be a number of worker processes, got {text!r}")
    return int(text or 0) or min(os.cpu_count() or 1, 4)


def client_authorities(loaded: LoadedConfig) -> list[str]:
    """The CA files whose client certificates the server verifies: the cluster CA's, http.tls.cacert."""
    cluster, tls = loaded.config.cluster, loaded.config.http.tls
    found = [cluster.tls.cacert] if cluster is not None and cluster.tls is not None and cluster.tls.cacert else []
    if tls is not None and tls.cacert and tls.cacert not in found:
        found.append(tls.cacert)
    return found


def trust_bundle(files: list[str], folder: str) -> str:
    """One file of CA certificates for hypercorn's ca_certs, which takes one: `files` itself, or their concatenation."""
    if len(files) == 1:
        return files[0]
    path = os.path.join(folder, "client-authorities.pem")
    with open(path, "wb") as bundle:
        for name in files:
            with open(name, "rb") as part:
                bundle.write(part.read().rstrip(b"\n") + b"\n")
    return path


def hypercorn_config(loaded: LoadedConfig, workers: int, bundle_dir: str | None = None) -> HypercornConfig:
    http = loaded.config.http
    host = http.address or "0.0.0.0"
    hc = TimeoutConfig()
    hc.bind = [f"[{host}]:{http.port}" if ":" in host else f"{host}:{http.port}"]
    hc.application_path = "zot_registry.asgi:app"
    hc.workers = workers
    try:
        import uvloop  # noqa: F401

        hc.worker_class = os.environ.get("ZOT_REGISTRY_WORKER_CLASS", "uvloop")
    except ImportError:
        hc.worker_class = "asyncio"
    if http.tls is not None:
        hc.certfile = http.tls.cert
        hc.keyfile = http.tls.key
        # HTTP/1.1 only: hypercorn's HTTP/2 is several times slower for large bodies here and lost
        # streams under the conformance suite's load (KeyError in its stream table, GOAWAY).
        hc.alpn_protocols = ["http/1.1"]
        authorities = client_authorities(loaded)
        if authorities:
            # Members and the operator present certificates of the cluster CA to the control API
            # (cluster/control.py checks who signed them); with mTLS (http.tls.cacert) users present
            # theirs (authn/). Optional, as zot's VerifyClientCertIfGiven: a client without one is
            # anonymous, or logs in otherwise; one that presents a certificate no CA here issued
            # fails the handshake.
            hc.ca_certs = trust_bundle(authorities, bundle_dir or tempfile.mkdtemp(prefix="zot-registry-"))
            hc.verify_mode = ssl.CERT_OPTIONAL
    hc.graceful_timeout = 30.0
    # zot's http.readTimeout / writeTimeout; what they bound here (progress, not deadlines) is in
    # hypercorn_patches.py. Unset: hypercorn's own setting stays (no read timeout by default).
    if http.read_timeout is not None:
        hc.read_timeout = http.read_timeout or None  # type: ignore[assignment]  # float seconds work
    if http.write_timeout is not None:
        hc.write_timeout = http.write_timeout or None
    # An idle keep-alive connection is closed after this long (idle_timer.py); env
    # ZOT_HTTP_KEEP_ALIVE_TIMEOUT, as the other connection bounds, for tests and tuning.
    hc.keep_alive_timeout = env_seconds("ZOT_HTTP_KEEP_ALIVE_TIMEOUT", 75.0)
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    return hc


def app_modules(loaded: LoadedConfig) -> tuple[str, ...]:
    """What the app of this config is made of, for the parent to import once before forking workers."""
    return ("zot_registry.app", *(["zot_registry.cluster.serving"] if loaded.config.is_member else []))


def serve(loaded: LoadedConfig, workers: int | None = None) -> int:
    """Serve until stopped: 0 after SIGINT/SIGTERM, 1 (with one line on stderr) when it cannot start
    or a worker fails. The config and its files have been checked (preflight) by the caller."""
    # The workers' shared folder: prometheus's multiprocess files, the trust bundle (trust_bundle).
    shared_dir = tempfile.mkdtemp(prefix="zot-registry-")
    try:
        workers = workers or default_workers()
        config = hypercorn_config(loaded, workers, shared_dir)
        if config.worker_class not in ("uvloop", "asyncio"):
            raise StartError(f"ZOT_REGISTRY_WORKER_CLASS must be uvloop or asyncio, got {config.worker_class!r}")
        sockets = bind_sockets(config)
    except StartError as err:
        print(f"error: {err}", file=sys.stderr)
        shutil.rmtree(shared_dir, ignore_errors=True)
        return 1
    os.environ["ZOT_REGISTRY_CONFIG"] = str(loaded.path.absolute())
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared_dir
    log.info(
        "starting",
        extra={
            "address": loaded.config.http.address,
            "port": loaded.config.http.port,
            "workers": workers,
            "root": loaded.config.storage.root_directory,
        },
    )
    try:
        debug = loaded.config.log.level == "debug"
        return Supervisor(config, sockets, workers, debug, preloaded=app_modules(loaded)).run()
    finally:
        for sock in [*sockets.secure_sockets, *sockets.insecure_sockets]:
            sock.close()
        shutil.rmtree(shared_dir, ignore_errors=True)
