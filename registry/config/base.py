"""The base of every config model (models.py, sync.py, access.py): frozen, strict, zot's keys as
aliases; and the marker of a map whose keys keymap.py checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    # extra="forbid" is a safety net: key checking happens before validation, with better words.
    # strict: "yes" is not true and "5" is not 5 (zot's mapstructure would refuse both, and a
    # typo must not turn into a setting); the few fields that take strings on purpose (the port,
    # durations) convert them in their own validators.
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid", strict=True)


@dataclass(frozen=True)
class KeyRule:
    """Marks a field that maps names of the user's choosing to models (Annotated[dict[str, M],
    KeyRule(problem)]): keymap.py checks each name with `problem` (None: a good name; else why not)
    and reports a bad one at its place in the file, then leaves it out."""

    problem: Callable[[str], str | None]
