"""Shared test helpers: free loopback ports, a registry started as a real process, OCI content."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
TOOLS_BIN = REPO_ROOT / ".tools" / "bin"
# zot's published scale-out example configs, as users paste them (tests/data/zot-examples/README.md).
ZOT_EXAMPLES = REPO_ROOT / "tests" / "data" / "zot-examples"


def tool(name: str) -> str:
    """Path of a pinned test peer from .tools/bin, or a system binary (skopeo from apt)."""
    local = TOOLS_BIN / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is not installed: run `make tools`")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def write_htpasswd(path: Path, users: dict[str, str]) -> Path:
    lines = [f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=5)).decode()}" for user, pw in users.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class RegistryProcess:
    """`zot-registry serve` running as a separate process on a loopback address."""

    config_path: Path
    config: dict[str, Any]
    log_path: Path
    workers: int = 2
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return str(self.config["http"]["address"])

    @property
    def port(self) -> int:
        return int(self.config["http"]["port"])

    @property
    def scheme(self) -> str:
        return "https" if self.config["http"].get("tls") else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def root(self) -> Path:
        return Path(self.config["storage"]["rootDirectory"])

    def start(self, timeout: float = 30.0) -> RegistryProcess:
        self.config_path.write_text(json.dumps(self.config, indent=2))
        env = {**os.environ, **self.env}
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "zot_registry.cli", "serve", str(self.config_path),
                 "--workers", str(self.workers)],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.log_path.read_text()[-3000:]
                raise RuntimeError(f"registry exited with {self.process.returncode}:\n{output}")
            try:
                if httpx.get(f"{self.url}/livez", verify=False, timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"registry did not start in {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def registry_config(root: Path, port: int, host: str = "127.0.0.1", **http: Any) -> dict[str, Any]:
    return {
        "distSpecVersion": "1.1.1",
        "storage": {"rootDirectory": str(root), "dedupe": True, "gc": False},
        "http": {"address": host, "port": str(port), **http},
        "log": {"level": "warn"},
    }


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


def make_image(seed: str, layer_sizes: tuple[int, ...] = (1024, 2048), subject: dict[str, Any] | None = None,
               artifact_type: str | None = None) -> Image:
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    layers = [hashlib.sha256(f"{seed}-{i}".encode()).digest() * (size // 32 + 1) for i, size in enumerate(layer_sizes)]
    layers = [layer[:size] for layer, size in zip(layers, layer_sizes, strict=True)]
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(layer),
                    "size": len(layer)} for layer in layers],
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
    return client.put(f"/v2/{repo}/manifests/{reference}", content=image.manifest,
                      headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
