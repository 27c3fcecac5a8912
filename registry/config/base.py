"""The base of every config model (models.py, sync.py): frozen, strict, zot's keys as aliases."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    # extra="forbid" is a safety net: key checking happens before validation, with better words.
    # strict: "yes" is not true and "5" is not 5 (zot's mapstructure would refuse both, and a
    # typo must not turn into a setting); the few fields that take strings on purpose (the port,
    # durations) convert them in their own validators.
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid", strict=True)
