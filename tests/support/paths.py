"""Where things are: the repository, the pinned test peers in .tools/, zot's published examples."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_DIR = REPO_ROOT / ".tools"
TOOLS_BIN = TOOLS_DIR / "bin"
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
