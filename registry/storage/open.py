"""Picks the store from `storage`: local files under rootDirectory, or S3 with a shared cache."""

from __future__ import annotations

from ..config import StorageConfig
from .base import Store
from .local.store import LocalStore


def open_store(storage: StorageConfig) -> Store:
    driver = storage.storage_driver
    if driver is None:
        return LocalStore(storage.root_directory, dedupe=storage.dedupe)
    from ..cache import open_cache
    from .s3.store import S3Store

    return S3Store.from_config(driver, open_cache(storage), dedupe=storage.dedupe)
