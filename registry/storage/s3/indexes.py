"""Repositories of the S3 store and their index.json: cached reads, versions in the cache, locked writes.

Every write of an index bumps the repository's version in the cache, so each worker's copy of the
index is checked with one cache read; writes are read-modify-writes under the cache's lock for the
repository. A repository the bucket holds but the cache does not know (an emptied cache) is adopted.
"""

from __future__ import annotations

import logging
import time
import uuid

from ...cache.base import Cache
from ...errors import NameUnknown, RegistryError, RepositoryUnreadable
from ..index import Index
from ..indexops import Change
from ..layout import EMPTY_INDEX, OCI_LAYOUT
from .client import S3Bucket
from .keys import S3Keys

log = logging.getLogger("zot_registry.storage")


class S3Indexes:
    def __init__(self, bucket: S3Bucket, cache: Cache, keys: S3Keys) -> None:
        self.bucket = bucket
        self.cache = cache
        self.keys = keys
        # An unreadable index.json is remembered too: logged once per version, not once per request.
        self._cached: dict[str, tuple[str, Index | RegistryError]] = {}

    async def read(self, name: str) -> Index | None:
        meta = await self.cache.get_repo_meta(name)
        if meta is None:
            return await self._adopt(name)
        version = str(meta.get("version", ""))
        cached = self._cached.get(name)
        if cached is None or cached[0] != version:
            raw = await self.bucket.get(self.keys.index(name))
            cached = (version, self._parse(name, raw or EMPTY_INDEX))
            self._cached[name] = cached
        if isinstance(cached[1], RegistryError):
            raise RepositoryUnreadable(cached[1].message)
        return cached[1]

    def _parse(self, name: str, raw: bytes) -> Index | RegistryError:
        try:
            return Index.parse(raw, f"index.json of repository {name!r}")
        except RepositoryUnreadable as err:
            log.error("repository unreadable: %s", err.message, extra={"key": self.keys.index(name)})
            return err

    async def _new_version(self, name: str) -> str:
        """Records that `name`'s index changed: every worker's copy of it is stale from now on."""
        version = uuid.uuid4().hex
        await self.cache.put_repo_meta(name, {"version": version, "updated": time.time()})
        return version

    async def _adopt(self, name: str) -> Index | None:
        """A repository in the bucket the cache does not know (an emptied cache): record it again."""
        raw = await self.bucket.get(self.keys.index(name))
        if raw is None:
            return None
        version = await self._new_version(name)
        index = self._parse(name, raw)
        self._cached[name] = (version, index)
        if isinstance(index, RegistryError):
            raise RepositoryUnreadable(index.message)
        return index

    async def require(self, name: str) -> Index:
        index = await self.read(name)
        if index is None:
            raise NameUnknown(f"repository {name!r} not known to registry")
        return index

    async def ensure(self, name: str) -> None:
        if await self.cache.get_repo_meta(name) is not None:
            return
        async with self.cache.lock(f"index:{name}"):
            if await self.cache.get_repo_meta(name) is not None:
                return
            if await self.bucket.head(self.keys.index(name)) is None:
                await self.bucket.put(self.keys.oci_layout(name), OCI_LAYOUT)
                await self.bucket.put(self.keys.index(name), EMPTY_INDEX)
            await self._new_version(name)

    async def update(self, name: str, change: Change) -> None:
        async with self.cache.lock(f"index:{name}"):
            await self.update_locked(name, change)

    async def update_locked(self, name: str, change: Change) -> Index | None:
        """Applies `change` to index.json (the caller holds the lock); the new index, or None if unchanged."""
        raw = await self.bucket.get(self.keys.index(name))
        # An unreadable index raises here, before anything is written: it is never replaced.
        current = Index.parse(raw or EMPTY_INDEX, f"index.json of repository {name!r}")
        manifests = [dict(d) for d in current.manifests]
        if not change(manifests):
            return None
        body = current.with_manifests(manifests)
        await self.bucket.put(self.keys.index(name), body)
        index = Index.parse(body)
        self._cached[name] = (await self._new_version(name), index)
        return index
