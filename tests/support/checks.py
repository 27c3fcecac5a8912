"""What every adversarial case must leave true, whatever it sent.

- no 5xx answer, except 503 and 507 that say why in an OCI error body;
- no traceback in any answer or command output;
- nothing read or written outside the root directory (a sentinel file outside it never shows up
  in an answer, and the folder around the root gains no file);
- every blob stored under a digest hashes to that digest, and every index.json parses.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import httpx

# 503 (a backend or peer is down) and 507 (the disk is full) are honest answers when they say why.
EXPLAINED_5XX = {503, 507}
TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "/', '  File "')


def assert_no_traceback(text: str | bytes, what: str = "output") -> None:
    shown = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    for marker in TRACEBACK_MARKERS:
        assert marker not in shown, f"traceback in {what}:\n{shown[-3000:]}"


def oci_error_codes(response: httpx.Response) -> list[str]:
    try:
        body = response.json()
        return [str(entry["code"]) for entry in body["errors"]]
    except (ValueError, KeyError, TypeError):
        return []


def assert_sane_response(response: httpx.Response, case: str = "") -> None:
    """A 4xx or 2xx; a 5xx only as 503/507 with an OCI error body saying why; never a traceback."""
    label = f"{case}: {response.request.method} {response.request.url} -> {response.status_code}"
    if response.status_code >= 500:
        assert response.status_code in EXPLAINED_5XX, f"{label}: {response.text[:500]}"
        body = response.json()
        assert body["errors"][0]["message"], label
    if response.status_code >= 400 and response.request.method != "HEAD":
        assert oci_error_codes(response), f"{label}: not an OCI error body: {response.text[:500]}"
    assert_no_traceback(response.content, label)


@dataclass
class BadBlob:
    path: Path
    reason: str


def _expected_digest(path: Path) -> tuple[str, str] | None:
    """(algorithm, hex) when `path` is .../blobs/<alg>/<hex> in an OCI layout; else None."""
    if path.parent.parent.name != "blobs" or path.parent.name not in ("sha256", "sha512"):
        return None
    return path.parent.name, path.name


def bad_blobs(root: Path) -> list[BadBlob]:
    """Every stored blob whose bytes do not hash to its name, and every index.json that does not parse."""
    found: list[BadBlob] = []
    for directory, _, files in os.walk(root):
        here = Path(directory)
        for name in files:
            path = here / name
            if name == "index.json" and ".uploads" not in path.parts:
                try:
                    document = json.loads(path.read_bytes())
                    assert isinstance(document, dict)
                except (ValueError, AssertionError):
                    found.append(BadBlob(path, "index.json does not parse as a JSON object"))
                continue
            expected = _expected_digest(path)
            if expected is None or name.startswith("."):
                continue
            algorithm, hex_digest = expected
            hasher = hashlib.new(algorithm)
            with open(path, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    hasher.update(chunk)
            if hasher.hexdigest() != hex_digest:
                found.append(BadBlob(path, f"{path.stat().st_size} bytes hash to {algorithm}:{hasher.hexdigest()}"))
    return found


def assert_root_intact(root: Path) -> None:
    bad = bad_blobs(root)
    assert not bad, "blobs that do not hash to their digest:\n" + "\n".join(f"{b.path}: {b.reason}" for b in bad)


@dataclass
class Surroundings:
    """A sentinel file beside the root, and the files around it, to tell whether anything escaped the root."""

    folder: Path
    root: Path
    sentinel: Path
    secret: bytes
    before: set[Path]

    @classmethod
    def around(cls, folder: Path, root: Path) -> Surroundings:
        secret = os.urandom(24).hex().encode()
        sentinel = folder / "outside" / "secret.txt"
        sentinel.parent.mkdir(parents=True, exist_ok=True)
        sentinel.write_bytes(secret)
        return cls(folder, root, sentinel, secret, cls._files(folder, root))

    @staticmethod
    def _files(folder: Path, root: Path) -> set[Path]:
        found: set[Path] = set()
        for directory, subdirs, files in os.walk(folder):
            if Path(directory) == root:
                subdirs[:] = []
                continue
            subdirs[:] = [d for d in subdirs if Path(directory, d) != root]
            found.update(Path(directory, f) for f in files)
        return found

    def assert_not_leaked(self, response: httpx.Response, case: str = "") -> None:
        assert self.secret not in response.content, f"{case}: a file outside the root was served"

    def new_files(self, ignore_suffixes: tuple[str, ...] = (".log", ".json", ".stdout")) -> set[Path]:
        """Files that appeared outside the root since `around` (logs and configs of the test excluded)."""
        return {p for p in self._files(self.folder, self.root) - self.before if not p.name.endswith(ignore_suffixes)}
