"""The local filesystem image store: repositories, blobs, manifests and tags (sessions: local/uploads.py).

Several hypercorn workers (and other zot members) share the root, so every change is made safe for
concurrent writers by the filesystem itself:
- a blob appears only whole and verified: streamed to a private file, hashed, then renamed or
  hard-linked into place (`commit_blob`); no published file is ever written to again;
- an upload session is claimed, for the whole of a PATCH, PUT or DELETE, by an exclusive flock on
  its file (non-blocking: a second request on a busy session is answered at once, see
  `local/uploads.py`); a closed session's file is gone, and nothing ever re-creates it;
- index.json is replaced whole under a per-repository flock (index.IndexFiles).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from ...digests import Digest, parse_digest
from ...errors import BlobUnknown, DigestInvalid, ManifestUnknown, NameUnknown, SizeInvalid
from ...names import LAYOUT_ENTRIES, is_valid_name
from ..base import SessionsOf
from ..files import checked_chunks, file_chunks, fsync_path, write_atomic, write_exclusive
from ..gc import GcReport
from ..index import Index
from ..indexops import DeleteChange, Push, check_references, find_descriptor, referrers_among, unique_descriptors
from ..layout import EMPTY_INDEX, OCI_LAYOUT
from ..manifests import ParsedManifest
from ..memo import ManifestCache
from .gc import collect
from .index import IndexFiles
from .layout import LocalLayout
from .uploads import LocalUploads

_WRITE_CHUNK = 1 << 20
log = logging.getLogger("zot_registry.storage")


class LocalStore(SessionsOf):
    """Blobs, manifests and repositories under a root directory; upload sessions are local/uploads.py's."""

    def __init__(self, root: str | Path, dedupe: bool = True) -> None:
        self.root = Path(root).absolute()
        self.root.mkdir(parents=True, exist_ok=True)
        self.layout = LocalLayout(self.root)
        self.dedupe = dedupe
        self._indexes = IndexFiles()
        self._manifests = ManifestCache()
        self._uploads = LocalUploads(self)

    # Repositories -------------------------------------------------------------------------------

    def read_index(self, name: str) -> Index | None:
        return self._indexes.read(self.layout.index(name), name)

    def _require_repo(self, name: str) -> Index:
        index = self.read_index(name)
        if index is None:
            raise NameUnknown(f"repository {name!r} not known to registry")
        return index

    def ensure_repo(self, name: str) -> None:
        index = self.layout.index(name)
        if index.is_file():
            return
        self.layout.blobs(name).mkdir(parents=True, exist_ok=True)
        oci_layout = self.layout.oci_layout(name)
        if not oci_layout.is_file():
            write_atomic(oci_layout, OCI_LAYOUT)
        # Exclusive: two workers creating the same repository must not overwrite each other's index.
        write_exclusive(index, EMPTY_INDEX)

    def update_index(self, name: str, change: Callable[[list[dict[str, Any]]], bool]) -> None:
        """Apply `change` to the repository's manifests under its index lock (index.IndexFiles.update)."""
        self._indexes.update(self.layout.index(name), self.layout.lock(name), change, name)

    def create_index(self, name: str, data: bytes) -> bool:
        """index.json exactly as given, if the repository has none yet; whether it was written."""
        return self._indexes.create(self.layout.index(name), self.layout.lock(name), data)

    async def catalog(self) -> list[str]:
        return self.repository_names()

    def repository_names(self) -> list[str]:
        names: list[str] = []
        for directory, subdirs, files in os.walk(self.root):
            rel = os.path.relpath(directory, self.root).replace(os.sep, "/")
            if rel != "." and "index.json" in files and is_valid_name(rel):
                names.append(rel)
            # Hidden folders (.uploads, .dedupe) and layout entries (blobs) never hold repositories:
            # no valid name has such a component (names.py).
            subdirs[:] = [d for d in subdirs if not d.startswith(".") and d not in LAYOUT_ENTRIES]
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
        return self.blob_exists(name, digest)

    def blob_exists(self, name: str, digest: Digest) -> bool:
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
        """Cross-repository mount; without `from`, any copy this registry already holds will do.

        `source` must be a repository name (NAME_INVALID otherwise: the layout checks it), so the
        copy found is a blob of this root, published verified. A hard link shares those very bytes;
        when a link is impossible the bytes are copied and hashed again before they are published.
        """
        candidate: Path | None = None
        if source and self.blob_exists(source, digest):
            candidate = self.layout.blob(source, digest)
        if candidate is None:
            candidate = self._find_blob_anywhere(digest)
        if candidate is None:
            return False
        self.ensure_repo(name)
        if self.blob_exists(name, digest):
            return True
        target = self.layout.blob(name, digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(candidate, target)
            return True
        except FileExistsError:
            return True
        except FileNotFoundError:
            return False  # collected or deleted meanwhile: not mountable, the client uploads instead
        except OSError as err:
            if err.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
        return await asyncio.to_thread(self._mount_copy, name, candidate, digest)

    def _mount_copy(self, name: str, candidate: Path, digest: Digest) -> bool:
        uploads = self.layout.uploads(name)
        uploads.mkdir(parents=True, exist_ok=True)
        tmp = uploads / f".mount-{uuid.uuid4().hex}"
        try:
            hasher = digest.hasher()
            with open(candidate, "rb") as source, open(tmp, "wb") as copy:
                while chunk := source.read(_WRITE_CHUNK):
                    hasher.update(chunk)
                    copy.write(chunk)
                copy.flush()
                os.fsync(copy.fileno())
            if hasher.hexdigest() != digest.hex:
                log.error("blob %s of %s does not hash to its digest: not mounted", digest, candidate)
                return False
            self.commit_blob(name, tmp, digest)
            return True
        except FileNotFoundError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def commit_blob(self, name: str, source: Path, digest: Digest) -> None:
        """Publish a verified file as the repository's blob; `source` is gone afterwards.

        Without dedupe the file is renamed into place (a blob already there holds the same bytes).
        With dedupe the canonical copy comes first and every repository links to it; `source` is
        unlinked as soon as it is the canonical copy, so nothing writes to those bytes through it.
        Either way `source`'s old name is gone before this returns: a request that opened it as an
        upload session finds it is no session any more (uploads.LocalUploads._claimed).
        """
        target = self.layout.blob(name, digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not self.dedupe:
            os.replace(source, target)
            return
        canonical = self.layout.dedupe_blob(digest)
        if not _link(canonical, target):
            canonical.parent.mkdir(parents=True, exist_ok=True)
            _link(source, canonical)
            source.unlink()
            if not _link(canonical, target):
                raise FileNotFoundError(errno.ENOENT, "deduplicated copy vanished while linking it", str(canonical))
        else:
            source.unlink()

    async def _stream_to_file(
        self, path: Path, body: AsyncIterator[bytes], hasher: Any, limit: int | None = None
    ) -> int:
        written = 0
        with open(path, "wb") as handle:
            async for chunk in checked_chunks(body, hasher, limit):
                written += len(chunk)
                handle.write(chunk)
        return written

    async def put_blob(self, name: str, digest: Digest, body: AsyncIterator[bytes], length: int | None = None) -> None:
        """Monolithic upload: stream, verify the digest, then publish."""
        self.ensure_repo(name)
        uploads = self.layout.uploads(name)
        uploads.mkdir(parents=True, exist_ok=True)
        tmp = uploads / f".blob-{uuid.uuid4().hex}"
        try:
            hasher = digest.hasher()
            written = await self._stream_to_file(tmp, body, hasher, limit=length)
            if length is not None and written != length:
                raise SizeInvalid(f"received {written} bytes, Content-Length said {length}")
            if hasher.hexdigest() != digest.hex:
                raise DigestInvalid(f"content does not match digest {digest}")
            await asyncio.to_thread(fsync_path, tmp)
            self.commit_blob(name, tmp, digest)
        finally:
            tmp.unlink(missing_ok=True)

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
        missing = [ref for ref in manifest.blob_references() if not self.blob_exists(name, parse_digest(ref))]
        check_references(name, manifest, index, missing)

    async def put_manifest(
        self, name: str, reference: str, content_type: str | None, body: bytes
    ) -> tuple[Digest, ParsedManifest]:
        push = Push.of(reference, content_type, body)
        manifest, digest = push.manifest, push.digest
        self._check_references(name, manifest, self.read_index(name))
        self.ensure_repo(name)
        blob = self.layout.blob(name, digest)
        if not blob.is_file():
            write_atomic(blob, body)
        self._manifests.put(str(digest), body)
        self._indexes.update(self.layout.index(name), self.layout.lock(name), push.change(), name)
        return digest, manifest

    async def delete_manifest(self, name: str, reference: str) -> None:
        self._require_repo(name)
        change = DeleteChange(reference)
        self._indexes.update(self.layout.index(name), self.layout.lock(name), change, name)
        change.raise_if_missing(name)

    async def tags(self, name: str) -> list[str]:
        return self._require_repo(name).tags()

    async def referrers(self, name: str, subject: Digest, artifact_type: str | None) -> list[dict[str, Any]]:
        index = self.read_index(name)
        if index is None:
            return []
        contents = ((d, self._listed_manifest(name, d["digest"])) for d in unique_descriptors(index))
        return referrers_among(contents, subject, artifact_type)

    def _listed_manifest(self, name: str, digest: str) -> bytes | None:
        try:
            return self._manifest_bytes(name, digest)
        except ManifestUnknown:
            return None  # listed, but its manifest is missing from the layout: no referrer

    # Garbage collection, lifecycle --------------------------------------------------------------

    async def collect_garbage(self, delay: float, owns: Callable[[str], bool]) -> GcReport | None:
        return await asyncio.to_thread(collect, self, delay, owns)

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


def _link(source: Path, target: Path) -> bool:
    """Hard-link `source` at `target`: whether `target` is there now (made, or found); False without `source`."""
    try:
        os.link(source, target)
    except FileExistsError:
        return True
    except FileNotFoundError:
        if target.is_file():
            return True
        if not source.exists():
            return False
        raise
    return True
