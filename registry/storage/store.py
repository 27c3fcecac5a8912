"""The local filesystem image store: blobs, upload sessions, manifests and tags of every repository."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from ..digests import Digest, parse_digest
from ..errors import (
    BlobUnknown,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestUnknown,
    NameUnknown,
    RangeInvalid,
    SizeInvalid,
)
from .base import GcReport
from .files import checked_chunks, file_chunks, fsync_path, write_atomic
from .index import Index, IndexFiles
from .indexops import (
    DeleteChange,
    check_references,
    descriptor_for,
    find_descriptor,
    manifest_digest,
    put_change,
    referrer_entry,
    unique_descriptors,
)
from .layout import EMPTY_INDEX, OCI_LAYOUT, SESSION_ID, Layout
from .manifests import ParsedManifest, parse_manifest
from .memo import Hashers, ManifestCache

_WRITE_CHUNK = 1 << 20


class ImageStore:
    def __init__(self, root: str | Path, dedupe: bool = True) -> None:
        self.root = Path(root).absolute()
        self.root.mkdir(parents=True, exist_ok=True)
        self.layout = Layout(self.root)
        self.dedupe = dedupe
        self._indexes = IndexFiles()
        self._manifests = ManifestCache()
        self._hashers = Hashers()

    # Repositories -------------------------------------------------------------------------------

    def read_index(self, name: str) -> Index | None:
        return self._indexes.read(self.layout.index(name))

    def _require_repo(self, name: str) -> Index:
        index = self.read_index(name)
        if index is None:
            raise NameUnknown(f"repository {name!r} not known to registry")
        return index

    def ensure_repo(self, name: str) -> None:
        repo = self.layout.repo(name)
        if (repo / "index.json").is_file():
            return
        (repo / "blobs").mkdir(parents=True, exist_ok=True)
        if not (repo / "oci-layout").is_file():
            write_atomic(repo / "oci-layout", OCI_LAYOUT)
        try:
            # O_EXCL: two workers creating the same repository must not overwrite each other's index.
            fd = os.open(repo / "index.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return
        with os.fdopen(fd, "wb") as handle:
            handle.write(EMPTY_INDEX)
            handle.flush()
            os.fsync(handle.fileno())

    async def catalog(self) -> list[str]:
        return self.repository_names()

    def repository_names(self) -> list[str]:
        names: list[str] = []
        for directory, subdirs, files in os.walk(self.root):
            rel = os.path.relpath(directory, self.root)
            if rel != "." and "index.json" in files:
                names.append(rel.replace(os.sep, "/"))
            # Hidden folders (.uploads, .dedupe) and blob folders never hold repositories.
            subdirs[:] = [d for d in subdirs if not d.startswith(".") and not (d == "blobs" and "index.json" in files)]
        return sorted(names)

    # Blobs --------------------------------------------------------------------------------------

    async def blob_size(self, name: str, digest: Digest) -> int:
        """Size of a complete blob, or BLOB_UNKNOWN."""
        try:
            return os.stat(self.layout.blob(name, digest)).st_size
        except FileNotFoundError:
            raise BlobUnknown(f"blob {digest} unknown to repository {name!r}") from None

    def blob_chunks(self, name: str, digest: Digest, start: int, length: int) -> AsyncIterator[bytes]:
        return file_chunks(str(self.layout.blob(name, digest)), start, length)

    async def has_blob(self, name: str, digest: Digest) -> bool:
        return self._has_blob(name, digest)

    def _has_blob(self, name: str, digest: Digest) -> bool:
        return self.layout.blob(name, digest).is_file()

    async def delete_blob(self, name: str, digest: Digest) -> None:
        self._require_repo(name)
        try:
            os.unlink(self.layout.blob(name, digest))
        except FileNotFoundError:
            raise BlobUnknown(f"blob {digest} unknown to repository {name!r}") from None

    def _find_blob_anywhere(self, digest: Digest) -> Path | None:
        canonical = self.layout.dedupe_blob(digest)
        return canonical if canonical.is_file() else None

    async def mount_blob(self, name: str, digest: Digest, source: str | None) -> bool:
        """Cross-repository mount; without `from`, any copy this registry already holds will do."""
        candidate: Path | None = None
        if source and self._has_blob(source, digest):
            candidate = self.layout.blob(source, digest)
        if candidate is None:
            candidate = self._find_blob_anywhere(digest)
        if candidate is None:
            return False
        self.ensure_repo(name)
        if self._has_blob(name, digest):
            return True
        target = self.layout.blob(name, digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(candidate, target)
        except FileExistsError:
            pass
        except OSError:
            tmp = self.layout.uploads(name) / f".mount-{uuid.uuid4().hex}"
            tmp.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(candidate, tmp)
            os.replace(tmp, target)
        return True

    def _commit_blob(self, name: str, tmp: Path, digest: Digest) -> None:
        """Make a verified temporary file the repository's blob (hard-linked to one copy with dedupe)."""
        target = self.layout.blob(name, digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not self.dedupe:
            os.replace(tmp, target)
            return
        canonical = self.layout.dedupe_blob(digest)
        canonical.parent.mkdir(parents=True, exist_ok=True)
        if canonical.is_file():
            tmp.unlink()
        else:
            os.replace(tmp, canonical)
        with contextlib.suppress(FileExistsError):
            os.link(canonical, target)

    async def _stream_to_file(self, path: Path, body: AsyncIterator[bytes], hasher: Any,
                              append: bool, limit: int | None = None) -> int:
        written = 0
        with open(path, "ab" if append else "wb") as handle:
            async for chunk in checked_chunks(body, hasher, limit):
                written += len(chunk)
                handle.write(chunk)
        return written

    async def put_blob(self, name: str, digest: Digest, body: AsyncIterator[bytes],
                       length: int | None = None) -> None:
        """Monolithic upload: stream, verify the digest, then publish."""
        self.ensure_repo(name)
        uploads = self.layout.uploads(name)
        uploads.mkdir(parents=True, exist_ok=True)
        tmp = uploads / f".blob-{uuid.uuid4().hex}"
        try:
            hasher = digest.hasher()
            written = await self._stream_to_file(tmp, body, hasher, append=False, limit=length)
            if length is not None and written != length:
                raise SizeInvalid(f"received {written} bytes, Content-Length said {length}")
            if hasher.hexdigest() != digest.hex:
                raise DigestInvalid(f"content does not match digest {digest}")
            await asyncio.to_thread(fsync_path, tmp)
            self._commit_blob(name, tmp, digest)
        finally:
            tmp.unlink(missing_ok=True)

    # Upload sessions ----------------------------------------------------------------------------

    def _session_path(self, name: str, session: str) -> Path:
        if not SESSION_ID.match(session):
            raise BlobUploadUnknown(f"upload {session!r} unknown")
        path = self.layout.upload(name, session)
        if not path.is_file():
            raise BlobUploadUnknown(f"upload {session!r} unknown")
        return path

    async def new_upload(self, name: str) -> str:
        self.ensure_repo(name)
        session = uuid.uuid4().hex
        uploads = self.layout.uploads(name)
        uploads.mkdir(parents=True, exist_ok=True)
        (uploads / session).touch()
        return session

    async def upload_size(self, name: str, session: str) -> int:
        return self._session_path(name, session).stat().st_size

    async def append_upload(self, name: str, session: str, body: AsyncIterator[bytes],
                            start: int | None, length: int | None) -> int:
        """Append one chunk; `start` from Content-Range must be where the last chunk ended."""
        path = self._session_path(name, session)
        offset = path.stat().st_size
        if start is not None and start != offset:
            raise RangeInvalid(f"chunk starts at {start}, upload is at {offset}",
                               headers={"Range": f"0-{max(offset - 1, 0)}", "Content-Range": f"0-{max(offset - 1, 0)}"})
        # Without this process's running hash (another worker took earlier chunks) we write without
        # hashing and hash the whole file once at the end, rather than re-reading it on every chunk.
        hasher = self._hashers.take(session, offset) if offset else hashlib.sha256()
        written = await self._stream_to_file(path, body, hasher, append=True, limit=length)
        if length is not None and written != length:
            os.truncate(path, offset)
            raise SizeInvalid(f"received {written} bytes, Content-Length said {length}")
        if hasher is not None:
            self._hashers.keep(session, offset + written, hasher)
        return offset + written

    async def finish_upload(self, name: str, session: str, digest: Digest,
                            body: AsyncIterator[bytes], length: int | None) -> None:
        path = self._session_path(name, session)
        offset = path.stat().st_size
        hasher: Any = self._hashers.take(session, offset) if digest.algorithm == "sha256" else None
        if hasher is None:
            hasher = await asyncio.to_thread(_hash_file, path, digest.algorithm)
        written = await self._stream_to_file(path, body, hasher, append=True, limit=length)
        if length is not None and written != length:
            os.truncate(path, offset)
            raise SizeInvalid(f"received {written} bytes, Content-Length said {length}")
        if hasher.hexdigest() != digest.hex:
            # The session stays usable, as in distribution, but this content will never match.
            os.truncate(path, offset)
            raise DigestInvalid(f"uploaded content does not match digest {digest}")
        await asyncio.to_thread(fsync_path, path)
        self._commit_blob(name, path, digest)
        path.unlink(missing_ok=True)

    async def cancel_upload(self, name: str, session: str) -> None:
        path = self._session_path(name, session)
        self._hashers.drop(session)
        path.unlink(missing_ok=True)

    # Manifests, tags, referrers -----------------------------------------------------------------

    def _manifest_bytes(self, name: str, digest: str) -> bytes:
        data = self._manifests.get(digest)
        if data is None:
            try:
                data = self.layout.blob(name, parse_digest(digest)).read_bytes()
            except FileNotFoundError:
                raise ManifestUnknown(f"manifest {digest} unknown") from None
            self._manifests.put(digest, data)
        return data

    async def get_manifest(self, name: str, reference: str) -> tuple[dict[str, Any], bytes]:
        """The index descriptor and exact bytes of a manifest, by tag or digest."""
        descriptor = find_descriptor(self._require_repo(name), name, reference)
        return descriptor, self._manifest_bytes(name, descriptor["digest"])

    def _check_references(self, name: str, manifest: ParsedManifest, index: Index | None) -> None:
        missing = [ref for ref in manifest.blob_references() if not self._has_blob(name, parse_digest(ref))]
        check_references(name, manifest, index, missing)

    async def put_manifest(self, name: str, reference: str, content_type: str | None,
                     body: bytes) -> tuple[Digest, ParsedManifest]:
        manifest = parse_manifest(body, content_type)
        digest, tag = manifest_digest(reference, body)
        self._check_references(name, manifest, self.read_index(name))
        self.ensure_repo(name)
        blob = self.layout.blob(name, digest)
        if not blob.is_file():
            write_atomic(blob, body)
        self._manifests.put(str(digest), body)
        change = put_change(descriptor_for(manifest, digest, len(body), tag), tag)
        self._indexes.update(self.layout.index(name), self.layout.lock(name), change)
        return digest, manifest

    async def delete_manifest(self, name: str, reference: str) -> None:
        self._require_repo(name)
        change = DeleteChange(reference)
        self._indexes.update(self.layout.index(name), self.layout.lock(name), change)
        change.raise_if_missing(name)

    async def tags(self, name: str) -> list[str]:
        return self._require_repo(name).tags()

    async def referrers(self, name: str, subject: Digest, artifact_type: str | None) -> list[dict[str, Any]]:
        index = self._indexes.read(self.layout.index(name))
        if index is None:
            return []
        found = []
        for descriptor in unique_descriptors(index):
            entry = referrer_entry(descriptor, self._manifest_bytes(name, descriptor["digest"]), subject, artifact_type)
            if entry is not None:
                found.append(entry)
        return found

    # Garbage collection, lifecycle --------------------------------------------------------------

    async def collect_garbage(self, delay: float, owns: Callable[[str], bool]) -> GcReport | None:
        from . import gc  # gc reads the store's layout: imported here, not at module level, to avoid a cycle

        return await asyncio.to_thread(gc.collect, self, delay, owns)

    async def ready(self) -> str:
        return "" if self.root.is_dir() else f"root directory {self.root} is missing"

    async def close(self) -> None:
        return None

    # Metrics ------------------------------------------------------------------------------------

    def disk_usage(self) -> int:
        total = 0
        seen: set[int] = set()
        for directory, _, files in os.walk(self.root):
            for file in files:
                try:
                    stat = os.stat(os.path.join(directory, file))
                except FileNotFoundError:
                    continue
                if stat.st_ino not in seen:  # hard links (dedupe) count once
                    seen.add(stat.st_ino)
                    total += stat.st_size
        return total


def _hash_file(path: Path, algorithm: str) -> Any:
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(_WRITE_CHUNK):
            hasher.update(chunk)
    return hasher

