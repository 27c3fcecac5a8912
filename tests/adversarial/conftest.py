"""The adversarial tests' fixtures: `site` (registries with a sentinel around their root) for the storage
ones; `start_with_env` and `registry` (registries with environment variables) for the HTTP ones;
`cluster`, `tls` and `repo` (a 3-member cluster, one per module, and a repository on it) for the
cluster ones."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.checks import Surroundings, assert_no_traceback
from tests.support.cluster import ClusterUnderTest, start_cluster
from tests.support.cluster_corpus import IDLE_TIMEOUT, LINGER, OWNER, Repo, client_for
from tests.support.http_corpus import FAST_ENV
from tests.support.images import make_image, push_image, sha256
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


@pytest.fixture
def start_with_env(tmp_path: Path) -> Iterator[Callable[..., RegistryProcess]]:
    """Like start_registry, with environment variables for the registry process."""
    started: list[RegistryProcess] = []

    def start(env: dict[str, str] | None = None, workers: int = 1, **http: Any) -> RegistryProcess:
        folder = tmp_path / f"registry-{len(started)}"
        folder.mkdir()
        port = free_port()
        proc = RegistryProcess(
            folder / "config.json",
            registry_config(folder / "root", port, **http),
            folder / "registry.log",
            workers=workers,
            env=env or {},
        )
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()
        assert_no_traceback(proc.log_path.read_text(), f"log of {proc.hostport}")


@pytest.fixture
def registry(start_with_env: Callable[..., RegistryProcess]) -> RegistryProcess:
    return start_with_env(FAST_ENV)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterUnderTest]:
    env = {"ZOT_HTTP_BODY_IDLE_TIMEOUT": str(IDLE_TIMEOUT), "ZOT_HTTP_LINGER_SECONDS": str(LINGER)}
    started = start_cluster(tmp_path_factory.mktemp("corpus"), env=env)
    yield started
    started.stop()
    for member in started.members:
        assert_no_traceback(member.log_path.read_text(), f"log of {member.hostport}")


@pytest.fixture(scope="module")
def tls(cluster: ClusterUnderTest) -> ssl.SSLContext:
    assert cluster.ca is not None
    return ssl.create_default_context(cafile=str(cluster.ca))


@pytest.fixture(scope="module")
def repo(cluster: ClusterUnderTest, tls: ssl.SSLContext) -> Repo:
    name = cluster.repo_owned_by(OWNER, "corpus/r")
    image = make_image(name)
    blob = b"0123456789" * 100
    with client_for(cluster, OWNER, tls) as c:
        assert push_image(c, name, image, tag="v1").status_code == 201
        assert c.post(f"/v2/{name}/blobs/uploads/", params={"digest": sha256(blob)}, content=blob).status_code == 201
    return Repo(name, blob, [image.config, *image.layers], image.manifest)
