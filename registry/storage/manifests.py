"""Manifest media types, the checks a pushed manifest must pass, and reading stored ones."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import ManifestInvalid
from .schema import annotations_ok, check_manifest

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
    """A manifest document; its references are read defensively, as a stored one may be foreign."""

    media_type: str
    document: dict[str, Any]

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_MANIFESTS

    def blob_references(self) -> list[str]:
        """Digests of config and layers (image) that must exist before the manifest is accepted."""
        if self.is_index:
            return []
        refs = [_digest_in(self.document.get("config"))]
        layers = self.document.get("layers")
        for layer in layers if isinstance(layers, list) else []:
            # Foreign layers (with `urls`) live elsewhere by definition.
            if isinstance(layer, dict) and not layer.get("urls"):
                refs.append(_digest_in(layer))
        return [ref for ref in refs if ref]

    def manifest_references(self) -> list[str]:
        if not self.is_index:
            return []
        manifests = self.document.get("manifests")
        refs = [_digest_in(m) for m in manifests] if isinstance(manifests, list) else []
        return [ref for ref in refs if ref]

    def references(self) -> list[str]:
        """Every digest this manifest keeps alive (garbage collection): config, all layers, children."""
        keys = ("manifests",) if self.is_index else ("config", "layers")
        refs = []
        for key in keys:
            value = self.document.get(key)
            for item in value if isinstance(value, list) else [value]:
                refs.append(_digest_in(item))
        return [ref for ref in refs if ref]

    @property
    def subject(self) -> str | None:
        return _digest_in(self.document.get("subject")) or None

    @property
    def artifact_type(self) -> str | None:
        kind = self.document.get("artifactType")
        if isinstance(kind, str) and kind:
            return kind
        config = self.document.get("config")
        if not self.is_index and isinstance(config, dict) and isinstance(config.get("mediaType"), str):
            return str(config["mediaType"])
        return None

    @property
    def annotations(self) -> dict[str, str] | None:
        value = self.document.get("annotations")
        return value if value and annotations_ok(value) else None


def _digest_in(descriptor: Any) -> str:
    digest = descriptor.get("digest") if isinstance(descriptor, dict) else None
    return digest if isinstance(digest, str) else ""


def load_json(body: bytes) -> Any:
    """json.loads for bytes from outside: MANIFEST_INVALID, not a 500, for bad or too deeply nested JSON."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestInvalid(f"manifest is not valid JSON: {exc}") from None
    except RecursionError:
        # The decoder recurses per level: nesting past the interpreter's limit (about 1000) is no manifest.
        raise ManifestInvalid("manifest is not valid JSON: nested too deeply") from None


def parse_manifest(body: bytes, content_type: str | None) -> ParsedManifest:
    """A pushed manifest, checked before it is stored: JSON, media type, shape (schema.py)."""
    document = load_json(body)
    if not isinstance(document, dict):
        raise ManifestInvalid("manifest must be a JSON object")
    declared = document.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise ManifestInvalid("manifest mediaType must be a string")
    content_type = (content_type or "").split(";")[0].strip() or None
    if declared and content_type and declared != content_type:
        raise ManifestInvalid(f"mediaType {declared!r} does not match Content-Type {content_type!r}")
    media_type = declared or content_type
    if media_type not in MANIFEST_MEDIA_TYPES:
        raise ManifestInvalid(f"unsupported manifest media type: {media_type!r}")
    manifest = ParsedManifest(media_type, document)
    check_manifest(document, manifest.is_index)
    return manifest


def read_manifest(data: bytes, media_type: str | None) -> ParsedManifest | None:
    """A stored manifest (ours, zot's or foreign) for its references; None when it is no manifest.

    Lenient on purpose: garbage collection keeps what a stored manifest references, so a manifest
    this registry would refuse today (a missing mediaType field, a foreign shape) must still keep
    its blobs. The kind comes from the document's mediaType, else the index descriptor's, else
    its shape (a `manifests` list makes an index).
    """
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    declared = document.get("mediaType")
    kind = declared if isinstance(declared, str) and declared in MANIFEST_MEDIA_TYPES else media_type
    if kind not in MANIFEST_MEDIA_TYPES:
        kind = OCI_INDEX if isinstance(document.get("manifests"), list) else OCI_MANIFEST
    return ParsedManifest(str(kind), document)
