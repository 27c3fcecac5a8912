"""The adversarial storage tests' `site` fixture: registries with a sentinel around their root."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.checks import Surroundings
from tests.support.ports import free_port
from tests.support.registry import RegistryProcess, registry_config
from tests.support.sites import Site, SiteFactory


@pytest.fixture
def site(start_registry: Callable[..., RegistryProcess], tmp_path: Path) -> Iterator[SiteFactory]:
    """Factory: a registry whose root is <folder>/root, with a sentinel beside it in <folder>/outside."""
    clients: list[httpx.Client] = []

    def make(
        dedupe: bool = True,
        prepare: Callable[[Path], None] | None = None,
        workers: int = 2,
        before_start: Callable[[Path], None] | None = None,
        **storage: Any,
    ) -> Site:
        folder = tmp_path / f"site-{len(clients)}"
        root = folder / "root"
        root.mkdir(parents=True)
        if prepare is not None:
            prepare(root)
        surroundings = Surroundings.around(folder, root)
        if before_start is not None:
            before_start(root)
        config = registry_config(root, free_port())
        config["storage"].update({"dedupe": dedupe, **storage})
        registry = start_registry(config=config, workers=workers, name=folder.name)
        client = httpx.Client(base_url=registry.url, timeout=60)
        clients.append(client)
        return Site(registry, root, surroundings, client)

    yield make
    for client in clients:
        client.close()
