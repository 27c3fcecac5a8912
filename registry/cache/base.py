"""What members share through `storage.cacheDriver`: the dedupe index, repository metadata and locks.

With shared S3 storage every member (and every worker of a member) reads and writes the same
bucket; the cache is where they agree on what is not cheap or not safe to learn from the bucket:
- the dedupe index: for each blob digest, the repositories that hold it, so a blob is stored once
  and garbage collection never deletes a copy another repository still needs;
- repository metadata: the catalog and, per repository, its tags and when it last changed;
- locks: index.json is read-modify-written, and two writers must not interleave.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from ..errors import CacheUnavailable

__all__ = ["Cache", "CacheUnavailable"]


class Cache(Protocol):
    """A shared cache. Every method is safe to call from many processes on many hosts at once."""

    name: str  # "redis", "dynamodb" or "local", for logs and metrics

    # Dedupe index -------------------------------------------------------------------------------
    async def add_blob_holder(self, digest: str, repo: str) -> None:
        """Records that `repo` holds `digest` (idempotent)."""

    async def remove_blob_holder(self, digest: str, repo: str) -> int:
        """Forgets that `repo` holds `digest`; returns how many holders remain."""

    async def blob_holders(self, digest: str) -> set[str]:
        """The repositories recorded as holding `digest` (empty when none)."""

    # Repository metadata ------------------------------------------------------------------------
    async def put_repo_meta(self, repo: str, meta: dict[str, Any]) -> None:
        """Stores `meta` (a JSON-able dict) for `repo` and adds `repo` to the catalog."""

    async def get_repo_meta(self, repo: str) -> dict[str, Any] | None: ...

    async def delete_repo_meta(self, repo: str) -> None:
        """Removes `repo`'s metadata and catalog entry (idempotent)."""

    async def repositories(self) -> list[str]:
        """The catalog: every repository with metadata, sorted."""

    # Locks --------------------------------------------------------------------------------------
    def lock(self, key: str, timeout: float = 30.0) -> AbstractAsyncContextManager[None]:
        """A mutex shared by every process using this cache.

        Held at most `timeout` seconds (so a killed holder cannot block others forever); waiting
        longer than `timeout` to acquire it raises CacheUnavailable.
        """

    # Lifecycle ----------------------------------------------------------------------------------
    async def ping(self) -> str:
        """ "" when the cache answers, else a reason (for /readyz)."""

    async def close(self) -> None: ...
