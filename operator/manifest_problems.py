"""A ZotCluster manifest's problems in the user's words, at the line and column where they are.

pydantic reports "Extra inputs are not permitted" at a key path; `zot-registry verify` says
`file:line:column: key: unknown key ...; did you mean "..."?`, and so does this, for every problem of
the file at once. Positions come from the YAML composer's marks (`yaml.compose_all`), which the
loaded data has lost; suggestions from the models' own field names (difflib, as the registry's
config/keymap.py does). Duplicate keys, which PyYAML keeps silently (the last wins) and kubectl refuses,
are found on the same nodes.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from zot_registry.config.messages import PathKey, Problem, dotted, validation_problems

Position = tuple[int, int]  # 1-based line and column


def _position(node: yaml.Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


def key_positions(node: yaml.Node, path: PathKey = ()) -> dict[PathKey, Position]:
    """Where each key path of a composed document is written: the key itself for a mapping entry, the
    item for a list element (a problem with `spec.storge` points at `storge`, not at its value)."""
    found: dict[PathKey, Position] = {path: _position(node)}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                found |= key_positions(value, (*path, key.value))
                found[(*path, key.value)] = _position(key)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found |= key_positions(item, (*path, index))
    return found


def duplicate_keys(node: yaml.Node, path: PathKey = ()) -> list[tuple[PathKey, Position]]:
    """Keys written twice in one mapping (PyYAML keeps the last; kubectl refuses the file)."""
    found: list[tuple[PathKey, Position]] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if name is not None and name in seen:
                found.append(((*path, name), _position(key)))
            if name is not None:
                seen.add(name)
                found += duplicate_keys(value, (*path, name))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found += duplicate_keys(item, (*path, index))
    return found


def locate(path: PathKey, positions: dict[PathKey, Position]) -> Position | None:
    """The position of `path`, or of its nearest written ancestor (a missing key: its parent)."""
    for end in range(len(path), -1, -1):
        if path[:end] in positions:
            return positions[path[:end]]
    return None


# The models at a path ----------------------------------------------------------------------------------


def _unwrap(annotation: Any) -> list[Any]:
    """The alternatives of an annotation: X | None -> [X]; Annotated[X, ...] -> [X]."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for arg in typing.get_args(annotation) if arg is not type(None) for a in _unwrap(arg)]
    return [annotation]


def _field_annotation(model: type[BaseModel], key: str | int) -> Any | None:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info.annotation
    return None


def _annotation_at(model: type[BaseModel], path: PathKey) -> Any | None:
    """The annotation of the field at `path` below `model` (list indexes and map keys followed)."""
    current: Any = model
    for part in path:
        step = None
        for option in _unwrap(current):
            if isinstance(option, type) and issubclass(option, BaseModel) and isinstance(part, str):
                step = _field_annotation(option, part)
            elif typing.get_origin(option) is list and isinstance(part, int):
                step = typing.get_args(option)[0]
            elif typing.get_origin(option) is dict and len(typing.get_args(option)) == 2:
                step = typing.get_args(option)[1]
            if step is not None:
                break
        if step is None:
            return None
        current = step
    return current


def _field_names(model: type[BaseModel], path: PathKey) -> list[str]:
    """The keys the mapping at `path` may hold: its model's fields as written in YAML (their aliases)."""
    for option in _unwrap(_annotation_at(model, path) if path else model):
        if isinstance(option, type) and issubclass(option, BaseModel):
            return [info.alias or name for name, info in option.model_fields.items()]
    return []


def _literal_values(model: type[BaseModel], path: PathKey) -> list[str]:
    annotation = _annotation_at(model, path)
    for option in _unwrap(annotation):
        if typing.get_origin(option) is typing.Literal:
            return [str(v) for v in typing.get_args(option)]
        if typing.get_origin(option) is list:
            for item in _unwrap(typing.get_args(option)[0]):
                if typing.get_origin(item) is typing.Literal:
                    return [str(v) for v in typing.get_args(item)]
    return []


def _hint(word: object, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


def spec_problems(err: ValidationError, model: type[BaseModel], root: str = "spec") -> list[Problem]:
    """Each error of validating `model`, worded for the user; paths start at `root` (the YAML key the
    model was read from). An unknown key gets the closest field name; a "required" that a misspelled
    key already explains is left out ("urlz": did you mean "urls"? says it)."""
    problems: list[Problem] = []
    implied: set[PathKey] = set()
    details = err.errors(include_url=False)
    worded = validation_problems(err)
    for detail, (path, message) in zip(details, worded, strict=True):
        kind, ctx = detail["type"], detail.get("ctx") or {}
        if kind == "extra_forbidden":
            parent, key = path[:-1], path[-1]
            names = _field_names(model, parent)
            hint = _hint(key, names)
            if hint:
                implied.add((*parent, difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)[0]))
            where = f"in {dotted((root, *parent))}" if parent or root else "here"
            message = f"unknown key, a ZotCluster has no such field {where}{hint}"
        elif kind == "literal_error":
            expected = str(ctx.get("expected")).replace("'", '"')
            message = f"must be {expected}, got {_show(detail.get('input'))}"
            message += _hint(detail.get("input"), _literal_values(model, path))
        elif kind == "less_than_equal":
            message = f"must be at most {ctx.get('le')}, got {_show(detail.get('input'))}"
        elif kind == "value_error":
            # A model-level rule (a ValueError of ours): pydantic puts "Value error, " before our words.
            message = str(ctx.get("error") or message)
        problems.append(((root, *path) if root else path, message))
    return [(path, message) for path, message in problems if not (message == "required" and path[1:] in implied)]


def _show(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)
