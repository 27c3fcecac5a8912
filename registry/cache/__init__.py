"""Caches shared by the members of a cluster on shared storage (see base.Cache)."""

from __future__ import annotations

from ..config import StorageConfig
from .base import Cache


def open_cache(storage: StorageConfig) -> Cache:
    """The configured remote cache, or one local to this member (zot's `remoteCache: false`)."""
    driver = storage.cache_driver
    if storage.remote_cache and driver is not None:
        if driver.get("name") == "redis":
            from .redis import RedisCache

            return RedisCache.from_driver(driver)
        if driver.get("name") == "dynamodb":
            from .dynamodb import DynamoDBCache

            return DynamoDBCache.from_driver(driver)
    from .local import LocalCache

    return LocalCache(storage.root_directory)
