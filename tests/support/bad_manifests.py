"""Manifests and indexes that break the OCI image spec (wrong JSON types, missing fields, nesting far
deeper than any manifest needs), each of which a registry must refuse with MANIFEST_INVALID 400."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.support.images import Image

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
TAG_ANNOTATION = "org.opencontainers.image.ref.name"


def manifest_document(image: Image) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(image.manifest)
    return document


def descriptor(image: Image) -> dict[str, Any]:
    return {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": len(image.manifest)}


def set_at(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change to a manifest: `layers.0.size` = value (a key of "-" deletes it)."""

    def change(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = document
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value == "-":
            del target[int(last) if isinstance(target, list) else last]
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return change


# Changes that make an image manifest invalid per the OCI image spec, each a MANIFEST_INVALID 400.
BAD_IMAGE_MANIFESTS: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("layers [null]", set_at("layers", [None])),
    ("layers [5]", set_at("layers", [5])),
    ("layers a string", set_at("layers", "sha256:00")),
    ("layers an object", set_at("layers", {"digest": "x"})),
    ("layers missing", set_at("layers", "-")),
    ("layers null", set_at("layers", None)),
    ("annotations 5", set_at("annotations", 5)),
    ("annotations a list", set_at("annotations", ["a"])),
    ("annotation value 5", set_at("annotations", {"a": 5})),
    ("annotation value null", set_at("annotations", {"a": None})),
    ("config null", set_at("config", None)),
    ("config a string", set_at("config", "sha256:00")),
    ("config without digest", set_at("config.digest", "-")),
    ("config without mediaType", set_at("config.mediaType", "-")),
    ("config without size", set_at("config.size", "-")),
    ("config size a string", set_at("config.size", "12")),
    ("config size negative", set_at("config.size", -1)),
    ("config size a float", set_at("config.size", 1.5)),
    ("config size true", set_at("config.size", True)),
    ("config digest 5", set_at("config.digest", 5)),
    ("config mediaType 5", set_at("config.mediaType", 5)),
    ("config mediaType empty", set_at("config.mediaType", "")),
    ("config annotations a list", set_at("config.annotations", [])),
    ("layer digest null", set_at("layers.0.digest", None)),
    ("layer digest invalid", set_at("layers.0.digest", "sha256:../../etc")),
    ("layer size null", set_at("layers.0.size", None)),
    ("layer urls a string", set_at("layers.0.urls", "http://x")),
    ("layer urls [5]", set_at("layers.0.urls", [5])),
    ("layer annotations 5", set_at("layers.0.annotations", 5)),
    ("layer data 5", set_at("layers.0.data", 5)),
    ("layer artifactType 5", set_at("layers.0.artifactType", 5)),
    ("artifactType 5", set_at("artifactType", 5)),
    ("artifactType a list", set_at("artifactType", ["a"])),
    ("mediaType 5", set_at("mediaType", 5)),
    ("schemaVersion a string", set_at("schemaVersion", "2")),
    ("schemaVersion true", set_at("schemaVersion", True)),
    ("subject 5", set_at("subject", 5)),
    ("subject null", set_at("subject", None)),
    ("subject without digest", set_at("subject", {"mediaType": OCI_MANIFEST, "size": 10})),
    ("subject digest invalid", set_at("subject", {"mediaType": OCI_MANIFEST, "size": 10, "digest": "x"})),
]

BAD_INDEXES: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("manifests [null]", set_at("manifests", [None])),
    ("manifests null", set_at("manifests", None)),
    ("manifests missing", set_at("manifests", "-")),
    ("manifests an object", set_at("manifests", {})),
    ("entry without size", set_at("manifests.0.size", "-")),
    ("entry platform 5", set_at("manifests.0.platform", 5)),
    ("entry platform without os", set_at("manifests.0.platform", {"architecture": "amd64"})),
    ("entry platform os 5", set_at("manifests.0.platform", {"architecture": "amd64", "os": 5})),
    ("entry platform features 5", set_at("manifests.0.platform", {"architecture": "a", "os": "l", "os.features": 5})),
    ("annotations [1]", set_at("annotations", [1])),
    ("subject a list", set_at("subject", [])),
]


def deep_json(depth: int, opening: str = "[", closing: str = "]") -> str:
    return opening * depth + closing * depth


def invalid_manifests(image: Image, subject: Image) -> list[tuple[str, str, bytes]]:
    """(what is wrong, media type, body): each must be refused with MANIFEST_INVALID 400, in any store."""
    index: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{**descriptor(subject), "platform": {"architecture": "amd64", "os": "linux"}}],
    }
    cases: list[tuple[str, str, bytes]] = []
    for label, change in BAD_IMAGE_MANIFESTS:
        document = manifest_document(image)
        change(document)
        cases.append((label, OCI_MANIFEST, json.dumps(document).encode()))
    for label, change in BAD_INDEXES:
        document = json.loads(json.dumps(index))
        change(document)
        cases.append((label, OCI_INDEX, json.dumps(document).encode()))
    # 6. Nesting deeper than any manifest needs: MANIFEST_INVALID, not a RecursionError.
    deep = manifest_document(image)
    cases += [
        ("100,000 nested arrays", OCI_MANIFEST, deep_json(100_000).encode()),
        ("100,000 nested objects", OCI_MANIFEST, ('{"a":' * 100_000 + "1" + "}" * 100_000).encode()),
        (
            "deep annotations",
            OCI_MANIFEST,
            json.dumps({**deep, "annotations": {}})
            .replace('"annotations": {}', '"annotations": ' + deep_json(100_000))
            .encode(),
        ),
        (
            "deep unknown field",
            OCI_MANIFEST,
            json.dumps({**deep, "x": 0}).replace('"x": 0', '"x": ' + '{"y":' * 100_000 + "1" + "}" * 100_000).encode(),
        ),
    ]
    return cases
