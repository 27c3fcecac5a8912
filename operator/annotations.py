"""The annotations a user puts on a ZotCluster to steer the operator (docs/operator.md, "Pausing and restarting").

- `zot-operator.io/paused: "true"`: the operator changes nothing for this cluster until it is removed (or
  says anything else); the status says so (phase `Paused`, condition `Paused`), and so do events.
- `zot-operator.io/restartedAt: <any text, a time by convention>`: copied into the pod template's annotations,
  as `kubectl rollout restart` does with its own key: a new value is a new template, which rolls the members
  one at a time like any other template change.

Annotations rather than spec fields: they are operations on a cluster, not what it is. A paused cluster's spec
can still change (and is acted on once it resumes), and a restart is asked for without editing the spec,
as a user of `kubectl rollout` expects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .crd import GROUP

PAUSED_ANNOTATION = f"{GROUP}/paused"
RESTARTED_AT_ANNOTATION = f"{GROUP}/restartedAt"


def _annotations(metadata: Mapping[str, Any]) -> Mapping[str, str]:
    return metadata.get("annotations") or {}


def paused(metadata: Mapping[str, Any]) -> bool:
    """Only "true" pauses (any case, surrounding blanks ignored): a value like "false" or "no" must not."""
    return str(_annotations(metadata).get(PAUSED_ANNOTATION, "")).strip().lower() == "true"


def restarted_at(metadata: Mapping[str, Any]) -> str | None:
    value = _annotations(metadata).get(RESTARTED_AT_ANNOTATION)
    return str(value) if value else None
