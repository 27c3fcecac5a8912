"""The documents of the cluster control API: what a member says about its member list and a change of
it, and what the operator (or local mode) asks of it. Shared by the member (control.py), its client
(control_client.py) and the operator, so both sides read and write one schema.

A membership change goes through steps that the operator asks every member for, in order, and that
each member reports on (see docs/rebalancing.md):

  copy    every repository this member holds and does not own under `to` is copied to its owner
          under `to`; blobs are verified as they arrive and kept out of sight (phase copying -> copied);
  freeze  writes to those repositories wait (503 with Retry-After), what changed since is copied, and
          each new owner checks and publishes its copy (phase freezing -> frozen);
  switch  the member routes by `to` from now on (its `epoch` becomes the change's, `change` is gone).

Every step is idempotent: asking again for a step already reached only reports. A change with a
newer epoch replaces one not switched yet; DELETE abandons it (nothing published is lost: the old
owners still hold everything and writes resume).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

API_PREFIX = "/_cluster/v1"
STATE_PATH = f"{API_PREFIX}/state"
CHANGE_PATH = f"{API_PREFIX}/change"
IMPORT_PATH = f"{API_PREFIX}/import"
# Sent with every request one member forwards to another: the epoch of the list the sender routed by.
EPOCH_HEADER = "X-Zot-Cluster-Epoch"

Step = Literal["copy", "freeze", "switch"]
Phase = Literal["copying", "copied", "freezing", "frozen"]


class _Document(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class Progress(_Document):
    done: int = 0
    total: int = 0


class ChangeRequest(_Document):
    """What the operator asks: bring this member to `step` of the change from `from` to `to`."""

    epoch: int = Field(ge=1)
    from_members: list[str] = Field(alias="from", min_length=1)
    to_members: list[str] = Field(alias="to", min_length=1)
    step: Step
    # How long a moved repository's old copy is kept after the switch before its space is reclaimed.
    keep_old_copies_seconds: float = Field(0.0, alias="keepOldCopiesSeconds", ge=0)
    # Members failover dropped: what they own cannot be copied. Until they are back, a repository one of
    # them would own that is not found is answered 503 (its member is away), not 404.
    absent: list[str] = Field(default_factory=list)


class ChangeState(_Document):
    """A change this member knows and has not switched to yet."""

    epoch: int
    from_members: list[str] = Field(alias="from")
    to_members: list[str] = Field(alias="to")
    step: Step = "copy"  # the furthest step asked for
    phase: Phase = "copying"  # how far this member got
    repositories: Progress = Field(default_factory=Progress)  # repositories this member sends away
    bytes: Progress = Field(default_factory=Progress)
    failures: int = 0  # copies that failed and were retried
    error: str = ""  # the last failure, until a retry succeeds
    keep_old_copies_seconds: float = Field(0.0, alias="keepOldCopiesSeconds")
    absent: list[str] = Field(default_factory=list)
    frozen_since: float | None = Field(None, alias="frozenSince")  # unix time writes started to wait


class MemberState(_Document):
    """GET /_cluster/v1/state: the list this member routes by, and the change under way, if any."""

    epoch: int = 0
    members: list[str]
    self_index: int | None = Field(None, alias="self")  # this member's index in `members`; None: not in it
    change: ChangeState | None = None
    shared_storage: bool = Field(False, alias="sharedStorage")
    version: str = ""

    def dump(self) -> dict[str, object]:
        return self.model_dump(by_alias=True, mode="json")
