"""Loading a config: read the file, parse its JSON, map keys onto their canonical spelling,
validate with the models, and report every problem of the file in one ConfigError, in file order;
or return the config with its warnings (LoadedConfig).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from .jsontext import json_kind, parse_json
from .keymap import KeyMapper
from .messages import ConfigError, Problem, dotted, validation_problems
from .models import ZotConfig
from .textfile import read_json_text

# A config is a few KiB; reading /dev/zero by mistake must not fill the memory.
MAX_CONFIG_BYTES = 4 << 20


@dataclass
class LoadedConfig:
    """A config that can be used, what it does not do as the user may expect (warnings), and the file
    it was read from."""

    config: ZotConfig
    warnings: list[str]
    path: Path
    # Locates problems found later (preflight's file checks) in the text, as parse errors are.
    render: Callable[[list[Problem]], list[str]] | None = None

    def describe(self, problems: list[Problem]) -> list[str]:
        """One line per problem, in file order: FILE:LINE:COL: key.path: message."""
        if self.render is not None:
            return self.render(problems)
        return [f"{self.path}: {dotted(path)}: {message}" for path, message in problems]


def load_config(path: str | os.PathLike[str]) -> LoadedConfig:
    """Read and validate a zot config file. Raises ConfigError with a message for the user."""
    source = Path(path)
    text = read_json_text(source, MAX_CONFIG_BYTES, "config file", "zot configs are JSON")
    return parse_config(text, str(source))


def parse_config(text: str, source: str = "<config>") -> LoadedConfig:
    """Validate a zot config given as text; `source` names it in messages."""
    try:
        return _parse(text, source)
    except RecursionError:
        # json.loads and the key scanner recurse per level; no zot config is nested this deep.
        raise ConfigError(f"{source}: the JSON is nested too deeply to be a zot config") from None


def _parse(text: str, source: str) -> LoadedConfig:
    data = parse_json(text, source)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the config must be a JSON object ({{...}}), not {json_kind(data)}")
    keys = KeyMapper(source, text)
    canonical = keys.map_object(data, ZotConfig, (), ())
    # Validation runs even when keys were wrong (they are left out), so that one run reports every
    # problem of the file.
    problems = list(keys.errors)
    try:
        config: ZotConfig | None = ZotConfig.model_validate(canonical)
    except ValidationError as err:
        config = None
        problems += [problem for problem in validation_problems(err) if problem not in keys.implied]
    if problems or config is None:
        raise ConfigError(keys.render(problems))
    return LoadedConfig(
        config=config, warnings=keys.warnings + _warnings(config), path=Path(source), render=keys.render
    )


def _warnings(config: ZotConfig) -> list[str]:
    """Things zot accepts that will not do what the user may expect here."""
    storage, found = config.storage, []
    if storage.cache_driver is not None and not storage.remote_cache:
        found.append(
            "storage.cacheDriver: ignored because storage.remoteCache is false (a local cache is used, as in zot)"
        )
    if not storage.gc and storage.gc_delay:
        found.append("storage.gcDelay: set while storage.gc is false, ignored")
    if not storage.gc and storage.gc_interval:
        found.append("storage.gcInterval: set while storage.gc is false, ignored")
    found += _access_warnings(config)
    ldap = config.http.auth.ldap if config.http.auth is not None else None
    if ldap is not None:
        found += [f"http.auth.ldap.{warning}" for warning in ldap.warnings()]
    if storage.gc_time_window is not None:
        found.append(
            "storage.gcTimeWindow: set while storage.gc is false, ignored"
            if not storage.gc
            else "storage.gcTimeWindow: not supported yet, ignored: garbage collection may run at any "
            "time of day (it deletes the same blobs as inside the window, those unused for gcDelay)"
        )
    return found


def _access_warnings(config: ZotConfig) -> list[str]:
    """A policy that names a group with capitals where accessControl.groups defines it: zot's viper
    reads the names in `groups` in lower case (keymap.py does too), so the policy's name does not
    match, and the group's members do not get what the policy gives (in zot neither)."""
    access = config.http.access_control
    if access is None:
        return []
    found = []
    policies = [("adminPolicy", access.admin_policy)] + [
        (f"repositories.{pattern}.policies[{index}]", policy)
        for pattern, group in access.repositories.items()
        for index, policy in enumerate(group.policies)
    ]
    for where, policy in policies:
        for name in policy.groups:
            if name != name.lower() and name.lower() in access.groups:
                found.append(
                    f"http.accessControl.{where}.groups: {name!r} does not name the group {name.lower()!r} "
                    "of accessControl.groups: group names there are read in lower case (as zot reads them), "
                    f"so its members do not get this policy; write {name.lower()!r}"
                )
    return found
