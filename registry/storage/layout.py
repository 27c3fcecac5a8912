"""Where things live: zot's OCI image layout per repository, relative to a store's root.

<repo>/oci-layout, index.json, blobs/<alg>/<hex>, upload sessions in <repo>/.uploads/. With dedupe,
one canonical copy of each blob lives under .dedupe/ and every repository holds a link (local) or
a placeholder (S3) for it; names starting with a dot are never valid repository names, so it stays
hidden. This module is the one place that knows these relative paths: the local store joins them
to its root directory (local/layout.py), the S3 store to its rootdirectory key prefix (s3/keys.py).

Every path is built from three things a request names: a repository name, a digest and an upload
session id. Each is checked here, whatever the caller checked before (defence in depth), so no
path a layout returns can resolve outside the root or inside another repository's layout:
- a name must be a repository name (names.validate_name: the spec's grammar, no `..`, no empty or
  dot-led component, and no component that is a layout entry such as `blobs` or `index.json`);
- a digest must be sha256 or sha512 with lower-case hex of the right length;
- a session id must be one of ours (32 lower-case hex digits).
"""

from __future__ import annotations

import re
from typing import Generic, TypeVar

from ..digests import Digest
from ..errors import BlobUploadUnknown, DigestInvalid
from ..names import validate_name

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
EMPTY_INDEX = b'{"schemaVersion":2,"manifests":[]}'
# Upload session ids are ours (uuid4 hex): anything else in a URL is an unknown session.
SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
Place = TypeVar("Place")
_HEX = {"sha256": re.compile(r"[0-9a-f]{64}"), "sha512": re.compile(r"[0-9a-f]{128}")}


def checked_digest(digest: Digest) -> Digest:
    """`digest`, if its parts are safe path components (a Digest may be built without parse_digest)."""
    pattern = _HEX.get(digest.algorithm)
    if pattern is None or not pattern.fullmatch(digest.hex):
        raise DigestInvalid(f"invalid digest: {str(digest)[:200]!r}")
    return digest


def checked_session(session: str) -> str:
    if not SESSION_ID.fullmatch(session):
        raise BlobUploadUnknown(f"upload {session[:100]!r} unknown")
    return session


class Layout(Generic[Place]):
    """zot's layout, each entry given by `place` as a relative POSIX path (a/b/blobs/sha256/<hex>)."""

    def place(self, relative: str) -> Place:
        raise NotImplementedError

    def repo(self, name: str) -> Place:
        return self.place(validate_name(name))

    def index(self, name: str) -> Place:
        return self.place(f"{validate_name(name)}/index.json")

    def oci_layout(self, name: str) -> Place:
        return self.place(f"{validate_name(name)}/oci-layout")

    def blobs(self, name: str) -> Place:
        return self.place(f"{validate_name(name)}/blobs")

    def blob(self, name: str, digest: Digest) -> Place:
        checked_digest(digest)
        return self.place(f"{validate_name(name)}/blobs/{digest.algorithm}/{digest.hex}")

    def uploads(self, name: str) -> Place:
        return self.place(f"{validate_name(name)}/.uploads")

    def upload(self, name: str, session: str, suffix: str = "") -> Place:
        """An upload session; the S3 store keeps its data and tail objects beside it, named by `suffix`."""
        uploads = f"{validate_name(name)}/.uploads"
        return self.place(f"{uploads}/{checked_session(session)}{suffix}")

    def lock(self, name: str) -> Place:
        return self.place(f"{validate_name(name)}/.uploads/.index.lock")

    def dedupe_blobs(self) -> Place:
        return self.place(".dedupe/blobs")

    def dedupe_blob(self, digest: Digest) -> Place:
        checked_digest(digest)
        return self.place(f".dedupe/blobs/{digest.algorithm}/{digest.hex}")

    def dedupe_tmp(self) -> Place:
        return self.place(".dedupe/tmp")

    def gc_lock(self) -> Place:
        return self.place(".gc.lock")
