"""The module's 3-member cluster (TLS, basic auth), started once and stopped at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.cluster import ClusterUnderTest, start_cluster


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterUnderTest]:
    cluster = start_cluster(tmp_path_factory.mktemp("cluster3"))
    yield cluster
    cluster.stop()
