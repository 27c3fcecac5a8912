"""The shared caches against real servers: redis-server and dynalite (DynamoDB), plus the local one.

What members rely on: no lost update when many write at once, a lock that excludes and expires,
and a clean CacheUnavailable (503) when the server is gone.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from zot_registry.cache import open_cache
from zot_registry.cache.base import Cache
from zot_registry.cache.dynamodb import DynamoDBCache
from zot_registry.cache.local import LocalCache
from zot_registry.cache.redis import RedisCache
from zot_registry.config import parse_config
from zot_registry.errors import CacheUnavailable

from tests.support.peers import Peer
from tests.support.ports import free_port
from tests.support.shared_cluster import load_example

DRIVERS = ["redis", "dynamodb", "local"]


@pytest.fixture
def dynamo_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # dynalite checks that requests are signed, not with which key.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")


@pytest.fixture
def make_cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Cache]]:
    """Factory for a cache of the parametrized driver; each call is a separate client (another member)."""
    driver: str = request.param
    peer: Peer | None = None
    if driver == "redis":
        peer = request.getfixturevalue("redis_server")
    elif driver == "dynamodb":
        request.getfixturevalue("dynamo_credentials")
        peer = request.getfixturevalue("dynamodb_server")

    def make(prefix: str = "zot") -> Cache:
        if driver == "redis":
            assert peer is not None
            return RedisCache.from_driver({"url": f"redis://{peer.host}:{peer.port}", "keyprefix": prefix})
        if driver == "dynamodb":
            assert peer is not None
            return DynamoDBCache.from_driver(
                {
                    "endpoint": peer.url,
                    "region": "us-east-1",
                    "cachetablename": f"{prefix}Blobs",
                    "repometatablename": f"{prefix}Repos",
                }
            )
        return LocalCache(tmp_path / prefix)

    yield make


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@pytest.mark.parametrize("make_cache", DRIVERS, indirect=True)
def test_concurrent_holders_lose_no_update(make_cache: Callable[..., Cache]) -> None:
    async def scenario() -> tuple[set[str], int, set[str]]:
        members = [make_cache(), make_cache()]
        digest = "sha256:" + "a" * 64
        await asyncio.gather(*(members[i % 2].add_blob_holder(digest, f"repo-{i}") for i in range(50)))
        after_add = await members[0].blob_holders(digest)
        remaining = await asyncio.gather(
            *(members[i % 2].remove_blob_holder(digest, f"repo-{i}") for i in range(0, 50, 2))
        )
        after_remove = await members[1].blob_holders(digest)
        for member in members:
            await member.close()
        return after_add, min(remaining), after_remove

    after_add, least_remaining, after_remove = run(scenario())
    assert after_add == {f"repo-{i}" for i in range(50)}
    assert after_remove == {f"repo-{i}" for i in range(1, 50, 2)}
    assert least_remaining == 25


def test_a_new_local_cache_takes_concurrent_first_writes(tmp_path: Path) -> None:
    """The first writes to a new cache file, from two holders at once (a member's workers), all land:
    setting up the file could be refused "database is locked" without waiting (CI saw it)."""

    async def first_writes(folder: Path) -> list[BaseException]:
        members = [LocalCache(folder), LocalCache(folder)]
        digest = "sha256:" + "b" * 64
        added = [members[i % 2].add_blob_holder(digest, f"repo-{i}") for i in range(50)]
        answers = await asyncio.gather(*added, return_exceptions=True)
        return [a for a in answers if isinstance(a, BaseException)]

    for trial in range(40):  # before the fix, about 1 new cache in 15 refused a write
        assert run(first_writes(tmp_path / f"cache-{trial}")) == [], f"new cache {trial}"


@pytest.mark.parametrize("make_cache", DRIVERS, indirect=True)
def test_repository_metadata_and_catalog(make_cache: Callable[..., Cache]) -> None:
    async def scenario() -> tuple[Any, ...]:
        writer, reader, other = make_cache(), make_cache(), make_cache("other")
        for name in ("zeta/app", "alpha", "mid/x"):
            await writer.put_repo_meta(name, {"version": name, "updated": 1.5})
        await writer.delete_repo_meta("mid/x")
        found = (
            await reader.repositories(),
            await reader.get_repo_meta("alpha"),
            await reader.get_repo_meta("mid/x"),
            await other.repositories(),
        )
        for cache in (writer, reader, other):
            await cache.close()
        return found

    catalog, meta, deleted, isolated = run(scenario())
    assert catalog == ["alpha", "zeta/app"]
    assert meta == {"version": "alpha", "updated": 1.5}
    assert deleted is None
    assert isolated == []  # another key prefix (or table) is another cache


@pytest.mark.parametrize("make_cache", DRIVERS, indirect=True)
def test_lock_excludes_other_members(make_cache: Callable[..., Cache]) -> None:
    counter = {"value": 0}

    async def increment(cache: Cache) -> None:
        for _ in range(5):
            async with cache.lock("index:counter"):
                seen = counter["value"]
                await asyncio.sleep(0.005)  # another member runs here, and must be waiting
                counter["value"] = seen + 1

    async def scenario() -> None:
        members = [make_cache() for _ in range(4)]
        await asyncio.gather(*(increment(member) for member in members))
        for member in members:
            await member.close()

    run(scenario())
    assert counter["value"] == 20


@pytest.mark.parametrize("make_cache", ["redis", "dynamodb"], indirect=True)
def test_a_lock_whose_holder_died_expires(make_cache: Callable[..., Cache]) -> None:
    async def scenario() -> float:
        dead, alive = make_cache(), make_cache()
        holder = dead.lock("index:orphan", timeout=1.0)
        await holder.__aenter__()  # and never exits: the holder was killed
        started = time.monotonic()
        async with alive.lock("index:orphan", timeout=5.0):
            waited = time.monotonic() - started
        await dead.close()
        await alive.close()
        return waited

    waited = run(scenario())
    assert 0.5 < waited < 5.0


@pytest.mark.parametrize("make_cache", ["redis", "dynamodb"], indirect=True)
def test_waiting_too_long_for_a_lock_is_cache_unavailable(make_cache: Callable[..., Cache]) -> None:
    async def scenario() -> str:
        holder, waiter = make_cache(), make_cache()
        try:
            async with holder.lock("index:busy", timeout=10.0):
                with pytest.raises(CacheUnavailable) as caught:
                    async with waiter.lock("index:busy", timeout=0.5):
                        pass
        finally:
            await holder.close()
            await waiter.close()
        return str(caught.value.message)

    assert "still held" in run(scenario())


def test_redis_url_from_the_environment(redis_server: Peer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOT_REDIS_URL", f"redis://{redis_server.host}:{redis_server.port}")

    async def scenario() -> list[str]:
        cache = RedisCache.from_driver({"name": "redis", "keyprefix": "env"})
        await cache.put_repo_meta("from-env", {})
        names = await cache.repositories()
        await cache.close()
        return names

    assert run(scenario()) == ["from-env"]


@pytest.mark.parametrize("driver", ["redis", "dynamodb"])
def test_a_cache_that_is_down_is_unavailable_not_a_crash(driver: str, dynamo_credentials: None) -> None:
    port = free_port()  # nothing listens there
    cache: Cache = (
        RedisCache(f"redis://:secret@127.0.0.1:{port}")
        if driver == "redis"
        else DynamoDBCache(f"http://127.0.0.1:{port}", "us-east-1", "B", "R")
    )

    async def scenario() -> tuple[str, str]:
        with pytest.raises(CacheUnavailable) as caught:
            await cache.get_repo_meta("x")
        reason = await cache.ping()
        await cache.close()
        return str(caught.value.message), reason

    started = time.monotonic()
    message, reason = run(scenario())
    assert time.monotonic() - started < 60
    assert driver in message and str(port) in message
    assert "secret" not in message and "secret" not in reason  # the password never reaches a log or client
    assert reason


def test_dynamodb_tables_are_created_once_by_concurrent_members(
    dynamodb_server: Peer, dynamo_credentials: None
) -> None:
    async def scenario() -> list[list[str]]:
        members = [DynamoDBCache(dynamodb_server.url, "us-east-1", "SharedBlobs", "SharedRepos") for _ in range(3)]
        await asyncio.gather(*(member.put_repo_meta(f"r{i}", {}) for i, member in enumerate(members)))
        found = [await member.repositories() for member in members]
        for member in members:
            await member.close()
        return found

    assert run(scenario()) == [["r0", "r1", "r2"]] * 3


def test_redis_without_a_url_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZOT_REDIS_URL", raising=False)
    with pytest.raises(ValueError, match="ZOT_REDIS_URL"):
        RedisCache.from_driver({"name": "redis", "keyprefix": "zot"})


@pytest.mark.parametrize(
    ("example", "driver", "tables"),
    [
        ("cluster-s3-redis.json", "redis", None),
        ("cluster-s3-dynamodb.json", "dynamodb", ("ZotBlobTable", "ZotRepoMetadataTable")),
        ("cluster-local-storage.json", "local", None),
    ],
)
def test_zot_example_configs_open_their_cache(example: str, driver: str, tables: tuple[str, str] | None) -> None:
    # zot's own examples, as users copy them: the loader lower-cases keys, the drivers still find
    # the tables zot names; nothing connects until first use (workers fork after this).
    example_config = load_example(example)
    storage = parse_config(json.dumps(example_config), example).config.storage
    cache = open_cache(storage)
    assert cache.name == driver
    if tables is not None:
        assert isinstance(cache, DynamoDBCache)
        assert (cache.blob_table, cache.repo_table) == tables
        # A dict straight from zot's JSON (camelCase keys) names its own tables, not the defaults.
        direct = DynamoDBCache.from_driver(
            {**example_config["storage"]["cacheDriver"], "cacheTablename": "MyBlobs", "repoMetaTablename": "MyRepos"}
        )
        assert (direct.blob_table, direct.repo_table) == ("MyBlobs", "MyRepos")
