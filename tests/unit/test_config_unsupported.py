"""zot config loading: settings that restrict access (refused), recent zot keys, strict values, and every
problem of a file reported in one run."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from zot_registry import config as config_module
from zot_registry.config import (
    UNSUPPORTED_KEYS,
    ConfigError,
    load_config,
)

from tests.support.config_cases import MINIMAL, RESTRICTIVE, error_of, parse, with_

# ---------------------------------------------------------------------------------------------
# zot settings that restrict who may do what: refused, never ignored (fail closed)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "doc"), RESTRICTIVE, ids=[f"{key}-{i}" for i, (key, _) in enumerate(RESTRICTIVE)])
def test_restrictive_unsupported_settings_are_errors_naming_the_key(key: str, doc: dict[str, Any]) -> None:
    message = error_of({**MINIMAL, **doc})
    line = next(line for line in message.splitlines() if f": {key}: " in line)
    assert re.match(rf"test\.json:\d+:\d+: {re.escape(key)}: .*; remove it or run zot$", line), line


def test_the_table_refuses_every_setting_that_restricts_access() -> None:
    refused = {path for path, entry in UNSUPPORTED_KEYS.items() if entry.refuse}
    assert refused == {
        "http.auth.bearer",
        "http.auth.openid",
        "http.auth.apikey",
        "storage.maxRepos",
        "storage.subPaths",
        "extensions.lint",
        "extensions.apikey",
    }
    assert {key for key, _ in RESTRICTIVE} == refused


def test_access_control_without_logins_says_what_to_add() -> None:
    text = '{\n  "storage": {"rootDirectory": "/r"},\n  "http": {\n    "accessControl": {}\n  }\n}'
    assert error_of(text) == (
        "test.json:4:5: http.accessControl: access control needs a way to authenticate users (zot: htpasswd, "
        "ldap, openid or mTLS; this registry: http.auth.htpasswd, http.auth.ldap or client certificates, "
        "http.tls.cacert), unless it has only anonymousPolicy policies: add a login method, or keep only "
        "anonymousPolicy entries"
    )


@pytest.mark.parametrize(
    "doc",
    [
        {"http": {"auth": {"ldap": None, "apikey": False, "bearer": None}}},
        {"http": {"tls": {"cert": "/c", "key": "/k", "cacert": ""}}},
        {"storage": {"rootDirectory": "/r", "maxRepos": 0}},
        {"extensions": {"lint": {"enable": False, "mandatoryAnnotations": ["a"]}, "apikey": {"enable": False}}},
        {"extensions": {"lint": {"enable": True}}},  # nothing mandatory: zot's linter refuses nothing
    ],
)
def test_restrictive_settings_that_are_switched_off_are_fine(doc: dict[str, Any]) -> None:
    loaded = parse({**MINIMAL, **doc})
    assert loaded.warnings == []


def test_lowercase_spelling_of_a_restrictive_key_is_refused_too() -> None:
    assert "http.auth.openid: requires OpenID logins" in error_of(with_(http={"Auth": {"OpenID": {"a": 1}}}))
    # Implemented settings are read whatever their spelling, and checked.
    assert "http.auth.ldap.baseDN: required" in error_of(with_(http={"Auth": {"LDAP": {}}}))


# ---------------------------------------------------------------------------------------------
# zot settings of recent versions: known, not "unknown key"
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("http", "readTimeout", "30s"),
        ("http", "writeTimeout", "2m"),
        ("storage", "gcTimeWindow", "01:00-08:00"),
    ],
)
def test_recent_zot_keys_are_known(section: str, key: str, value: str) -> None:
    doc: dict[str, Any] = {"storage": {"rootDirectory": "/r"}}
    doc.setdefault(section, {})[key] = value
    loaded = parse(doc)
    assert not any("unknown key" in warning for warning in loaded.warnings)


def test_mtls_options_without_client_certificates_say_what_to_add() -> None:
    message = error_of(with_(http={"auth": {"mtls": {}}}))
    assert "unknown key" not in message
    assert (
        "http.auth.mtls: says how client certificates name users, but none are asked for: add http.tls.cacert"
        in message
    )


def test_client_certificates_need_tls() -> None:
    message = error_of(with_(http={"tls": {"cacert": "/ca"}}))
    assert "http.tls.cacert: asks clients for certificates, which needs TLS: add http.tls.cert and" in message


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30.0), ("1m30s", 90.0), ("0", 0.0), ("-1s", 0.0)])
def test_read_and_write_timeouts(text: str, seconds: float) -> None:
    http = parse(with_(http={"readTimeout": text, "writeTimeout": text})).config.http
    assert (http.read_timeout, http.write_timeout) == (seconds, seconds)


def test_timeouts_default_to_unset_and_reject_numbers_and_garbage() -> None:
    http = parse(MINIMAL).config.http
    assert (http.read_timeout, http.write_timeout) == (None, None)
    assert "http.readTimeout: must be a duration string" in error_of(with_(http={"readTimeout": 30}))
    assert 'http.writeTimeout: must be a duration like "1h"' in error_of(with_(http={"writeTimeout": "soon"}))


@pytest.mark.parametrize(
    ("text", "window"),
    [
        ("01:00-08:00", (60, 480)),
        ("22:30 - 06:15", (1350, 375)),
        ("", None),
    ],
)
def test_gc_time_window_is_parsed_like_zot(text: str, window: tuple[int, int] | None) -> None:
    assert parse({"storage": {"rootDirectory": "/r", "gcTimeWindow": text}}).config.storage.gc_time_window == window


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("24:00-08:00", '"24:00" is not a 24h time'),
        ("10:60-12:00", '"10:60" is not a 24h time'),
        ("10:00 12:00", 'expected "HH:MM-HH:MM"'),
        ("08:00-08:00", "cannot be equal"),
        ("bad-08:00", '"bad"'),
    ],
)
def test_bad_gc_time_window(text: str, reason: str) -> None:
    message = error_of({"storage": {"rootDirectory": "/r", "gcTimeWindow": text}})
    assert f"storage.gcTimeWindow: {json.dumps(text)}: " in message and reason in message


def test_gc_time_window_warns_that_it_is_not_enforced() -> None:
    assert parse({"storage": {"rootDirectory": "/r", "gcTimeWindow": "01:00-08:00"}}).warnings == [
        "storage.gcTimeWindow: not supported yet, ignored: garbage collection may run at any time of day "
        "(it deletes the same blobs as inside the window, those unused for gcDelay)"
    ]
    assert parse({"storage": {"rootDirectory": "/r", "gc": False, "gcTimeWindow": "01:00-08:00"}}).warnings == [
        "storage.gcTimeWindow: set while storage.gc is false, ignored"
    ]


@pytest.mark.parametrize("name", ["gcs", "azure"])
def test_storage_drivers_zot_has_and_we_do_not_are_refused(name: str) -> None:
    message = error_of(
        {"storage": {"rootDirectory": "/r", "remoteCache": False, "storageDriver": {"name": name, "bucket": "b"}}}
    )
    assert message == (
        f"test.json:5:5: storage.storageDriver: the {name} storage driver is not supported by this "
        f"registry yet (it supports s3); run zot for {name}"
    )


def test_boltdb_is_not_a_remote_cache() -> None:
    message = error_of({"storage": {"rootDirectory": "/r", "remoteCache": True, "cacheDriver": {"name": "boltdb"}}})
    assert "storage.cacheDriver: the boltdb cache driver is not supported by this registry as a remote cache" in message


# ---------------------------------------------------------------------------------------------
# Strict values: "yes" is not true, "5" is not 5
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("storage", "expected"),
    [
        ({"dedupe": "no"}, 'storage.dedupe: must be true or false, got "no"'),
        ({"gc": "yes"}, 'storage.gc: must be true or false, got "yes"'),
        ({"gc": 1}, "storage.gc: must be true or false, got 1"),
        ({"remoteCache": "false"}, 'storage.remoteCache: must be true or false, got "false"'),
        ({"commit": 0}, "storage.commit: must be true or false, got 0"),
    ],
)
def test_booleans_are_strict(storage: dict[str, Any], expected: str) -> None:
    assert expected in error_of({"storage": {"rootDirectory": "/r", **storage}})


def test_numbers_are_strict_except_the_port() -> None:
    assert 'http.auth.failDelay: must be a whole number, got "5"' in error_of(with_(http={"auth": {"failDelay": "5"}}))
    assert "http.auth.failDelay: must be a whole number, got 1.5" in error_of(with_(http={"auth": {"failDelay": 1.5}}))
    assert "distSpecVersion: must be a string, got 1.1" in error_of({**MINIMAL, "distSpecVersion": 1.1})
    assert parse(with_(http={"port": "5000"})).config.http.port == 5000


# ---------------------------------------------------------------------------------------------
# Every problem of a file in one run, in file order
# ---------------------------------------------------------------------------------------------


def test_unknown_keys_do_not_hide_the_other_errors() -> None:
    text = (
        '{\n  "storage": {\n    "rootDirectory": "/r",\n    "dedupe": "no",\n    "gcDelai": "1h"\n  },\n'
        '  "http": {\n    "port": "0",\n    "accessControl": {}\n  },\n'
        '  "cluster": {\n    "members": [],\n    "hashKey": "short"\n  }\n}'
    )
    assert error_of(text).splitlines() == [
        'test.json:4:5: storage.dedupe: must be true or false, got "no"',
        'test.json:5:5: storage.gcDelai: unknown key, zot has no such setting in storage; did you mean "gcDelay"?',
        'test.json:8:5: http.port: must be a port number 1-65535, got "0"',
        "test.json:9:5: http.accessControl: access control needs a way to authenticate users (zot: htpasswd, "
        "ldap, openid or mTLS; this registry: http.auth.htpasswd, http.auth.ldap or client certificates, "
        "http.tls.cacert), unless it has only anonymousPolicy policies: add a login method, or keep only "
        "anonymousPolicy entries",
        "test.json:12:5: cluster.members: cannot have 0 members in a scale out cluster",
        "test.json:13:5: cluster.hashKey: hashKey for scale out cluster must have 16 characters "
        "(exactly 16 bytes as UTF-8, got 5)",
    ]


def test_a_misspelled_required_key_is_reported_once() -> None:
    assert error_of({"storage": {"rootDirectry": "/r"}}).splitlines() == [
        "test.json:3:5: storage.rootDirectry: unknown key, zot has no such setting in storage; "
        'did you mean "rootDirectory"?'
    ]


def test_driver_errors_are_reported_beside_field_errors() -> None:
    lines = error_of(
        {
            "storage": {
                "rootDirectory": "/r",
                "gc": "yes",
                "remoteCache": True,
                "storageDriver": {"name": "gcs"},
                "cacheDriver": {"name": "boltdb"},
            }
        }
    ).splitlines()
    assert len(lines) == 3
    assert 'storage.gc: must be true or false, got "yes"' in lines[0]
    assert "storage.storageDriver: the gcs storage driver is not supported" in lines[1]
    assert "storage.cacheDriver: the boltdb cache driver is not supported" in lines[2]


def test_duplicate_members_are_all_reported() -> None:
    members = ["a:1", "a:1", "b:1", "b:1"]
    message = error_of(with_(cluster={"members": members, "hashKey": "short"}))
    assert 'cluster.members[1]: "a:1" is listed twice' in message
    assert 'cluster.members[3]: "b:1" is listed twice' in message
    assert "cluster.hashKey: hashKey for scale out cluster" in message


@pytest.mark.parametrize("text", ["[" * 100_000, '{"a":' * 5000 + "1" + "}" * 5000])
def test_absurd_nesting_is_an_error_not_a_crash(text: str) -> None:
    assert "nested too deeply" in error_of(text)


def test_loaded_config_locates_later_problems() -> None:
    text = '{\n  "storage": {"rootDirectory": "/r"},\n  "http": {\n    "tls": {"cert": "c", "key": "k"}\n  }\n}'
    loaded = parse(text)
    assert loaded.describe([(("http", "tls", "key"), "no such file")]) == ["test.json:4:26: http.tls.key: no such file"]


def test_nul_characters_in_names_are_errors() -> None:
    message = error_of(
        {
            "storage": {"rootDirectory": "/r\u0000x"},
            "http": {"address": "127.0.0.1\u0000"},
            "log": {"output": "/l\u0000"},
        }
    )
    assert len(message.splitlines()) == 3
    assert 'storage.rootDirectory: must not contain a NUL character (\\u0000), got "/r\\u0000x"' in message
    assert "http.address: must not contain a NUL character" in message
    assert "log.output: must not contain a NUL character" in message


def test_config_files_larger_than_any_config_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    path.write_bytes(b" " * (config_module.MAX_CONFIG_BYTES + 1))
    with pytest.raises(ConfigError, match="more than 4 MiB, too large for a config file"):
        load_config(path)
