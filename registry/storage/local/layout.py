"""zot's layout (layout.py) as paths under the local store's root directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..layout import Layout


@dataclass(frozen=True)
class LocalLayout(Layout[Path]):
    root: Path

    def place(self, relative: str) -> Path:
        return self.root / relative
