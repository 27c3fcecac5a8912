"""OCI content for tests: digests, small generated images, pushing them, checking they pull back
whole, and OCI image layout folders as skopeo and oras read them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MANIFEST = {"Content-Type": OCI_MANIFEST}
OCTETS = {"Content-Type": "application/octet-stream"}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Image:
    config: bytes
    layers: list[bytes]
    manifest: bytes

    @property
    def digest(self) -> str:
        return sha256(self.manifest)


def make_image(
    seed: str,
    layer_sizes: tuple[int, ...] = (1024, 2048),
    subject: dict[str, Any] | None = None,
    artifact_type: str | None = None,
) -> Image:
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    layers = [hashlib.sha256(f"{seed}-{i}".encode()).digest() * (size // 32 + 1) for i, size in enumerate(layer_sizes)]
    layers = [layer[:size] for layer, size in zip(layers, layer_sizes, strict=True)]
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(config),
            "size": len(config),
        },
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(layer), "size": len(layer)}
            for layer in layers
        ],
    }
    if subject:
        manifest["subject"] = subject
    if artifact_type:
        manifest["artifactType"] = artifact_type
    return Image(config, layers, json.dumps(manifest, indent=1).encode())


def push_image(client: httpx.Client, repo: str, image: Image, tag: str | None = None) -> httpx.Response:
    for blob in [image.config, *image.layers]:
        response = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(blob)}, content=blob)
        assert response.status_code == 201, response.text
    reference = tag or image.digest
    return client.put(
        f"/v2/{repo}/manifests/{reference}", content=image.manifest, headers={"Content-Type": OCI_MANIFEST}
    )


def push_blob_in_pieces(http: httpx.Client, repo: str, blob: bytes, piece: int = 1 << 20) -> int:
    """An upload session: POST, PATCHes of `piece` bytes, PUT ?digest. The first status that is not the
    expected one (202 for a PATCH), else the PUT's (201 when stored)."""
    location = http.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
    for start in range(0, len(blob), piece):
        response = http.patch(location, content=blob[start : start + piece], headers=OCTETS)
        if response.status_code != 202:
            return response.status_code
        location = response.headers["Location"]
    return http.put(location, params={"digest": sha256(blob)}).status_code


def assert_pullable(http: httpx.Client, repo: str, image: Image, tag: str = "v1") -> None:
    manifest = http.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST["Content-Type"]})
    assert manifest.status_code == 200, f"{repo} via {http.base_url}: {manifest.status_code} {manifest.text}"
    assert manifest.content == image.manifest
    for blob in [image.config, *image.layers]:
        pulled = http.get(f"/v2/{repo}/blobs/{sha256(blob)}")
        assert pulled.status_code == 200 and sha256(pulled.content) == sha256(blob), f"{repo} blob via {http.base_url}"


def assert_absent_or_whole(clients: list[httpx.Client], repo: str, image: Image, put_sent: bool) -> None:
    """A push that did not get its 201: no manifest if its PUT never left; if the PUT left and the answer
    was lost (the owner was killed after storing it), either no manifest or the whole image, the same
    through every member. Never a manifest whose blobs are missing or wrong."""
    statuses = [http.get(f"/v2/{repo}/manifests/v1").status_code for http in clients]
    if not put_sent or statuses[0] == 404:
        assert set(statuses) == {404}, f"{repo} (manifest PUT sent: {put_sent}): manifest statuses {statuses}"
        return
    for http in clients:
        assert_pullable(http, repo, image)


def write_oci_layout(folder: Path, tag: str, seed: str, layer_sizes: tuple[int, ...]) -> str:
    """A multi-layer OCI image in an image layout folder, as skopeo reads it; returns the manifest digest."""
    image = make_image(seed, layer_sizes)
    blobs = folder / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for blob in [image.config, *image.layers, image.manifest]:
        (blobs / sha256(blob)[7:]).write_bytes(blob)
    (folder / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (folder / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": OCI_MANIFEST,
                        "digest": image.digest,
                        "size": len(image.manifest),
                        "annotations": {"org.opencontainers.image.ref.name": tag},
                    }
                ],
            }
        )
    )
    return image.digest


def blob_files(layout: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (layout / "blobs" / "sha256").iterdir()}
