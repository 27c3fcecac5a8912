"""The module's 3-member cluster (TLS, basic auth), started once and stopped at the end; and a fleet
of up to five members for the membership-change tests, one per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cluster import ClusterUnderTest, start_cluster
from tests.support.local_fleet import Fleet


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterUnderTest]:
    cluster = start_cluster(tmp_path_factory.mktemp("cluster3"))
    yield cluster
    cluster.stop()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    made = Fleet(tmp_path / "fleet")
    try:
        yield made
    finally:
        made.stop()
