"""What a manifest push or delete does to a repository's index, whatever stores the index.

Both stores (local files, S3) keep zot's index.json and change it the same way: these are the
changes, as functions on the list of manifest descriptors, plus the referrers query over it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..digests import Digest, is_digest, parse_digest
from ..errors import DigestInvalid, ManifestBlobUnknown, ManifestUnknown
from ..names import validate_tag
from .index import TAG_ANNOTATION, Index
from .manifests import ParsedManifest, parse_manifest, read_manifest

Change = Callable[[list[dict[str, Any]]], bool]


def tag_of(descriptor: dict[str, Any]) -> str | None:
    return (descriptor.get("annotations") or {}).get(TAG_ANNOTATION)


def manifest_digest(reference: str, body: bytes) -> tuple[Digest, str | None]:
    """The pushed manifest's digest and its tag (None when pushed by digest), checked against the reference."""
    if is_digest(reference):
        wanted = parse_digest(reference)
        digest = Digest(wanted.algorithm, hashlib.new(wanted.algorithm, body).hexdigest())
        if digest != wanted:
            raise DigestInvalid(f"manifest content does not match digest {reference}")
        return digest, None
    return Digest("sha256", hashlib.sha256(body).hexdigest()), validate_tag(reference)


def descriptor_for(manifest: ParsedManifest, digest: Digest, size: int, tag: str | None) -> dict[str, Any]:
    descriptor: dict[str, Any] = {"mediaType": manifest.media_type, "digest": str(digest), "size": size}
    if manifest.artifact_type and manifest.document.get("artifactType"):
        descriptor["artifactType"] = manifest.artifact_type
    if tag:
        descriptor["annotations"] = {TAG_ANNOTATION: tag}
    return descriptor


def put_change(descriptor: dict[str, Any], tag: str | None) -> Change:
    digest = descriptor["digest"]

    def change(manifests: list[dict[str, Any]]) -> bool:
        if tag is None:
            if any(d["digest"] == digest for d in manifests):
                return False
            manifests.append(descriptor)
            return True
        # A tag moves: drop its old descriptor and any untagged entry of the same digest.
        manifests[:] = [d for d in manifests if tag_of(d) != tag and not (d["digest"] == digest and tag_of(d) is None)]
        manifests.append(descriptor)
        return True

    return change


@dataclass(frozen=True)
class Push:
    """A pushed manifest, parsed and checked against its reference: what a store keeps and indexes."""

    manifest: ParsedManifest
    digest: Digest
    tag: str | None  # None when pushed by digest
    size: int

    @classmethod
    def of(cls, reference: str, content_type: str | None, body: bytes) -> Push:
        manifest = parse_manifest(body, content_type)
        digest, tag = manifest_digest(reference, body)
        return cls(manifest, digest, tag, len(body))

    def change(self) -> Change:
        """What the push does to the index: its descriptor added, its tag moved to it."""
        return put_change(descriptor_for(self.manifest, self.digest, self.size, self.tag), self.tag)


class DeleteChange:
    """Removes a manifest by digest (every tag pointing at it too) or just a tag; `found` says if it existed."""

    def __init__(self, reference: str) -> None:
        if is_digest(reference):
            parse_digest(reference)
        self.reference = reference
        self.found = False

    def __call__(self, manifests: list[dict[str, Any]]) -> bool:
        if is_digest(self.reference):
            before = len(manifests)
            manifests[:] = [d for d in manifests if d["digest"] != self.reference]
            self.found = len(manifests) != before
            return self.found
        match = next((d for d in manifests if tag_of(d) == self.reference), None)
        if match is None:
            return False
        self.found = True
        manifests.remove(match)
        # The manifest itself stays, untagged, until deleted by digest or collected.
        if not any(d["digest"] == match["digest"] for d in manifests):
            manifests.append({k: v for k, v in match.items() if k != "annotations"})
        return True

    def raise_if_missing(self, name: str) -> None:
        if not self.found:
            raise ManifestUnknown(f"manifest {self.reference!r} unknown to repository {name!r}")


def find_descriptor(index: Index, name: str, reference: str) -> dict[str, Any]:
    if is_digest(reference):
        parse_digest(reference)
        descriptor = index.by_digest.get(reference)
    else:
        # An invalid tag cannot exist, so reading it is MANIFEST_UNKNOWN (404), as the spec's tests expect.
        descriptor = index.by_tag.get(reference)
    if descriptor is None:
        raise ManifestUnknown(f"manifest {reference!r} unknown to repository {name!r}")
    return descriptor


def unique_descriptors(index: Index) -> list[dict[str, Any]]:
    seen: set[str] = set()
    found = []
    for descriptor in index.manifests:
        if descriptor["digest"] not in seen:
            seen.add(descriptor["digest"])
            found.append(descriptor)
    return found


def referrer_entry(
    descriptor: dict[str, Any], data: bytes, subject: Digest, artifact_type: str | None
) -> dict[str, Any] | None:
    """The referrers-list entry for a manifest whose subject is `subject`, else None."""
    manifest = read_manifest(data, descriptor.get("mediaType"))
    if manifest is None or manifest.subject != str(subject):  # a foreign or damaged manifest is no referrer
        return None
    kind = manifest.artifact_type
    if artifact_type and kind != artifact_type:
        return None
    entry: dict[str, Any] = {
        "mediaType": manifest.media_type,
        "digest": descriptor["digest"],
        "size": descriptor["size"],
    }
    if kind:
        entry["artifactType"] = kind
    if manifest.annotations:
        entry["annotations"] = manifest.annotations
    return entry


def referrers_among(
    contents: Iterable[tuple[dict[str, Any], bytes | None]], subject: Digest, artifact_type: str | None
) -> list[dict[str, Any]]:
    """The referrers list from (descriptor, manifest bytes) pairs; bytes are None for a manifest missing
    from the store, which is no referrer."""
    found = []
    for descriptor, data in contents:
        entry = None if data is None else referrer_entry(descriptor, data, subject, artifact_type)
        if entry is not None:
            found.append(entry)
    return found


def check_references(name: str, manifest: ParsedManifest, index: Index | None, missing_blobs: list[str]) -> None:
    """MANIFEST_BLOB_UNKNOWN for the first blob the store lacks, or child manifest the index lacks."""
    if missing_blobs:
        ref = missing_blobs[0]
        raise ManifestBlobUnknown(
            f"manifest references blob {ref} unknown to repository {name!r}", detail={"digest": ref}
        )
    for ref in manifest.manifest_references():
        if index is None or ref not in index.by_digest:
            raise ManifestBlobUnknown(
                f"index references manifest {ref} unknown to repository {name!r}", detail={"digest": ref}
            )


def reachable_digests(index: Index, read: Callable[[str], bytes | None]) -> set[str]:
    """Every digest reachable from the index: manifests, their configs, layers and children.

    `read` gives a manifest's bytes by digest (None when missing). Stored manifests are read leniently
    (manifests.read_manifest): one this registry would refuse today still keeps what it references;
    only what is not a JSON object at all reaches nothing.
    """
    keep: set[str] = set()
    pending = [d["digest"] for d in index.manifests]
    while pending:
        digest = pending.pop()
        if digest in keep:
            continue
        keep.add(digest)
        data = read(digest)
        if data is None:
            continue
        parsed = read_manifest(data, None)
        if parsed is not None:
            pending.extend(parsed.references())
    return keep
