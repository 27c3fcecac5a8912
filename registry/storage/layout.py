"""Where things live on disk: zot's OCI image layout per repository.

<root>/<repo>/oci-layout, index.json, blobs/<alg>/<hex>, upload sessions in <root>/<repo>/.uploads/.
With dedupe, one canonical copy of each blob lives under <root>/.dedupe/ and every repository holds
a hard link to it; names starting with a dot are never valid repository names, so it stays hidden.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..digests import Digest

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
EMPTY_INDEX = b'{"schemaVersion":2,"manifests":[]}'
# Upload session ids are ours (uuid4 hex): anything else in a URL is an unknown session.
SESSION_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Layout:
    root: Path

    def repo(self, name: str) -> Path:
        return self.root / name

    def index(self, name: str) -> Path:
        return self.root / name / "index.json"

    def lock(self, name: str) -> Path:
        return self.root / name / ".uploads" / ".index.lock"

    def blob(self, name: str, digest: Digest) -> Path:
        return self.root / name / "blobs" / digest.algorithm / digest.hex

    def uploads(self, name: str) -> Path:
        return self.root / name / ".uploads"

    def upload(self, name: str, session: str) -> Path:
        return self.root / name / ".uploads" / session

    def dedupe_blob(self, digest: Digest) -> Path:
        return self.root / ".dedupe" / "blobs" / digest.algorithm / digest.hex

    def dedupe_tmp(self) -> Path:
        return self.root / ".dedupe" / "tmp"
