"""Parsers of the values zot writes as strings: Go durations (as zot's readers take them), the
daily gc time window "HH:MM-HH:MM", cluster members "host:port", and text the operating system
gets. Each raises the message the user sees.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from ..durations import parse_duration
from .messages import fail, show

# --------------------------------------------------------------------------------------------
# Go durations ("1h", "30m", "1h30m", "10s", "1.5h", "300ms")
# --------------------------------------------------------------------------------------------


def _duration(value: Any) -> float:
    # Only strings: zot (mapstructure) would read a bare JSON number as nanoseconds, which is
    # never what a user who writes 3600 means, so it is better refused than guessed.
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise fail(f'must be a duration like "1h", "30m", "1h30m" or "10s", got {show(value)}') from None
    else:
        raise fail(
            f'must be a duration string like "1h", "30m" or "10s", got {show(value)} '
            "(zot would read a bare number as nanoseconds)"
        )
    if seconds < 0:
        raise fail(f"must not be negative, got {show(value)}")
    return seconds


def _timeout(value: Any) -> float:
    """http.readTimeout / writeTimeout: a Go duration; zero or negative means no timeout, as in zot."""
    if isinstance(value, str) and value.startswith("-"):
        try:
            parse_duration(value)
        except ValueError:
            pass  # _duration words the error
        else:
            return 0.0
    return _duration(value)


# Fields that hold a duration: the string is converted before pydantic's strict type check sees it.
# Timeout includes None, the field's default (not set); a null written in the file is refused, as
# is any value that is not a duration string.
Duration = Annotated[float, BeforeValidator(_duration)]
Timeout = Annotated[float | None, BeforeValidator(_timeout)]

# --------------------------------------------------------------------------------------------
# The daily gc window ("HH:MM-HH:MM", UTC)
# --------------------------------------------------------------------------------------------

_TIME_OF_DAY = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


def parse_port(value: Any, hint: str = "") -> int:
    """A port number 1-65535, as a JSON number or a string of digits (zot writes http.port as a
    string; its viper converts either). `hint` follows the message for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        port = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        port = int(value)
    else:
        port = -1
    if not 1 <= port <= 65535:
        raise fail(f"must be a port number 1-65535, got {show(value)}{hint}")
    return port


def parse_time_window(text: str) -> tuple[int, int] | None:
    """zot's storage.gcTimeWindow, "HH:MM-HH:MM" in UTC, as minutes since midnight (start, end);
    None for "", which means no restriction. The window may wrap past midnight. Raises ValueError."""
    if text == "":
        return None
    start, sep, end = text.partition("-")
    if not sep:
        raise ValueError('expected "HH:MM-HH:MM" (UTC), e.g. "01:00-08:00"')
    minutes = []
    for part in (start.strip(), end.strip()):
        match = _TIME_OF_DAY.fullmatch(part)
        if match is None:
            raise ValueError(f'{show(part)} is not a 24h time "HH:MM"; expected "HH:MM-HH:MM" (UTC)')
        minutes.append(int(match.group(1)) * 60 + int(match.group(2)))
    if minutes[0] == minutes[1]:
        raise ValueError("the start and the end of the window cannot be equal")
    return minutes[0], minutes[1]


# --------------------------------------------------------------------------------------------
# Cluster members ("host:port")
# --------------------------------------------------------------------------------------------


def split_member(member: str) -> tuple[str, int]:
    """Split a cluster member "host:port" (or "[v6addr]:port") into host and port.
    Raises ValueError with a message for the user."""
    if "://" in member:
        raise ValueError(f"{show(member)} must be host:port, without a scheme")
    if member.startswith("["):
        host, sep, port = member[1:].partition("]:")
        if not sep:
            raise ValueError(f'{show(member)} must be "[address]:port" for an IPv6 address')
    else:
        host, sep, port = member.rpartition(":")
        if not sep:
            raise ValueError(f"{show(member)} has no port: write it as host:port, e.g. {show(member + ':5000')}")
        if ":" in host:
            raise ValueError(f'{show(member)}: an IPv6 address needs brackets, as in "[::1]:5000"')
    if not host:
        raise ValueError(f"{show(member)} has no host: write it as host:port")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{show(member)} must end with a port number 1-65535")
    return host, int(port)


def _member(value: str) -> str:
    try:
        split_member(value)
    except ValueError as err:
        raise fail(str(err)) from None
    return value


Member = Annotated[str, AfterValidator(_member)]


def _no_nul(value: str) -> str:
    # JSON allows "\u0000"; no file name or address does, and the OS calls would raise on it.
    if "\x00" in value:
        raise fail(f"must not contain a NUL character (\\u0000), got {show(value)}")
    return value


# A file or directory name, or an address: text the operating system gets.
OSText = Annotated[str, AfterValidator(_no_nul)]
