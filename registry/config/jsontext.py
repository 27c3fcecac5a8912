"""The config's JSON text: parsing it with messages that say what to fix (trailing commas, comments,
single quotes, NaN), line and column of an offset, and the offset of every key (json.loads does not
report them), so that any problem can point at its place in the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .messages import ConfigError, PathKey

# --------------------------------------------------------------------------------------------
# JSON parsing with messages that say what to fix
# --------------------------------------------------------------------------------------------


def parse_json(text: str, source: str) -> Any:
    """The JSON document in `text`. Raises ConfigError saying where its syntax is wrong and how to
    fix it; `source` names the file in messages."""
    if not text.strip():
        raise ConfigError(f"{source}: the file is empty; a zot config is a JSON object")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        raise ConfigError(_describe_json_error(err, text, source)) from None
    except _NotJSON as err:
        line, col = line_col(text, text.find(err.token))
        raise ConfigError(f"{source}:{line}:{col}: {err.token} is not valid JSON; write a number or null") from None


class _NotJSON(ValueError):
    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.token = token


def _reject_constant(token: str) -> Any:
    # Python's json reads NaN and Infinity; Go's (and so zot) does not.
    raise _NotJSON(token)


def _describe_json_error(err: json.JSONDecodeError, text: str, source: str) -> str:
    where = f"{source}:{err.lineno}:{err.colno}"
    comma = _trailing_comma(text, err.pos)
    if comma is not None:
        what = "member of an object" if text[err.pos] == "}" else "element of an array"
        line, col = line_col(text, comma)
        return f"{where}: trailing comma after the last {what}: remove the ',' at line {line}, column {col}"
    char = text[err.pos] if err.pos < len(text) else ""
    if char == "/":
        hint = "comments are not allowed in JSON"
    elif char == "'":
        hint = "JSON strings and keys need double quotes, not single quotes"
    elif err.pos >= len(text.rstrip()):
        hint = "the file ends before the JSON document does (a missing '}' or ']'?)"
    elif err.msg == "Extra data":
        hint = "unexpected text after the end of the JSON document"
    else:
        hint = f"invalid JSON: {err.msg}"
    suffix = Path(source).suffix.lower()
    if suffix in (".yaml", ".yml", ".toml", ".hcl", ".ini", ".properties"):
        hint += f" (zot also reads {suffix[1:]} configs; this registry reads JSON only)"
    return f"{where}: {hint}"


def _trailing_comma(text: str, pos: int) -> int | None:
    """The offset of a ',' that directly precedes the closing bracket at `pos`, if that is the error."""
    if pos >= len(text) or text[pos] not in "}]":
        return None
    before = len(text[:pos].rstrip())
    if before and text[before - 1] == ",":
        return before - 1
    return None


def line_col(text: str, pos: int) -> tuple[int, int]:
    """1-based line and column of an offset, the way json.JSONDecodeError counts them."""
    line = text.count("\n", 0, pos) + 1
    return line, pos - text.rfind("\n", 0, pos)


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, in words, for a message about the wrong kind of value."""
    kinds = {list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------------------------
# Key positions in the text (json.loads does not report them)
# --------------------------------------------------------------------------------------------


def key_offsets(text: str) -> dict[PathKey, int]:
    """Offset of every key (and list element) of an already valid JSON document, by path."""
    offsets: dict[PathKey, int] = {}
    _scan_value(text, _skip_ws(text, 0), (), offsets)
    return offsets


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _scan_string(text: str, pos: int) -> tuple[str, int]:
    end = pos + 1
    while text[end] != '"':
        end += 2 if text[end] == "\\" else 1
    return json.loads(text[pos : end + 1]), end + 1


def _scan_value(text: str, pos: int, path: PathKey, offsets: dict[PathKey, int]) -> int:
    """Scan the value at `pos`, recording offsets below `path`; return the offset after it."""
    char = text[pos]
    if char == '"':
        return _scan_string(text, pos)[1]
    if char in "{[":
        closing, index = ("}" if char == "{" else "]"), 0
        pos = _skip_ws(text, pos + 1)
        while text[pos] != closing:
            if char == "{":
                start = pos
                key, pos = _scan_string(text, pos)
                offsets.setdefault((*path, key), start)
                pos = _skip_ws(text, _skip_ws(text, pos) + 1)  # past the ':'
                pos = _scan_value(text, pos, (*path, key), offsets)
            else:
                offsets.setdefault((*path, index), pos)
                pos = _scan_value(text, pos, (*path, index), offsets)
                index += 1
            pos = _skip_ws(text, pos)
            if text[pos] == ",":
                pos = _skip_ws(text, pos + 1)
        return pos + 1
    while pos < len(text) and text[pos] not in ",]} \t\r\n":
        pos += 1
    return pos
