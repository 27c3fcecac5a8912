"""Fixtures every suite may use: `start_registry`, registries started as processes and stopped after the test.
And the order in which modules run: the longest first."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.ports import free_port
from tests.support.registry import RegistryProcess, registry_config

# The modules that take longest (a minute or more of `--durations`), longest first. `make test` hands
# whole modules to its workers in collection order; one of these left for last kept a single worker
# busy for minutes while the other idled.
LONGEST_MODULES = (
    "tests/node/test_story.py",
    "tests/operator/test_rebalance_in_place.py",
    "tests/cluster/test_rebalance.py",
    "tests/storage/test_s3_registry.py",
    "tests/storage/test_zot_examples_on_s3.py",
    "tests/operator/test_operator.py",
    "tests/storage/test_shared_cluster.py",
    "tests/operator/test_local_mode.py",
    "tests/operator/test_operator_auth.py",
    "tests/node/test_node.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest modules first, each module's tests in their own order (a stable sort)."""

    def rank(item: pytest.Item) -> int:
        module = item.nodeid.split("::", 1)[0]
        return LONGEST_MODULES.index(module) if module in LONGEST_MODULES else len(LONGEST_MODULES)

    items.sort(key=rank)


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
