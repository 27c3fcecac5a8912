"""zot config loading: JSON syntax errors and their positions, and keys (case, unknown, unsupported)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from zot_registry.config import (
    UNSUPPORTED_KEYS,
    ConfigError,
    load_config,
    parse_config,
)

from tests.support.config_cases import MINIMAL, error_of, parse, with_

# ---------------------------------------------------------------------------------------------
# JSON syntax
# ---------------------------------------------------------------------------------------------


def test_trailing_comma_in_an_array_names_both_positions() -> None:
    text = '{\n  "storage": {"rootDirectory": "/r"},\n  "cluster": {"members": [\n    "a:1",\n  ]}\n}\n'
    assert error_of(text) == (
        "test.json:5:3: trailing comma after the last element of an array: remove the ',' at line 4, column 10"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"storage": {"rootDirectory": "/r"}\n', "test.json:2:1: the file ends before the JSON document does"),
        ('{"storage": {"rootDirectory": "/r"}} x', "test.json:1:38: unexpected text after the end"),
        ('{\n  // zot\n  "storage": {}\n}', "test.json:2:3: comments are not allowed in JSON"),
        ("{'storage': {}}", "test.json:1:2: JSON strings and keys need double quotes"),
        ('{"storage": {"rootDirectory": "/r"}, "x": NaN}', "test.json:1:43: NaN is not valid JSON"),
        ('{"storage" {}}', "test.json:1:12: invalid JSON: Expecting ':' delimiter"),
        ("", "test.json: the file is empty"),
        ("[1, 2]", "test.json: the config must be a JSON object ({...}), not a list"),
    ],
)
def test_json_errors_name_the_position_and_the_problem(text: str, expected: str) -> None:
    assert error_of(text).startswith(expected)


def test_yaml_file_gets_a_hint() -> None:
    with pytest.raises(ConfigError, match=r"zot also reads yaml configs; this registry reads JSON only"):
        parse_config("storage:\n  rootDirectory: /r\n", "config.yaml")


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.json")
    assert str(caught.value) == f"{tmp_path / 'nope.json'}: no such file"
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe{}")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(binary)


def test_byte_order_mark_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(MINIMAL).encode())
    assert load_config(path).config.storage.root_directory == "/var/lib/zot"


# ---------------------------------------------------------------------------------------------
# Keys: case, unknown, unsupported
# ---------------------------------------------------------------------------------------------


def test_keys_are_case_insensitive_like_zot() -> None:
    loaded = parse(
        {
            "DISTSPECVERSION": "1.1.0",
            "Storage": {"rootdirectory": "/r", "GCDelay": "2h", "Dedupe": False},
            "HTTP": {"Port": "9000", "TLS": {"Cert": "c", "KEY": "k"}},
            "cluster": {"Members": ["a:9000", "b:9000"], "hashkey": "loremipsumdolors", "TLS": {"CACert": "ca"}},
            "Log": {"Level": "DEBUG"},
        }
    )
    config = loaded.config
    assert config.dist_spec_version == "1.1.0"
    assert (config.storage.root_directory, config.storage.gc_delay, config.storage.dedupe) == ("/r", 7200.0, False)
    assert config.http.port == 9000
    assert config.http.tls is not None and (config.http.tls.cert, config.http.tls.key) == ("c", "k")
    assert config.cluster is not None and config.cluster.hash_key == "loremipsumdolors"
    assert config.cluster.tls is not None and config.cluster.tls.cacert == "ca"
    assert config.log.level == "debug"
    assert loaded.warnings == []


def test_both_spellings_of_the_root_directory_work() -> None:
    for key in ("rootDirectory", "rootdirectory", "ROOTDIRECTORY"):
        assert parse({"storage": {key: "/data"}}).config.storage.root_directory == "/data"


def test_same_key_twice_in_different_case_is_an_error() -> None:
    message = error_of({"storage": {"rootDirectory": "/a", "rootdirectory": "/b"}})
    assert 'storage.rootdirectory: same key as "rootDirectory" (keys are case-insensitive)' in message


def test_unknown_key_is_an_error_with_a_suggestion() -> None:
    text = '{\n  "storage": {\n    "rootDirectry": "/r"\n  }\n}\n'
    assert error_of(text) == (
        "test.json:3:5: storage.rootDirectry: unknown key, zot has no such setting in "
        'storage; did you mean "rootDirectory"?'
    )


def test_every_unknown_key_is_reported_at_once() -> None:
    message = error_of({"storage": {"rootDirectory": "/r"}, "htpp": {}, "log": {"levle": "info"}, "zzz": 1})
    lines = message.splitlines()
    assert len(lines) == 3
    assert 'htpp: unknown key, zot has no such setting at the top level; did you mean "http"?' in lines[0]
    assert 'log.levle: unknown key, zot has no such setting in log; did you mean "level"?' in lines[1]
    assert lines[2].endswith("zzz: unknown key, zot has no such setting at the top level")


def test_unknown_extension_is_an_error_but_its_contents_are_free() -> None:
    message = error_of(with_(extensions={"serach": {"enable": True}}))
    assert 'extensions.serach: unknown key, zot has no such setting in extensions; did you mean "search"?' in message
    # An extension we do not implement keeps its contents unchecked (sync's are checked: sync.py).
    loaded = parse(with_(extensions={"Search": {"CVE": {"UpdateInterval": "2h", "anything": 1}}}))
    assert loaded.config.extensions == {"search": {"cve": {"updateinterval": "2h", "anything": 1}}}


def test_driver_settings_are_free_form_and_lower_cased() -> None:
    loaded = parse(
        {
            "storage": {
                "rootDirectory": "/r",
                "remoteCache": False,
                "storageDriver": {"name": "s3", "Bucket": "b", "RootDirectory": "/zot", "whatever": {"Deep": 1}},
            }
        }
    )
    assert loaded.config.storage.storage_driver == {
        "name": "s3",
        "bucket": "b",
        "rootdirectory": "/zot",
        "whatever": {"deep": 1},
    }


def test_harmless_unsupported_keys_warn_with_their_path_and_are_dropped() -> None:
    loaded = parse(
        {
            "storage": {
                "rootDirectory": "/r",
                "retention": {"dryRun": True},
                "redirectBlobURL": True,
                "fastRestart": True,
            },
            "http": {
                "ratelimit": {"rate": 5},
                "allowOrigin": "*",
                "auth": {"htpasswd": {"path": "/p"}, "sessionDriver": {"name": "redis"}, "failDelay": 5},
            },
            "log": {"audit": "/var/log/audit.log"},
            "scheduler": {"numWorkers": 4},
        }
    )
    assert loaded.warnings == [
        "storage.retention: not supported yet, ignored: no image is deleted by retention policies, "
        "every image is kept until it is deleted through the API",
        "storage.redirectBlobURL: not supported yet, ignored: blobs are served by this registry, not redirected",
        "storage.fastRestart: not supported yet, ignored",
        "http.ratelimit: not supported yet, ignored: requests are not rate limited "
        "(put a rate-limiting proxy in front if you rely on it)",
        "http.allowOrigin: not supported yet, ignored: no CORS headers are sent",
        "http.auth.sessionDriver: not supported yet, ignored",
        "log.audit: not supported yet, ignored: no audit log is written",
        "scheduler: not supported yet, ignored",
    ]
    config = loaded.config
    assert config.http.auth is not None and config.http.auth.fail_delay == 5
    assert config.log.audit == "/var/log/audit.log"  # kept: the model has a place for it


def test_unsupported_subtrees_are_not_checked_key_by_key() -> None:
    loaded = parse(with_(http={"ratelimit": {"noSuchKey": 1}}))
    assert loaded.warnings == [
        "http.ratelimit: not supported yet, ignored: requests are not rate limited "
        "(put a rate-limiting proxy in front if you rely on it)"
    ]
    assert "http.auth.openid: requires OpenID logins" in error_of(with_(http={"auth": {"openid": {"noSuchKey": 1}}}))


def test_extensions_warn_unless_switched_off() -> None:
    loaded = parse(with_(extensions={"search": {"enable": True}, "ui": {"Enable": False}, "metrics": {}}))
    assert loaded.warnings == [
        "extensions.search: not supported yet, ignored",
        "extensions.metrics: not supported yet, ignored",
    ]
    assert loaded.config.extensions == {"search": {"enable": True}, "ui": {"enable": False}, "metrics": {}}


def test_unsupported_table_names_real_paths() -> None:
    top_level = {"goVersion", "commit", "releaseTag", "binaryType", "scheduler"}
    for path in UNSUPPORTED_KEYS:
        head = path.split(".")[0]
        assert head in top_level or head in {"storage", "http", "log", "extensions"}, path
