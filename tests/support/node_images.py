"""Container images made here, for a node that no registry can reach (tests/support/node.py).

`write_image_archive` writes an OCI image layout as one tar file (one uncompressed layer), named
with containerd's `io.containerd.image.name` annotation, which `ctr images import` reads
(`Node.import_image`). Two images are made from binaries on this machine:

- `pause_image`: our sandbox process `.tools/bin/zot-pause` (hack/pause.c), the node's pod sandbox.
- `busybox_image`: Debian's static busybox (package busybox-static) with applet links (sh, httpd,
  nslookup, wget, ...) and `/www/index.html`: the smoke tests' pods.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.support.paths import TOOLS_BIN

PAUSE_IMAGE = "zot.test/pause:1"
BUSYBOX_IMAGE = "zot.test/busybox:1"
BUSYBOX = Path("/bin/busybox")
BUSYBOX_APPLETS = (
    "sh", "cat", "echo", "env", "hostname", "httpd", "ls", "nc", "nslookup", "ps", "sleep", "test", "true",
    "wget",
)  # fmt: skip

OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(files: Mapping[str, Path | bytes], symlinks: Mapping[str, str], dirs: Sequence[str]) -> bytes:
    """A layer tar: `dirs` (mode 0755, or 1777 for tmp), `files` (path in the image -> a file to copy,
    mode kept, or bytes, mode 0644), `symlinks` (path -> target). Owner root, mtime 0: reproducible."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        parents = {str(Path(p).parent) for p in [*files, *symlinks]} - {"."}
        for d in sorted(set(dirs) | parents):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        for name, source in sorted(files.items()):
            data = source.read_bytes() if isinstance(source, Path) else source
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = (source.stat().st_mode & 0o7777) if isinstance(source, Path) else 0o644
            tar.addfile(info, io.BytesIO(data))
        for name, target in sorted(symlinks.items()):
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return out.getvalue()


def write_image_archive(
    archive: Path,
    name: str,
    files: Mapping[str, Path | bytes],
    symlinks: Mapping[str, str] | None = None,
    dirs: Sequence[str] = ("tmp", "etc", "proc", "sys", "dev"),
    entrypoint: Sequence[str] | None = None,
    cmd: Sequence[str] | None = None,
    env: Sequence[str] = ("PATH=/bin",),
) -> Path:
    """An OCI image layout in one tar file, for `ctr images import` (`Node.import_image`): one
    layer (see `_layer`), linux/amd64, the image name `name` in the index's annotations."""
    layer = _layer(files, symlinks or {}, dirs)
    image_config: dict[str, Any] = {"Env": list(env)}
    if entrypoint is not None:
        image_config["Entrypoint"] = list(entrypoint)
    if cmd is not None:
        image_config["Cmd"] = list(cmd)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": image_config,
            "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
            "history": [{"created_by": "tests/support/node_images.py"}],
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": _digest(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": _digest(layer), "size": len(layer)}],
        },
        sort_keys=True,
    ).encode()
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": _digest(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag},
                }
            ],
        },
        sort_keys=True,
    ).encode()
    blobs = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index}
    for blob in (layer, config, manifest):
        blobs[f"blobs/sha256/{_digest(blob).removeprefix('sha256:')}"] = blob
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for path, data in blobs.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return archive


def pause_image(archive: Path, pause: Path = TOOLS_BIN / "zot-pause") -> Path:
    """The pod sandbox image PAUSE_IMAGE: our zot-pause (hack/pause.c) as /pause, its entrypoint."""
    if not pause.is_file():
        raise FileNotFoundError(f"{pause} is missing: run `bash hack/tools.sh node`")
    return write_image_archive(archive, PAUSE_IMAGE, {"pause": pause}, entrypoint=["/pause"])


def busybox_image(archive: Path, busybox: Path = BUSYBOX) -> Path:
    """BUSYBOX_IMAGE: static busybox as /bin/busybox, a link per applet in BUSYBOX_APPLETS, and
    /www/index.html ("hello from busybox"). Command `sh`."""
    if not busybox.is_file():
        raise FileNotFoundError(f"{busybox} is missing: run `bash hack/tools.sh node` (Debian busybox-static)")
    return write_image_archive(
        archive,
        BUSYBOX_IMAGE,
        {"bin/busybox": busybox, "www/index.html": b"hello from busybox\n"},
        symlinks={f"bin/{applet}": "busybox" for applet in BUSYBOX_APPLETS},
        cmd=["sh"],
    )
