"""Where things live on disk: zot's OCI image layout per repository.

<root>/<repo>/oci-layout, index.json, blobs/<alg>/<hex>, upload sessions in <root>/<repo>/.uploads/.
With dedupe, one canonical copy of each blob lives under <root>/.dedupe/ and every repository holds
a hard link to it; names starting with a dot are never valid repository names, so it stays hidden.

Every path is built from three things a request names: a repository name, a digest and an upload
session id. Each is checked here, whatever the caller checked before (defence in depth), so no
path this class returns can resolve outside the root or inside another repository's layout:
- a name must be a repository name (names.validate_name: the spec's grammar, no `..`, no empty or
  dot-led component, and no component that is a layout entry such as `blobs` or `index.json`);
- a digest must be sha256 or sha512 with lower-case hex of the right length;
- a session id must be one of ours (32 lower-case hex digits).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..digests import Digest
from ..errors import BlobUploadUnknown, DigestInvalid
from ..names import validate_name

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
EMPTY_INDEX = b'{"schemaVersion":2,"manifests":[]}'
# Upload session ids are ours (uuid4 hex): anything else in a URL is an unknown session.
SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
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


@dataclass(frozen=True)
class Layout:
    root: Path

    def repo(self, name: str) -> Path:
        return self.root / validate_name(name)

    def index(self, name: str) -> Path:
        return self.repo(name) / "index.json"

    def lock(self, name: str) -> Path:
        return self.uploads(name) / ".index.lock"

    def blob(self, name: str, digest: Digest) -> Path:
        checked_digest(digest)
        return self.repo(name) / "blobs" / digest.algorithm / digest.hex

    def uploads(self, name: str) -> Path:
        return self.repo(name) / ".uploads"

    def upload(self, name: str, session: str) -> Path:
        return self.uploads(name) / checked_session(session)

    def dedupe_blob(self, digest: Digest) -> Path:
        checked_digest(digest)
        return self.root / ".dedupe" / "blobs" / digest.algorithm / digest.hex

    def dedupe_tmp(self) -> Path:
        return self.root / ".dedupe" / "tmp"
