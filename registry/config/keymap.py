"""Canonical keys: a parsed config rewritten onto zot's spelling of each key, matched
case-insensitively as viper and mapstructure do, with unknown keys (an error, with a suggestion)
and known-but-unsupported ones (a warning, or an error when ignoring them would fail open) found
on the way; and the rendering of problems at their line and column.
"""

from __future__ import annotations

import difflib
import types
from dataclasses import dataclass, field
from typing import Any, TypeGuard, Union, get_args, get_origin

from pydantic import AliasPath, BaseModel

from .access import NEEDS_LOGINS
from .base import KeyRule
from .jsontext import key_offsets, line_col
from .messages import PathKey, Problem, dotted
from .models import ZotConfig
from .tables import REFUSE_HINT, UNSUPPORTED_KEYS

# Dict-valued fields whose keys are not ours to check; zot's viper lower-cases them all.
_FREE_FORM = "free-form"
# The one free-form field whose top-level keys are still checked (extension names).
_EXTENSIONS = "extensions"


def _unsupported_children(parent: PathKey) -> dict[str, str]:
    """Known-but-unsupported child keys of `parent`: lower-case name -> canonical name."""
    prefix = dotted(parent)
    children = {}
    for key_path in UNSUPPORTED_KEYS:
        head, _, name = key_path.rpartition(".")
        if head == prefix:
            children[name.lower()] = name
    return children


@dataclass(frozen=True)
class _ListOf:
    """A field that holds a list of nested models (sync's registries, their content)."""

    model: type[BaseModel]


@dataclass(frozen=True)
class _DictOf:
    """A field that maps names of the user's choosing to nested models (accessControl's repository
    patterns and groups): the names are lower-cased as zot's viper does, and checked by the field's
    KeyRule when it has one."""

    model: type[BaseModel]
    rule: KeyRule | None = None


Kind = type[BaseModel] | _ListOf | _DictOf | str | None


def _is_model(option: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(option, type) and issubclass(option, BaseModel)


def _field_kind(annotation: Any, metadata: list[Any] | None = None) -> Kind:
    """What a field holds: a nested model, a list or a map of them, a free-form dict, or a plain value."""
    options = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    for option in options:
        if _is_model(option):
            return option
        if get_origin(option) is dict:
            value = get_args(option)[1] if len(get_args(option)) == 2 else None
            rule = next((item for item in metadata or () if isinstance(item, KeyRule)), None)
            return _DictOf(value, rule) if _is_model(value) else _FREE_FORM
        if get_origin(option) is list and _is_model(item := get_args(option)[0]):
            return _ListOf(item)
    return None


def _model_fields(model: type[BaseModel]) -> dict[str, tuple[str, Kind]]:
    """lower-case key -> (canonical key, kind) for the fields of a model."""
    fields: dict[str, tuple[str, Kind]] = {}
    for name, info in model.model_fields.items():
        if isinstance(info.validation_alias, AliasPath):
            continue  # read from elsewhere in the file (ZotConfig.sync: extensions.sync), not a key here
        alias = info.alias or name
        kind = (
            _EXTENSIONS if model is ZotConfig and name == "extensions" else _field_kind(info.annotation, info.metadata)
        )
        fields[alias.lower()] = (alias, kind)
    return fields


def _typed_extensions() -> dict[str, tuple[str, Kind]]:
    """The extensions this registry implements, whose keys are checked like any other: the ZotConfig
    fields read from "extensions.<name>" (lower-case name -> (name, kind))."""
    fields: dict[str, tuple[str, Kind]] = {}
    for info in ZotConfig.model_fields.values():
        alias = info.validation_alias
        if isinstance(alias, AliasPath) and len(alias.path) == 2 and alias.path[0] == _EXTENSIONS:
            name = str(alias.path[1])
            fields[name.lower()] = (name, _field_kind(info.annotation))
    return fields


def _lower_keys(value: Any) -> Any:
    """Free-form dicts as zot sees them: viper lower-cases every key, at every depth."""
    if isinstance(value, dict):
        return {str(key).lower(): _lower_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_lower_keys(item) for item in value]
    return value


@dataclass
class KeyMapper:
    """Rewrites a parsed config onto canonical keys, collecting errors and warnings, and keeps
    enough of the original spelling to point at the right place in the file."""

    source: str
    text: str
    errors: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # canonical path -> the path as spelled in the file
    origin: dict[PathKey, PathKey] = field(default_factory=dict)
    # "required" problems that a misspelled key already explains ("rootDirectry": did you mean...)
    implied: set[Problem] = field(default_factory=set)

    def map_object(self, obj: Any, model: type[BaseModel] | str, path: PathKey, spelled: PathKey) -> Any:
        if not isinstance(obj, dict):
            return obj  # validation reports the wrong type
        if isinstance(model, type):
            fields = _model_fields(model)
        else:
            fields = _typed_extensions() if model == _EXTENSIONS else {}
        unsupported = _unsupported_children(path)
        out: dict[str, Any] = {}
        for key, value in obj.items():
            canonical = self._canonical(key, fields, unsupported, path, spelled)
            if canonical is None:
                continue
            if canonical in out:
                self._duplicate(key, obj, canonical, path, spelled)
                continue
            here, spelled_here = (*path, canonical), (*spelled, key)
            self.origin[here] = spelled_here
            if canonical.lower() in unsupported:
                value = self._unsupported(here, value)
                if canonical.lower() not in fields and model != _EXTENSIONS:
                    continue  # no model field holds it: drop it
            out[canonical] = self._map_value(
                value, fields.get(canonical.lower(), (canonical, None))[1], here, spelled_here
            )
        return out

    def _map_value(self, value: Any, kind: Kind, path: PathKey, spelled: PathKey) -> Any:
        if isinstance(kind, type):
            return self.map_object(value, kind, path, spelled)
        if isinstance(kind, _ListOf):
            if not isinstance(value, list):
                return value  # validation reports the wrong type
            return [
                self.map_object(item, kind.model, (*path, index), (*spelled, index)) for index, item in enumerate(value)
            ]
        if isinstance(kind, _DictOf):
            return self._map_dict(value, kind, path, spelled)
        if kind == _EXTENSIONS:
            return self.map_object(value, _EXTENSIONS, path, spelled)
        if kind == _FREE_FORM or (len(path) == 2 and path[0] == _EXTENSIONS):
            # Free-form settings, and those of an extension not implemented: as zot's viper sees them.
            return _lower_keys(value)
        return value

    def _map_dict(self, value: Any, kind: _DictOf, path: PathKey, spelled: PathKey) -> Any:
        """A map of names to models: each name lower-cased (zot's viper lower-cases every key, so
        "Team/**" is the pattern "team/**" there too) and checked by the field's rule (a bad one is
        reported and left out), each value checked as the model."""
        if not isinstance(value, dict):
            return value  # validation reports the wrong type
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = str(key).lower()
            if name in out:
                self._duplicate(key, value, name, path, spelled)
                continue
            here, spelled_here = (*path, name), (*spelled, key)
            self.origin[here] = spelled_here
            reason = kind.rule.problem(name) if kind.rule is not None else None
            if reason is not None:
                self.errors.append((here, reason))
                continue
            out[name] = self.map_object(item, kind.model, here, spelled_here)
        return out

    def _canonical(
        self,
        key: str,
        fields: dict[str, tuple[str, Kind]],
        unsupported: dict[str, str],
        path: PathKey,
        spelled: PathKey,
    ) -> str | None:
        lower = key.lower()
        if lower in fields:
            return fields[lower][0]
        if lower in unsupported:
            return unsupported[lower]
        choices = {name.lower(): name for name, _ in fields.values()} | unsupported
        close = difflib.get_close_matches(lower, list(choices), n=1, cutoff=0.6)
        hint = f'; did you mean "{choices[close[0]]}"?' if close else ""
        if close:
            self.implied.add(((*path, choices[close[0]]), "required"))
        where = f"in {dotted(path)}" if path else "at the top level"
        self.origin[(*path, key)] = (*spelled, key)
        self.errors.append(((*path, key), f"unknown key, zot has no such setting {where}{hint}"))
        return None

    def _duplicate(self, key: str, obj: dict[str, Any], canonical: str, path: PathKey, spelled: PathKey) -> None:
        first = next(k for k in obj if k.lower() == canonical.lower())
        self.origin[(*path, key)] = (*spelled, key)
        self.errors.append(((*path, key), f'same key as "{first}" (keys are case-insensitive): keep only one'))

    def _unsupported(self, path: PathKey, value: Any) -> Any:
        if path[:1] == (_EXTENSIONS,):
            value = _lower_keys(value)
        entry = UNSUPPORTED_KEYS[dotted(path)]
        if not entry.in_use(_lower_keys(value)):
            return value  # null, false or switched off: nothing is being ignored
        if entry.refuse:
            self.errors.append((path, f"{entry.why}; {REFUSE_HINT}"))
            if path[:2] == ("http", "auth"):
                # A login method zot has and we refuse: access control is not without logins, as
                # the models would conclude once the key is left out.
                self.implied.add((("http", "accessControl"), NEEDS_LOGINS))
        else:
            self.warnings.append(f"{dotted(path)}: {entry.why}")
        return value

    def render(self, problems: list[Problem]) -> list[str]:
        """One line per problem, in file order: FILE:LINE:COL: key.path: message."""
        offsets = key_offsets(self.text)
        located = [(self._offset(path, offsets), path, message) for path, message in problems]
        located.sort(key=lambda item: (item[0] is None, item[0] or 0))
        lines = []
        for offset, path, message in located:
            where = self.source
            if offset is not None:
                line, col = line_col(self.text, offset)
                where = f"{where}:{line}:{col}"
            lines.append(f"{where}: {dotted(path)}: {message}" if path else f"{where}: {message}")
        return lines

    def _offset(self, path: PathKey, offsets: dict[PathKey, int]) -> int | None:
        """Where `path` is in the file; for a missing key, where its closest parent is."""
        for end in range(len(path), 0, -1):
            spelled = self._spelled(path[:end])
            if spelled in offsets:
                return offsets[spelled]
        return None

    def _spelled(self, path: PathKey) -> PathKey:
        for end in range(len(path), 0, -1):
            if path[:end] in self.origin:
                return self.origin[path[:end]] + path[end:]
        return path
