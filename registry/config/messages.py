"""Problems in the user's words: key paths and how they are written, the error a config that cannot
be used raises (ConfigError), the validation error our validators raise with their own text, and
pydantic's errors rewritten into one (key path, message) problem each.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

# --------------------------------------------------------------------------------------------
# Problems: where (a key path) and what, and the error that carries them to the user
# --------------------------------------------------------------------------------------------

PathKey = tuple[str | int, ...]
Problem = tuple[PathKey, str]  # (canonical path, message)


def dotted(path: PathKey) -> str:
    """A key path as messages write it: ("cluster", "members", 2) -> cluster.members[2]."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


class ConfigError(Exception):
    """A config that cannot be used. str(err) is the complete message for the user, one line per
    problem, each starting with the file name (and line:column when known)."""

    def __init__(self, messages: str | list[str]) -> None:
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("\n".join(self.messages))


# --------------------------------------------------------------------------------------------
# The validation error our validators raise, in our words
# --------------------------------------------------------------------------------------------


# Where below a model a problem is: a key ("members", "members[2]", "sync.registries[0].urls"),
# an index, or a path whose parts are taken as they are (a map key with dots or brackets in it).
ProblemKey = str | int | tuple[str | int, ...]


def fail(reason: str, key: ProblemKey | None = None) -> PydanticCustomError:
    """A validation error whose text is exactly `reason`. `key` extends the error's location when
    a model-level check is about one of its fields."""
    return PydanticCustomError("zot_config", "{reason}", {"reason": reason, "key": key})


ModelProblem = tuple[ProblemKey | None, str]  # (key within the model or None, reason)


def raise_all(model: str, problems: list[ModelProblem]) -> None:
    """Raise every problem a model-level check found, at once: a validator that raised the first
    would hide the others until the user had fixed it."""
    if problems:
        raise ValidationError.from_exception_data(
            model, [InitErrorDetails(type=fail(reason, key), loc=(), input=None) for key, reason in problems]
        )


def show(value: Any) -> str:
    """A value as the user wrote it in JSON, for `got ...` in messages."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


# --------------------------------------------------------------------------------------------
# pydantic errors -> user messages
# --------------------------------------------------------------------------------------------

# pydantic's error types for a value of the wrong kind -> what the value must be, in words.
_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "an object ({...})",
    "model_type": "an object ({...})",
    "model_attributes_type": "an object ({...})",
}


def validation_problems(err: ValidationError) -> list[Problem]:
    """One problem for each error pydantic reports, worded for the user, not pydantic's report."""
    return [_problem(detail) for detail in err.errors(include_url=False)]


def _problem(detail: Any) -> Problem:
    path: PathKey = tuple(detail["loc"])
    kind, ctx = detail["type"], detail.get("ctx") or {}
    if kind == "zot_config":
        if ctx.get("key") is not None:
            path = (*path, *_split_key(ctx["key"]))
        return path, str(ctx["reason"])
    if kind == "missing":
        return path, "required"
    if kind in _TYPE_WORDS:
        return path, f"must be {_TYPE_WORDS[kind]}, got {show(detail.get('input'))}"
    if kind == "greater_than_equal":
        return path, f"must be at least {ctx.get('ge')}, got {show(detail.get('input'))}"
    message = str(detail["msg"])
    return path, message[:1].lower() + message[1:]


_KEY_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def _split_key(key: ProblemKey) -> Iterator[str | int]:
    """ "members[2]" -> "members", 2; "sync.registries[0].urls" -> "sync", "registries", 0, "urls";
    so that a model-level check can point at a list element or a key below its model. A tuple is
    a path already split (a glob pattern such as "team.a/*" is one key)."""
    if isinstance(key, int):
        yield key
        return
    if isinstance(key, tuple):
        yield from key
        return
    for index, name in _KEY_PART.findall(key):
        yield int(index) if index else name
