"""Runs the app under hypercorn: workers, uvloop, TLS, graceful shutdown on SIGTERM."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

from hypercorn.config import Config as HypercornConfig
from hypercorn.run import run

from .config import LoadedConfig

log = logging.getLogger("zot_registry")


def default_workers() -> int:
    return int(os.environ.get("ZOT_REGISTRY_WORKERS", "0") or 0) or min(os.cpu_count() or 1, 4)


def hypercorn_config(loaded: LoadedConfig, workers: int) -> HypercornConfig:
    http = loaded.config.http
    host = http.address or "0.0.0.0"
    hc = HypercornConfig()
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
    hc.graceful_timeout = 30.0
    hc.keep_alive_timeout = 75.0
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    return hc


def serve(loaded: LoadedConfig, workers: int | None = None) -> int:
    workers = workers or default_workers()
    os.environ["ZOT_REGISTRY_CONFIG"] = str(loaded.path.absolute())
    metrics_dir = tempfile.mkdtemp(prefix="zot-registry-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    log.info("starting", extra={"address": loaded.config.http.address, "port": loaded.config.http.port,
                                "workers": workers, "root": loaded.config.storage.root_directory})
    try:
        return run(hypercorn_config(loaded, workers))
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
