"""Go durations ("1h", "30m", "1h30m", "10s", "1.5h", "300ms"): the one parser for the registry's
config and the operator's ZotCluster, so both accept exactly what zot (time.ParseDuration) does."""

from __future__ import annotations

import re

_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Parse a Go duration string (time.ParseDuration's syntax) into seconds. Raises ValueError."""
    rest, sign = text, 1.0
    if rest[:1] in ("+", "-"):
        sign = -1.0 if rest[0] == "-" else 1.0
        rest = rest[1:]
    if rest == "0":
        return 0.0
    total, pos = 0.0, 0
    while pos < len(rest):
        match = _DURATION_PART.match(rest, pos)
        if match is None:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not rest or pos != len(rest):
        raise ValueError(f"invalid duration {text!r}")
    return sign * total
