"""A one-file OCI image that local mode writes into its state folder, so that the first push needs no internet.

The push command `local up` prints copies it with skopeo (`oci:<state>/sample-image:v1`): an image
layout (index.json, oci-layout, blobs/sha256/...) as `skopeo copy ... oci:DIR:TAG` writes one, holding
a real image (a gzip layer with /hello.txt, a config for this machine's architecture), so that what a
newcomer pushes is what any image push is. The bytes never change (tar and gzip times are 0): written
again on every start, the same digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import platform
import tarfile
from pathlib import Path
from typing import Any

FOLDER = "sample-image"
TAG = "v1"
GREETING = b"Hello from zot-operator's local mode.\n"
# Go's GOARCH names, as image configs write them.
_ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def _layer() -> tuple[bytes, bytes]:
    """(the tar, the gzip of it), both reproducible."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mode, info.mtime = len(GREETING), 0o644, 0
        tar.addfile(info, io.BytesIO(GREETING))
    compressed = io.BytesIO()
    with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0) as stream:
        stream.write(raw.getvalue())
    return raw.getvalue(), compressed.getvalue()


def _digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": _digest(data), "size": len(data), **extra}


def write_sample_image(folder: Path) -> Path:
    """The image layout under `folder` (created or rewritten); its path, for `oci:<path>:v1`."""
    tar, layer = _layer()
    config = json.dumps(
        {
            "architecture": _ARCHITECTURES.get(platform.machine().lower(), platform.machine().lower()),
            "os": "linux",
            "config": {"Cmd": ["/hello.txt"]},
            "rootfs": {"type": "layers", "diff_ids": [_digest(tar)]},
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": _descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": [_descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer)],
        },
        sort_keys=True,
    ).encode()
    root = folder / FOLDER
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for blob in (layer, config, manifest):
        (blobs / hashlib.sha256(blob).hexdigest()).write_bytes(blob)
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    reference = {"org.opencontainers.image.ref.name": TAG}
    index = {
        "schemaVersion": 2,
        "manifests": [_descriptor("application/vnd.oci.image.manifest.v1+json", manifest, annotations=reference)],
    }
    (root / "index.json").write_text(json.dumps(index))
    return root
