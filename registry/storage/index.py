"""index.json of one repository, as both stores read and write it: parsed leniently, rewritten whole.

The local store's cached, locked file access to it is local/index.py; the S3 store's, s3/store.py.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import RepositoryUnreadable
from .schema import annotations_ok

log = logging.getLogger("zot_registry.storage")

TAG_ANNOTATION = "org.opencontainers.image.ref.name"
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")


def usable_descriptor(entry: Any) -> bool:
    """An index entry a reader can serve: an object with a mediaType, a digest we can verify, a size."""
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("mediaType"), str)
        and isinstance(entry.get("digest"), str)
        and _DIGEST.fullmatch(entry["digest"]) is not None
        and isinstance(entry.get("size"), int)
        and not isinstance(entry["size"], bool)
        and ("annotations" not in entry or annotations_ok(entry["annotations"]))
    )


@dataclass
class Index:
    """The parsed index plus lookups built once per version of the file.

    What zot writes is read as is: `"manifests": null` (a repository with only blobs, or whose
    manifests were all deleted) is an empty list. Entries no reader can use (not an object, no
    valid digest, mediaType or size) are `foreign`: never served, and written back unchanged.
    A document that is not an index at all (not JSON, not an object, `manifests` not a list)
    makes the repository unreadable (NAME_UNKNOWN), and no write ever replaces it.
    """

    document: dict[str, Any]
    manifests: list[dict[str, Any]] = field(default_factory=list)
    foreign: list[Any] = field(default_factory=list)
    by_tag: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_digest: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: bytes, where: str = "index.json") -> Index:
        if not raw.strip():
            return cls({"schemaVersion": 2, "manifests": []})
        try:
            document = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as err:
            raise RepositoryUnreadable(f"{where} is not JSON ({err}); it is left as found") from None
        except RecursionError:
            raise RepositoryUnreadable(f"{where} is nested too deeply to be an index; it is left as found") from None
        if not isinstance(document, dict):
            raise RepositoryUnreadable(f"{where} is not a JSON object; it is left as found")
        entries = document.get("manifests")
        if entries is None:
            entries = []
        if not isinstance(entries, list):
            raise RepositoryUnreadable(f"{where}: manifests is not a list; it is left as found")
        index = cls(document)
        for entry in entries:
            if not usable_descriptor(entry):
                index.foreign.append(entry)
                continue
            index.manifests.append(entry)
            index.by_digest.setdefault(entry["digest"], entry)
            tag = (entry.get("annotations") or {}).get(TAG_ANNOTATION)
            if tag:
                index.by_tag[tag] = entry
        if index.foreign:
            log.warning(
                "%s: %d index entries without a usable descriptor are ignored and kept as found",
                where,
                len(index.foreign),
            )
        return index

    def with_manifests(self, manifests: list[dict[str, Any]]) -> bytes:
        """This index with `manifests` in place of its usable entries; everything else kept as found."""
        try:
            return json.dumps(
                {**self.document, "manifests": [*manifests, *self.foreign]}, separators=(",", ":")
            ).encode()
        except RecursionError:
            raise RepositoryUnreadable("index.json is nested too deeply to be rewritten; it is left as found") from None

    def tags(self) -> list[str]:
        return sorted(self.by_tag)
