"""A site of the adversarial storage tests: one running registry, its root, and a sentinel folder around
the root, with checks that every answer is sane and nothing outside the root is read or written."""

from __future__ import annotations

import http.client
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.bad_manifests import OCI_MANIFEST
from tests.support.checks import (
    Surroundings,
    assert_no_traceback,
    assert_root_intact,
    assert_sane_response,
    oci_error_codes,
)
from tests.support.images import OCTETS, Image, sha256
from tests.support.registry import RegistryProcess


@dataclass
class Site:
    """One running registry, its root, and the sentinel folder around the root."""

    registry: RegistryProcess
    root: Path
    surroundings: Surroundings
    client: httpx.Client
    answers: int = 0

    def check(
        self, response: httpx.Response, case: str, statuses: set[int] | None = None, code: str | None = None
    ) -> httpx.Response:
        assert_sane_response(response, case)
        self.surroundings.assert_not_leaked(response, case)
        if statuses is not None:
            assert response.status_code in statuses, f"{case}: {response.status_code} {response.text[:300]}"
        if code is not None:
            assert code in oci_error_codes(response), f"{case}: wanted {code}, got {response.text[:300]}"
        self.answers += 1
        return response

    def raw(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> httpx.Response:
        """Sends `path` exactly as written: httpx would resolve `..` and re-encode it."""
        connection = http.client.HTTPConnection(self.registry.host, self.registry.port, timeout=60)
        try:
            connection.request(
                method, path, body=body if body or method in ("PUT", "POST", "PATCH") else None, headers=headers or {}
            )
            answer = connection.getresponse()
            content = answer.read()
            return httpx.Response(
                answer.status,
                headers=answer.getheaders(),
                content=content,
                request=httpx.Request(method, self.registry.url + "/" + path.lstrip("/")),
            )
        finally:
            connection.close()

    def push(self, repo: str, image: Image, tag: str | None = None) -> httpx.Response:
        for blob in [image.config, *image.layers]:
            self.check(
                self.client.post(
                    f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(blob)}, content=blob, headers=OCTETS
                ),
                f"push {repo} blob",
                {201},
            )
        return self.check(
            self.client.put(
                f"/v2/{repo}/manifests/{tag or image.digest}",
                content=image.manifest,
                headers={"Content-Type": OCI_MANIFEST},
            ),
            f"push {repo} manifest",
        )

    def assert_pulls(self, repo: str, image: Image, tag: str) -> None:
        got = self.check(
            self.client.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST}),
            f"pull {repo}:{tag}",
            {200},
        )
        assert got.content == image.manifest, f"{repo}:{tag} changed"
        for blob in [image.config, *image.layers]:
            pulled = self.check(self.client.get(f"/v2/{repo}/blobs/{sha256(blob)}"), f"pull {repo} blob", {200})
            assert pulled.content == blob, f"{repo}: blob {sha256(blob)} changed"

    def finish(self) -> None:
        """Nothing appeared outside the root, no traceback was logged, every stored blob is whole."""
        assert self.surroundings.new_files() == set()
        assert_no_traceback(self.registry.log_path.read_text(errors="replace"), "registry log")
        assert_root_intact(self.root)


SiteFactory = Callable[..., Site]


def files_containing(folder: Path, secret: bytes) -> list[Path]:
    found = []
    for directory, _, files in os.walk(folder):
        for name in files:
            path = Path(directory, name)
            if path.is_file() and secret in path.read_bytes():
                found.append(path)
    return found
