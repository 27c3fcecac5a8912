"""Request bodies sent slowly, piece by piece, so a test can act while one is still streaming."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator


def trickle(data: bytes, started: threading.Event, piece: int = 64 << 10, pause: float = 0.05) -> Iterator[bytes]:
    """`data` in pieces of `piece` bytes, `pause` seconds apart; `started` is set once the first is out."""
    for offset in range(0, len(data), piece):
        yield data[offset : offset + piece]
        started.set()
        time.sleep(pause)
