"""Config documents and helpers the config tests share: a minimal config, parsing one document (or
its error message, which must never show pydantic or a traceback), and zot's access-restricting
settings, each of which must be refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from zot_registry.config import ConfigError, LoadedConfig, parse_config

MINIMAL: dict[str, Any] = {"storage": {"rootDirectory": "/var/lib/zot"}}
CLUSTER: dict[str, Any] = {"members": ["127.0.0.1:9000", "127.0.0.2:9000"], "hashKey": "loremipsumdolors"}


def parse(doc: dict[str, Any] | str) -> LoadedConfig:
    text = doc if isinstance(doc, str) else json.dumps(doc, indent=2)
    return parse_config(text, "test.json")


def error_of(doc: dict[str, Any] | str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(doc)
    message = str(caught.value)
    # Whatever went wrong, the user never sees pydantic's own report or a traceback.
    assert "Traceback" not in message
    assert "validation error" not in message
    assert "pydantic" not in message
    return message


def with_(**sections: Any) -> dict[str, Any]:
    return {**MINIMAL, **sections}


# Each one, as a user would write it; all of them must be refused. (http.accessControl is enforced:
# registry/access/.)
RESTRICTIVE: list[tuple[str, dict[str, Any]]] = [
    ("http.auth.bearer", {"http": {"auth": {"bearer": {"realm": "https://auth", "service": "reg", "cert": "/c"}}}}),
    ("http.auth.openid", {"http": {"auth": {"openid": {"providers": {"github": {"clientid": "x"}}}}}}),
    ("http.auth.apikey", {"http": {"auth": {"apikey": True}}}),
    ("storage.maxRepos", {"storage": {"rootDirectory": "/r", "maxRepos": 10}}),
    ("storage.subPaths", {"storage": {"rootDirectory": "/r", "subPaths": {"/a": {"rootDirectory": "/a"}}}}),
    ("extensions.lint", {"extensions": {"lint": {"enable": True, "mandatoryAnnotations": ["org.opencontainers.x"]}}}),
    ("extensions.apikey", {"extensions": {"apikey": {"enable": True}}}),
]
