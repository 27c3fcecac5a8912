"""The ZotCluster reference in Markdown, generated from the models like the CRD.

`python -m zot_operator.reference > docs/zotcluster-reference.md`; a test fails when the file is stale.
"""

from __future__ import annotations

import json
import sys
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from .models import ZotClusterSpec, ZotClusterStatus

HEADER = """# ZotCluster reference

`apiVersion: zot-operator.io/v1alpha1`, `kind: ZotCluster` (short name `zc`). Generated from
`operator/models.py` by `python -m zot_operator.reference`; the CRD (`crds/zotclusters.yaml`) comes from
the same models. Rules the schema cannot say are CEL validations in the CRD: the API server refuses
a ZotCluster that breaks them, with the message shown in the last table.

Annotations of the ZotCluster: `zot-operator.io/paused: "true"` pauses the operator for it (nothing is
changed until it is removed; `status.phase` is `Paused`), and a new value of `zot-operator.io/restartedAt`
restarts the members one at a time (docs/operator.md, "Pausing and restarting").
"""


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found += _models_in(arg)
    return found


def _is_list(annotation: Any) -> bool:
    """A list, or a list or None."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_is_list(a) for a in typing.get_args(annotation))
    return typing.get_origin(annotation) is list


def _is_map(annotation: Any) -> bool:
    """A map, or a map or None."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_is_map(a) for a in typing.get_args(annotation))
    return typing.get_origin(annotation) is dict


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:  # a type with constraints (a maximum length): the type
        return _type_name(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation) if a is not type(None))
    if origin in (list, dict):
        inner = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{'list' if origin is list else 'map'}[{inner}]"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object"
    return {str: "string", int: "integer", bool: "boolean", Any: "any"}.get(annotation, str(annotation))


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
        value = value.model_dump(by_alias=True, exclude_none=True) if isinstance(value, BaseModel) else value
        return "" if value in ({}, []) or isinstance(info.default_factory, type) else f"`{json.dumps(value)}`"
    if info.default is PydanticUndefined:
        return "required"
    return "" if info.default is None else f"`{json.dumps(info.default)}`"


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows: list[str] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}.{info.alias or name}"
        rows.append(f"| `{path}` | {_type_name(info.annotation)} | {_default(info)} | {info.description or ''} |")
        # The fields of a list's items under `name[]`, as the validation rules name them; of a map's values
        # under `name.<key>`.
        below = f"{path}[]" if _is_list(info.annotation) else f"{path}.<key>" if _is_map(info.annotation) else path
        for nested in _models_in(info.annotation):
            rows += _rows(nested, below)
    return rows


def reference() -> str:
    from .crd import SPEC_RULES

    lines = [HEADER]
    for title, model, prefix in (
        ("Spec", ZotClusterSpec, "spec"),
        ("Status (written by the operator)", ZotClusterStatus, "status"),
    ):
        lines += [
            f"## {title}",
            "",
            "| field | type | default | description |",
            "|---|---|---|---|",
            *_rows(model, prefix),
            "",
        ]
    lines += ["## Validation rules (CEL)", "", "| at | rule | message |", "|---|---|---|"]
    for path, rules in SPEC_RULES.items():
        for rule in rules:
            where = f"spec.{path}" if path else "spec"
            escaped = rule["rule"].replace("|", "\\|")  # a pipe would end the Markdown cell
            lines.append(f"| `{where}` | `{escaped}` | {rule['message']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(reference())
