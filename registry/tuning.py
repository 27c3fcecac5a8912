"""Limits and timeouts an operator may tune through the environment (tests shorten them).

The defaults suit a registry on a LAN; a value that does not parse, or is negative, leaves the
default in place rather than failing a worker at start.
"""

from __future__ import annotations

import os


def env_seconds(variable: str, default: float) -> float:
    try:
        value = float(os.environ.get(variable, default))
    except ValueError:
        return default
    return value if value >= 0 else default


def env_int(variable: str, default: int) -> int:
    try:
        value = int(os.environ.get(variable, default))
    except ValueError:
        return default
    return value if value >= 0 else default
