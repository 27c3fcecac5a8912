"""The project's image as an OCI archive (hack/build-image.sh, without Docker), for the tests that
run it: tests/image under runc, tests/node on a real kubelet."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from zot_registry.version import VERSION

from tests.support.paths import REPO_ROOT, TOOLS_DIR

ARCHIVE = TOOLS_DIR / "images" / f"zot-operator-{VERSION}.tar"


def project_image_archive() -> Path:
    """The archive of the current sources: built, or found up to date (about a second), under the
    .tools lock that `make test`'s own tools step holds while it builds it."""
    if os.environ.get("TOOLS_SKIP_IMAGE") == "1":
        pytest.skip("TOOLS_SKIP_IMAGE=1: the image is not built")
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / "tools.sh"), "image"], capture_output=True, text=True, timeout=1800
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return ARCHIVE
