"""Fixtures every suite may use: `start_registry`, registries started as processes and stopped after the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.ports import free_port
from tests.support.registry import RegistryProcess, registry_config


@pytest.fixture
def start_registry(tmp_path: Path) -> Iterator[Callable[..., RegistryProcess]]:
    """Factory: start `zot-registry serve` processes; all are stopped at the end of the test."""
    started: list[RegistryProcess] = []

    def start(
        host: str = "127.0.0.1",
        workers: int = 2,
        config: dict[str, Any] | None = None,
        name: str = "registry",
        **http: Any,
    ) -> RegistryProcess:
        folder = tmp_path / f"{name}-{len(started)}"
        folder.mkdir()
        port = free_port(host)
        cfg = config or registry_config(folder / "root", port, host, **http)
        proc = RegistryProcess(folder / "config.json", cfg, folder / "registry.log", workers=workers)
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()
