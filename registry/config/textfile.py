"""Reading a JSON text file the config names (the config itself, sync's and LDAP's credentials
files) with one set of messages: missing, a directory, unreadable, too large, not UTF-8; and, for
a credentials file, empty, nested too deeply, not an object."""

from __future__ import annotations

import os
from typing import Any

from .jsontext import parse_json
from .messages import ConfigError, show


def read_json_text(path: str | os.PathLike[str], limit: int, what: str, json_hint: str) -> str:
    """The file's text (a byte order mark tolerated). Raises ConfigError naming `path` and `what`
    ("config file") for the user; `json_hint` ends the message for bytes that are not UTF-8."""
    try:
        with open(path, "rb") as handle:  # a pipe (/dev/stdin) works too
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise ConfigError(f"{path}: more than {limit >> 20} MiB, too large for a {what}")
        return data.decode("utf-8-sig")  # -sig: tolerate a byte order mark
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a {what}") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); {json_hint}") from None
    except (OSError, ValueError) as err:  # ValueError: a NUL in the name
        raise ConfigError(f"{path}: cannot read: {getattr(err, 'strerror', None) or err}") from None


def read_json_object(path: str, limit: int, shape: str) -> tuple[str, dict[str, Any]]:
    """A credentials file's text and its top-level object. `shape` says what the file holds ("a
    credentials file is a JSON object like ..."), for the messages when it does not."""
    text = read_json_text(path, limit, "credentials file", "a credentials file is JSON")
    if not text.strip():
        raise ConfigError(f"{path}: the file is empty; {shape}")
    try:
        data = parse_json(text, path)
    except RecursionError:
        raise ConfigError(f"{path}: the JSON is nested too deeply to be a credentials file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: {shape}, got {show(data)}")
    return text, data
