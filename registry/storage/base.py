"""The storage seam: what the API needs from a store, whether files on a disk or objects in S3.

Every method is async: an S3 store waits on the network for each of them. Errors are the typed
registry errors (BLOB_UNKNOWN, MANIFEST_UNKNOWN, ...), so handlers never see a driver's exception.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from ..digests import Digest
from .gc import GcReport
from .manifests import ParsedManifest


class Uploads(Protocol):
    """Upload sessions: opened, appended to chunk by chunk, closed as a verified blob, or cancelled."""

    async def new_upload(self, name: str) -> str: ...

    async def upload_size(self, name: str, session: str) -> int: ...

    async def append_upload(
        self, name: str, session: str, body: AsyncIterator[bytes], start: int | None, length: int | None
    ) -> int: ...

    async def finish_upload(
        self, name: str, session: str, digest: Digest, body: AsyncIterator[bytes], length: int | None
    ) -> None: ...

    async def cancel_upload(self, name: str, session: str) -> None: ...


class SessionsOf:
    """A store's Uploads methods, answered by the object that keeps its sessions (local/uploads.py, s3/uploads.py)."""

    _uploads: Uploads

    async def new_upload(self, name: str) -> str:
        return await self._uploads.new_upload(name)

    async def upload_size(self, name: str, session: str) -> int:
        return await self._uploads.upload_size(name, session)

    async def append_upload(
        self, name: str, session: str, body: AsyncIterator[bytes], start: int | None, length: int | None
    ) -> int:
        return await self._uploads.append_upload(name, session, body, start, length)

    async def finish_upload(
        self, name: str, session: str, digest: Digest, body: AsyncIterator[bytes], length: int | None
    ) -> None:
        await self._uploads.finish_upload(name, session, digest, body, length)

    async def cancel_upload(self, name: str, session: str) -> None:
        await self._uploads.cancel_upload(name, session)


class Store(Uploads, Protocol):
    async def catalog(self) -> list[str]: ...

    async def blob_size(self, name: str, digest: Digest) -> int: ...

    def blob_chunks(self, name: str, digest: Digest, start: int, length: int) -> AsyncIterator[bytes]: ...

    async def has_blob(self, name: str, digest: Digest) -> bool: ...

    async def delete_blob(self, name: str, digest: Digest) -> None: ...

    async def mount_blob(self, name: str, digest: Digest, source: str | None) -> bool: ...

    async def put_blob(
        self, name: str, digest: Digest, body: AsyncIterator[bytes], length: int | None = None
    ) -> None: ...

    async def get_manifest(self, name: str, reference: str) -> tuple[dict[str, Any], bytes]: ...

    async def put_manifest(
        self, name: str, reference: str, content_type: str | None, body: bytes
    ) -> tuple[Digest, ParsedManifest]: ...

    async def delete_manifest(self, name: str, reference: str) -> None: ...

    async def tags(self, name: str) -> list[str]: ...

    async def referrers(self, name: str, subject: Digest, artifact_type: str | None) -> list[dict[str, Any]]: ...

    def disk_usage(self) -> int: ...

    async def collect_garbage(self, delay: float, owns: Callable[[str], bool]) -> GcReport | None:
        """One pass over the repositories `owns` accepts; None when another process is collecting."""
        ...

    async def ready(self) -> str:
        """ "" when the backend answers, else why not (for /readyz)."""
        ...

    async def close(self) -> None: ...
