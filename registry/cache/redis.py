"""The redis cache driver (zot's `cacheDriver: {name: redis, url, keyprefix}`).

Keys, all under `<keyprefix>:`: `blob:<digest>` is the set of repositories holding a digest,
`repos` the catalog (a set), `repo:<name>` a repository's metadata (JSON), `lock:<key>` the locks,
which are redis-py's own Lock (a token set with NX and an expiry, released only by its holder).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.exceptions import LockError, RedisError

from ..config import REDIS_URL_ENV
from ..errors import CacheUnavailable

T = TypeVar("T")


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisCache:
    name = "redis"

    def __init__(self, url: str, prefix: str = "zot") -> None:
        self.url = url
        self.prefix = prefix.rstrip(":")
        self._client: Redis | None = None

    @classmethod
    def from_driver(cls, driver: dict[str, Any]) -> RedisCache:
        url = driver.get("url") or os.environ.get(REDIS_URL_ENV)
        if not url:
            raise ValueError(f'the redis cache needs a "url" or {REDIS_URL_ENV}')
        return cls(str(url), str(driver.get("keyprefix") or "zot"))

    @property
    def client(self) -> Redis:
        # Made on first use, inside the worker's event loop (hypercorn forks workers after import).
        if self._client is None:
            self._client = Redis.from_url(
                self.url, socket_connect_timeout=3, socket_timeout=10, health_check_interval=30, decode_responses=True
            )
        return self._client

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    async def _do(self, what: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except (RedisError, OSError) as err:
            raise CacheUnavailable(f"redis cache at {_without_password(self.url)}: {what} failed: {err}") from None

    async def add_blob_holder(self, digest: str, repo: str) -> None:
        await self._do("SADD", self.client.sadd(self._key("blob", digest), repo))

    async def remove_blob_holder(self, digest: str, repo: str) -> int:
        key = self._key("blob", digest)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.srem(key, repo)
            pipe.scard(key)
            _, remaining = await self._do("SREM", pipe.execute())
        return int(remaining)

    async def blob_holders(self, digest: str) -> set[str]:
        members = await self._do("SMEMBERS", self.client.smembers(self._key("blob", digest)))
        return {str(m) for m in members}

    async def put_repo_meta(self, repo: str, meta: dict[str, Any]) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self._key("repo", repo), json.dumps(meta))
            pipe.sadd(self._key("repos"), repo)
            await self._do("SET", pipe.execute())

    async def get_repo_meta(self, repo: str) -> dict[str, Any] | None:
        raw = await self._do("GET", self.client.get(self._key("repo", repo)))
        return json.loads(raw) if raw else None

    async def delete_repo_meta(self, repo: str) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self._key("repo", repo))
            pipe.srem(self._key("repos"), repo)
            await self._do("DEL", pipe.execute())

    async def repositories(self) -> list[str]:
        members = await self._do("SMEMBERS", self.client.smembers(self._key("repos")))
        return sorted(str(m) for m in members)

    @asynccontextmanager
    async def lock(self, key: str, timeout: float = 30.0) -> AsyncIterator[None]:
        lock = self.client.lock(self._key("lock", key), timeout=timeout, blocking_timeout=timeout, sleep=0.01)
        acquired = await self._do("lock", lock.acquire())
        if not acquired:
            raise CacheUnavailable(f"lock {key!r} still held by another member after {timeout:g}s")
        try:
            yield
        finally:
            try:
                await lock.release()
            except LockError:
                pass  # it expired while held: someone else may have it now, nothing of ours to release
            except (RedisError, OSError):
                pass  # the expiry frees it

    async def ping(self) -> str:
        try:
            await asyncio.wait_for(self.client.ping(), timeout=3)
        except (TimeoutError, RedisError, OSError) as err:
            return f"redis cache at {_without_password(self.url)} does not answer: {err or 'timeout'}"
        return ""

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
