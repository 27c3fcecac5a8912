"""The registry suites' `registry` (one `zot-registry serve` process) and `client` (an httpx client of it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.support.registry import RegistryProcess


@pytest.fixture
def registry(start_registry: Callable[..., RegistryProcess]) -> RegistryProcess:
    return start_registry()


@pytest.fixture
def client(registry: RegistryProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=registry.url, timeout=30) as c:
        yield c
