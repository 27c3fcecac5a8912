"""Operating the registry: TLS, JSON logs at the configured level, graceful shutdown."""

from __future__ import annotations

import json
import os
import signal
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support.certs import make_certs
from tests.support.images import make_image, push_image, sha256
from tests.support.ports import free_port
from tests.support.registry import RegistryProcess, registry_config
from tests.support.streams import trickle


def test_tls(start_registry: Callable[..., RegistryProcess], tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs", ["127.0.0.1", "localhost"])
    registry = start_registry(tls={"cert": str(certs.cert), "key": str(certs.key)})
    assert registry.url.startswith("https://")
    with httpx.Client(base_url=registry.url, verify=ssl.create_default_context(cafile=str(certs.ca))) as client:
        assert client.get("/v2/").status_code == 200
        assert push_image(client, "secure", make_image("tls"), tag="v1").status_code == 201
    with httpx.Client(base_url=registry.url.replace("https", "http")) as plain:
        try:
            plain.get("/v2/")
            raise AssertionError("plain HTTP must not be served on the TLS port")
        except httpx.HTTPError:
            pass


def test_logs_are_json_at_the_configured_level(start_registry: Callable[..., RegistryProcess], tmp_path: Path) -> None:
    info_log, error_log = tmp_path / "info.log", tmp_path / "error.log"
    for level, output in (("info", info_log), ("error", error_log)):
        config = registry_config(tmp_path / f"root-{level}", free_port())
        config["log"] = {"level": level, "output": str(output)}
        registry = start_registry(config=config)
        httpx.get(f"{registry.url}/v2/nothing/tags/list")
    time.sleep(0.5)
    entries = [json.loads(line) for line in info_log.read_text().splitlines()]
    requests = [e for e in entries if e["message"] == "request"]
    assert any(e["path"] == "/v2/nothing/tags/list" and e["status"] == "404" and e["level"] == "info" for e in requests)
    assert all({"time", "level", "message"} <= e.keys() for e in entries)
    assert not [line for line in error_log.read_text().splitlines() if '"request"' in line]


def test_sigterm_finishes_requests_in_flight(start_registry: Callable[..., RegistryProcess]) -> None:
    registry = start_registry(workers=1)
    assert registry.process is not None
    blob = os.urandom(8 << 20)
    sent_first = threading.Event()

    result: dict[str, httpx.Response] = {}

    def upload() -> None:
        with httpx.Client(base_url=registry.url, timeout=60) as client:
            result["put"] = client.post(
                "/v2/graceful/blobs/uploads/",
                params={"digest": sha256(blob)},
                content=trickle(blob, sent_first, piece=1 << 20, pause=0.25),
            )

    worker = threading.Thread(target=upload)
    worker.start()
    assert sent_first.wait(10)
    os.kill(registry.process.pid, signal.SIGTERM)
    worker.join(60)
    assert result["put"].status_code == 201
    assert registry.process.wait(30) == 0
    stored = registry.root / "graceful" / "blobs" / "sha256" / sha256(blob)[7:]
    assert stored.read_bytes() == blob
