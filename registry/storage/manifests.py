"""Manifest media types and the checks a pushed manifest must pass."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..digests import parse_digest
from ..errors import DigestInvalid, ManifestInvalid

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
IMAGE_MANIFESTS = {OCI_MANIFEST, DOCKER_MANIFEST}
INDEX_MANIFESTS = {OCI_INDEX, DOCKER_MANIFEST_LIST}
MANIFEST_MEDIA_TYPES = IMAGE_MANIFESTS | INDEX_MANIFESTS
MAX_MANIFEST_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True)
class ParsedManifest:
    media_type: str
    document: dict[str, Any]

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_MANIFESTS

    def blob_references(self) -> list[str]:
        """Digests of config and layers (image) that must exist before the manifest is accepted."""
        if self.is_index:
            return []
        refs = [self.document["config"]["digest"]] if isinstance(self.document.get("config"), dict) else []
        for layer in self.document.get("layers") or []:
            # Foreign layers (with `urls`) live elsewhere by definition.
            if isinstance(layer, dict) and not layer.get("urls"):
                refs.append(layer.get("digest", ""))
        return refs

    def manifest_references(self) -> list[str]:
        if not self.is_index:
            return []
        return [m.get("digest", "") for m in self.document.get("manifests") or [] if isinstance(m, dict)]

    @property
    def subject(self) -> str | None:
        subject = self.document.get("subject")
        return subject.get("digest") if isinstance(subject, dict) else None

    @property
    def artifact_type(self) -> str | None:
        if self.document.get("artifactType"):
            return str(self.document["artifactType"])
        config = self.document.get("config")
        if not self.is_index and isinstance(config, dict):
            return config.get("mediaType")
        return None


def parse_manifest(body: bytes, content_type: str | None) -> ParsedManifest:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestInvalid(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ManifestInvalid("manifest must be a JSON object")
    declared = document.get("mediaType")
    content_type = (content_type or "").split(";")[0].strip() or None
    if declared and content_type and declared != content_type:
        raise ManifestInvalid(f"mediaType {declared!r} does not match Content-Type {content_type!r}")
    media_type = declared or content_type
    if media_type not in MANIFEST_MEDIA_TYPES:
        raise ManifestInvalid(f"unsupported manifest media type: {media_type!r}")
    if document.get("schemaVersion") != 2:
        raise ManifestInvalid("schemaVersion must be 2")
    manifest = ParsedManifest(media_type, document)
    for digest in manifest.blob_references() + manifest.manifest_references():
        try:
            parse_digest(digest)
        except DigestInvalid as exc:
            raise ManifestInvalid(f"manifest references an invalid digest: {exc.message}") from None
    if not manifest.is_index and not isinstance(document.get("config"), dict):
        raise ManifestInvalid("image manifest has no config descriptor")
    return manifest
