"""zot config loading: zot's published examples, key handling, validation messages, `verify`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from zot_registry import config as config_module
from zot_registry.cli import verify_main
from zot_registry.config import (
    UNSUPPORTED_KEYS,
    ClusterConfig,
    ConfigError,
    LoadedConfig,
    ZotConfig,
    load_config,
    parse_config,
    parse_duration,
    split_member,
)
from zot_registry.config import tables as config_tables

from tests.helpers import REPO_ROOT, ZOT_EXAMPLES

OUR_EXAMPLE = REPO_ROOT / "examples" / "config.json"

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


# ---------------------------------------------------------------------------------------------
# zot's published scale-out examples
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zot_examples() -> Path:
    return ZOT_EXAMPLES


def trailing_comma_message(path: Path) -> str:
    """The expected message, with positions computed from the file itself."""
    text = path.read_text()
    match = re.search(r",(\s*)\}", text)
    assert match is not None
    comma, brace = match.start(), match.end() - 1

    def line_col(offset: int) -> tuple[int, int]:
        return text.count("\n", 0, offset) + 1, offset - text.rfind("\n", 0, offset)

    (bl, bc), (cl, cc) = line_col(brace), line_col(comma)
    return (f"{path}:{bl}:{bc}: trailing comma after the last member of an object: "
            f"remove the ',' at line {cl}, column {cc}")


@pytest.mark.parametrize("name", ["cluster-s3-redis.json", "cluster-s3-redis-ui.json"])
def test_published_redis_examples_fail_on_their_trailing_comma(zot_examples: Path, name: str) -> None:
    path = zot_examples / name
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == trailing_comma_message(path)
    # As published, the comma closes cacheDriver (line 20) and storage closes on line 21.
    assert str(caught.value) == (f"{path}:21:1: trailing comma after the last member of an object: "
                                 "remove the ',' at line 20, column 2")


def test_every_published_example_loads_or_fails_as_documented(zot_examples: Path) -> None:
    broken = {"cluster-s3-redis.json", "cluster-s3-redis-ui.json"}
    for path in sorted(zot_examples.glob("*.json")):
        if path.name in broken:
            with pytest.raises(ConfigError, match="trailing comma"):
                load_config(path)
        else:
            assert isinstance(load_config(path), LoadedConfig), path


def test_local_storage_example(zot_examples: Path) -> None:
    loaded = load_config(zot_examples / "cluster-local-storage.json")
    config = loaded.config
    assert loaded.warnings == []
    assert loaded.path == zot_examples / "cluster-local-storage.json"
    assert config.dist_spec_version == "1.1.0"
    assert config.storage.root_directory == "/tmp/zot"
    assert config.storage.dedupe and config.storage.gc
    assert (config.http.address, config.http.port) == ("0.0.0.0", 9000)
    assert config.http.tls is not None and config.http.tls.cert == "test/data/server.cert"
    assert config.log.level == "debug"
    assert config.cluster is not None
    assert config.cluster.members == ["zot-server1:9000", "zot-server2:9000", "zot-server3:9000"]
    assert config.cluster.hash_key_bytes == b"loremipsumdolors"
    assert config.cluster.tls is not None and config.cluster.tls.cacert == "test/data/ca.crt"
    assert config.cluster.is_clustered and config.is_clustered


def test_s3_dynamodb_example_loads_without_warnings(zot_examples: Path) -> None:
    loaded = load_config(zot_examples / "cluster-s3-dynamodb.json")
    storage = loaded.config.storage
    assert loaded.warnings == []
    assert storage.dedupe is False and storage.remote_cache is True
    assert storage.storage_driver is not None and storage.storage_driver["rootdirectory"] == "/zot"
    # zot (viper) lower-cases the keys of driver settings: "cacheTablename" arrives as "cachetablename".
    assert storage.cache_driver is not None and storage.cache_driver["cachetablename"] == "ZotBlobTable"


def test_redis_ui_example_without_the_comma_warns_for_each_unsupported_part(zot_examples: Path) -> None:
    text = (zot_examples / "cluster-s3-redis-ui.json").read_text()
    fixed = re.sub(r",(\s*\})", r"\1", text, count=1)
    loaded = parse_config(fixed, "fixed.json")
    assert loaded.warnings == [
        "http.auth.sessionDriver: not supported yet, ignored",
        "extensions.search: not supported yet, ignored",
        "extensions.ui: not supported yet, ignored",
    ]
    http = loaded.config.http
    assert http.auth is not None and http.auth.htpasswd is not None
    assert http.auth.htpasswd.path == "/tmp/zotpasswd"
    assert loaded.config.extensions == {"search": {"enable": True}, "ui": {"enable": True}}


def test_supported_driver_sets_silence_the_warning(zot_examples: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_tables, "SUPPORTED_STORAGE_DRIVERS", {"s3"})
    monkeypatch.setattr(config_tables, "SUPPORTED_CACHE_DRIVERS", {"dynamodb"})
    assert load_config(zot_examples / "cluster-s3-dynamodb.json").warnings == []


def test_our_example_config() -> None:
    if not OUR_EXAMPLE.exists():
        pytest.skip(f"{OUR_EXAMPLE} does not exist yet")
    loaded = load_config(OUR_EXAMPLE)
    assert loaded.warnings == []
    assert loaded.config.storage.root_directory == "./var/zot"
    assert (loaded.config.http.address, loaded.config.http.port) == ("127.0.0.1", 5000)
    assert loaded.config.log.level == "info"
    assert loaded.config.cluster is None and not loaded.config.is_clustered


# ---------------------------------------------------------------------------------------------
# JSON syntax
# ---------------------------------------------------------------------------------------------


def test_trailing_comma_in_an_array_names_both_positions() -> None:
    text = '{\n  "storage": {"rootDirectory": "/r"},\n  "cluster": {"members": [\n    "a:1",\n  ]}\n}\n'
    assert error_of(text) == ("test.json:5:3: trailing comma after the last element of an array: "
                              "remove the ',' at line 4, column 10")


@pytest.mark.parametrize(("text", "expected"), [
    ('{"storage": {"rootDirectory": "/r"}\n', "test.json:2:1: the file ends before the JSON document does"),
    ('{"storage": {"rootDirectory": "/r"}} x', "test.json:1:38: unexpected text after the end"),
    ('{\n  // zot\n  "storage": {}\n}', "test.json:2:3: comments are not allowed in JSON"),
    ("{'storage': {}}", "test.json:1:2: JSON strings and keys need double quotes"),
    ('{"storage": {"rootDirectory": "/r"}, "x": NaN}', "test.json:1:43: NaN is not valid JSON"),
    ('{"storage" {}}', "test.json:1:12: invalid JSON: Expecting ':' delimiter"),
    ("", "test.json: the file is empty"),
    ("[1, 2]", "test.json: the config must be a JSON object ({...}), not a list"),
])
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
    loaded = parse({
        "DISTSPECVERSION": "1.1.0",
        "Storage": {"rootdirectory": "/r", "GCDelay": "2h", "Dedupe": False},
        "HTTP": {"Port": "9000", "TLS": {"Cert": "c", "KEY": "k"}},
        "cluster": {"Members": ["a:9000", "b:9000"], "hashkey": "loremipsumdolors", "TLS": {"CACert": "ca"}},
        "Log": {"Level": "DEBUG"},
    })
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
    assert "storage.rootdirectory: same key as \"rootDirectory\" (keys are case-insensitive)" in message


def test_unknown_key_is_an_error_with_a_suggestion() -> None:
    text = '{\n  "storage": {\n    "rootDirectry": "/r"\n  }\n}\n'
    assert error_of(text) == ('test.json:3:5: storage.rootDirectry: unknown key, zot has no such setting in '
                              'storage; did you mean "rootDirectory"?')


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
    loaded = parse(with_(extensions={"Sync": {"Registries": [{"URLs": ["https://x"], "anything": 1}]}}))
    assert loaded.config.extensions == {"sync": {"registries": [{"urls": ["https://x"], "anything": 1}]}}


def test_driver_settings_are_free_form_and_lower_cased() -> None:
    loaded = parse({"storage": {"rootDirectory": "/r", "remoteCache": False,
                                "storageDriver": {"name": "s3", "Bucket": "b", "RootDirectory": "/zot",
                                                  "whatever": {"Deep": 1}}}})
    assert loaded.config.storage.storage_driver == {"name": "s3", "bucket": "b", "rootdirectory": "/zot",
                                                    "whatever": {"deep": 1}}


def test_harmless_unsupported_keys_warn_with_their_path_and_are_dropped() -> None:
    loaded = parse({
        "storage": {"rootDirectory": "/r", "retention": {"dryRun": True}, "redirectBlobURL": True,
                    "fastRestart": True},
        "http": {"ratelimit": {"rate": 5}, "allowOrigin": "*",
                 "auth": {"htpasswd": {"path": "/p"}, "sessionDriver": {"name": "redis"}, "failDelay": 5}},
        "log": {"audit": "/var/log/audit.log"},
        "scheduler": {"numWorkers": 4},
    })
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
    assert loaded.warnings == ["http.ratelimit: not supported yet, ignored: requests are not rate limited "
                               "(put a rate-limiting proxy in front if you rely on it)"]
    assert "http.accessControl: restricts access" in error_of(with_(http={"accessControl": {"noSuchKey": 1}}))


def test_extensions_warn_unless_switched_off() -> None:
    loaded = parse(with_(extensions={"search": {"enable": True}, "ui": {"Enable": False}, "metrics": {}}))
    assert loaded.warnings == ["extensions.search: not supported yet, ignored",
                               "extensions.metrics: not supported yet, ignored"]
    assert loaded.config.extensions == {"search": {"enable": True}, "ui": {"enable": False}, "metrics": {}}


def test_unsupported_table_names_real_paths() -> None:
    top_level = {"goVersion", "commit", "releaseTag", "binaryType", "scheduler"}
    for path in UNSUPPORTED_KEYS:
        head = path.split(".")[0]
        assert head in top_level or head in {"storage", "http", "log", "extensions"}, path


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------


def test_defaults_follow_zot() -> None:
    config = parse(MINIMAL).config
    assert config.dist_spec_version == "1.1.1"
    assert (config.storage.dedupe, config.storage.gc, config.storage.remote_cache) == (True, True, False)
    assert (config.storage.gc_delay, config.storage.gc_interval) == (3600.0, 3600.0)
    assert (config.http.address, config.http.port, config.http.realm) == ("127.0.0.1", 8080, "zot")
    assert config.http.tls is None and config.http.auth is None
    assert (config.log.level, config.log.output) == ("info", None)
    assert config.cluster is None and config.extensions is None


@pytest.mark.parametrize("port", ["5000", 5000])
def test_port_as_string_or_number(port: str | int) -> None:
    assert parse(with_(http={"port": port})).config.http.port == 5000


@pytest.mark.parametrize(("port", "shown"), [
    ("99999", '"99999"'), (0, "0"), ("0", '"0"'), ("abc", '"abc"'), ("", '""'), (True, "true"), (-1, "-1"),
])
def test_bad_port(port: Any, shown: str) -> None:
    text = '{\n  "storage": {"rootDirectory": "/r"},\n  "http": {\n    "port": ' + json.dumps(port) + "\n  }\n}"
    assert error_of(text) == f"test.json:4:5: http.port: must be a port number 1-65535, got {shown}"


def test_missing_root_directory_points_at_storage() -> None:
    text = '{\n  "http": {"port": "5000"},\n  "storage": {"dedupe": true}\n}'
    assert error_of(text) == "test.json:3:3: storage.rootDirectory: required"
    assert error_of({"http": {}}) == "test.json: storage: required"


def test_wrong_types_are_explained() -> None:
    message = error_of({"storage": {"rootDirectory": 7, "dedupe": "maybe"}, "http": "localhost"})
    assert "storage.rootDirectory: must be a string, got 7" in message
    assert 'storage.dedupe: must be true or false, got "maybe"' in message
    assert 'http: must be an object ({...}), got "localhost"' in message
    assert len(message.splitlines()) == 3


def test_log_level_is_case_insensitive_and_checked() -> None:
    assert parse(with_(log={"level": "WARN"})).config.log.level == "warn"
    assert parse(with_(log={"level": "warning"})).config.log.level == "warning"
    assert 'log.level: must be one of debug, info, warn, warning, error, fatal, panic; got "verbose"' in error_of(
        with_(log={"level": "verbose"}))


def test_tls_needs_cert_and_key_together() -> None:
    assert "http.tls: key is missing: cert and key must be given together" in error_of(
        with_(http={"tls": {"cert": "c"}}))
    cluster = {**CLUSTER, "tls": {"cacert": "ca", "key": "k"}}
    assert "cluster.tls: cert is missing: cert and key must be given together" in error_of(with_(cluster=cluster))


def test_negative_fail_delay() -> None:
    assert "http.auth.failDelay: must be at least 0, got -1" in error_of(with_(http={"auth": {"failDelay": -1}}))


# ---------------------------------------------------------------------------------------------
# Durations
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("1h", 3600), ("30m", 1800), ("1h30m", 5400), ("10s", 10), ("1.5h", 5400), ("300ms", 0.3),
    ("2h45m30.5s", 9930.5), ("0", 0), ("0s", 0), ("+5s", 5), ("-1m", -60), (".5s", 0.5), ("1500us", 0.0015),
    ("2µs", 2e-6), ("100ns", 1e-7),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1", "h", "1 h", "1hour", "1d", " 1h", "-", "1h-5m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_durations_in_the_config() -> None:
    storage = parse({"storage": {"rootDirectory": "/r", "gcDelay": "30m", "gcInterval": "1h30m"}}).config.storage
    assert (storage.gc_delay, storage.gc_interval) == (1800.0, 5400.0)
    assert 'storage.gcDelay: must be a duration like "1h", "30m", "1h30m" or "10s", got "1 hour"' in error_of(
        {"storage": {"rootDirectory": "/r", "gcDelay": "1 hour"}})
    assert "storage.gcInterval: must be a duration string" in error_of(
        {"storage": {"rootDirectory": "/r", "gcInterval": 3600}})
    assert 'storage.gcDelay: must not be negative, got "-1h"' in error_of(
        {"storage": {"rootDirectory": "/r", "gcDelay": "-1h"}})


def test_without_gc_unset_durations_are_zero_and_set_ones_warn() -> None:
    storage = parse({"storage": {"rootDirectory": "/r", "gc": False}}).config.storage
    assert (storage.gc_delay, storage.gc_interval) == (0.0, 0.0)
    loaded = parse({"storage": {"rootDirectory": "/r", "gc": False, "gcDelay": "1h"}})
    assert loaded.warnings == ["storage.gcDelay: set while storage.gc is false, ignored"]


# ---------------------------------------------------------------------------------------------
# Storage and cache drivers (zot's validateCacheConfig rules)
# ---------------------------------------------------------------------------------------------


def test_remote_storage_with_dedupe_needs_a_cache_driver() -> None:
    message = error_of({"storage": {"rootDirectory": "/r", "storageDriver": {"name": "s3", "bucket": "b"}}})
    assert "storage.cacheDriver: dedupe with a storageDriver keeps its index in a remote cache" in message
    storage = parse({"storage": {"rootDirectory": "/r", "storageDriver": {"name": "s3", "bucket": "b"},
                                 "cacheDriver": {"name": "dynamodb"}}}).config.storage
    assert storage.remote_cache is True  # zot's default for remote storage with dedupe


def test_unknown_drivers_are_errors() -> None:
    assert 'storage.storageDriver: unsupported storage driver "swift" (zot knows azure, gcs, s3)' in error_of(
        {"storage": {"rootDirectory": "/r", "remoteCache": False, "storageDriver": {"name": "swift"}}})
    assert 'storage.cacheDriver: unsupported cache driver "memcached"' in error_of(
        {"storage": {"rootDirectory": "/r", "remoteCache": True, "cacheDriver": {"name": "memcached"}}})
    assert 'storage.storageDriver: needs a "name"' in error_of(
        {"storage": {"rootDirectory": "/r", "remoteCache": False, "storageDriver": {}}})


def test_s3_needs_a_bucket_and_redis_a_url() -> None:
    assert 'storage.storageDriver: the s3 driver needs a "bucket"' in error_of(
        {"storage": {"rootDirectory": "/r", "remoteCache": False, "storageDriver": {"name": "s3"}}})
    assert 'storage.cacheDriver: the redis cache needs a "url", or the ZOT_REDIS_URL environment variable' in error_of(
        {"storage": {"rootDirectory": "/r", "remoteCache": True, "cacheDriver": {"name": "redis"}}})


def test_local_storage_with_a_remote_dynamodb_cache_is_an_error() -> None:
    assert "storage.cacheDriver: a dynamodb cache needs a remote storageDriver" in error_of(
        {"storage": {"rootDirectory": "/r", "remoteCache": True, "cacheDriver": {"name": "dynamodb"}}})


def test_cache_driver_without_remote_cache_is_ignored_with_a_warning() -> None:
    loaded = parse({"storage": {"rootDirectory": "/r", "cacheDriver": {"name": "redis", "url": "redis://x"}}})
    assert loaded.warnings == ["storage.cacheDriver: ignored because storage.remoteCache is false "
                               "(a local cache is used, as in zot)"]


# ---------------------------------------------------------------------------------------------
# Cluster
# ---------------------------------------------------------------------------------------------


def test_cluster_with_zero_members() -> None:
    text = '{\n  "storage": {"rootDirectory": "/r"},\n  "cluster": {\n    "members": [],\n' \
           '    "hashKey": "loremipsumdolors"\n  }\n}'
    assert error_of(text) == "test.json:4:5: cluster.members: cannot have 0 members in a scale out cluster"
    assert "cannot have 0 members in a scale out cluster" in error_of(with_(cluster={"hashKey": "loremipsumdolors"}))


@pytest.mark.parametrize(("key", "size"), [("short", 5), ("", 0), ("loremipsumdolorsx", 17), ("lorémipsumdolors", 17)])
def test_hash_key_must_be_16_bytes(key: str, size: int) -> None:
    message = error_of(with_(cluster={**CLUSTER, "hashKey": key}))
    assert "cluster.hashKey: hashKey for scale out cluster must have 16 characters" in message
    assert f"got {size})" in message


def test_hash_key_counts_utf8_bytes() -> None:
    cluster = parse(with_(cluster={**CLUSTER, "hashKey": "lorémipsumdolor"})).config.cluster
    assert cluster is not None and len(cluster.hash_key_bytes) == 16


@pytest.mark.parametrize(("member", "expected"), [
    ("zot-server2", 'cluster.members[1]: "zot-server2" has no port: write it as host:port'),
    ("zot-server2:", 'cluster.members[1]: "zot-server2:" must end with a port number 1-65535'),
    ("zot-server2:70000", 'cluster.members[1]: "zot-server2:70000" must end with a port number 1-65535'),
    (":9000", 'cluster.members[1]: ":9000" has no host'),
    ("http://zot-server2:9000", 'cluster.members[1]: "http://zot-server2:9000" must be host:port, without a scheme'),
    ("::1:9000", 'cluster.members[1]: "::1:9000": an IPv6 address needs brackets'),
    ("127.0.0.1:9000", 'cluster.members[1]: "127.0.0.1:9000" is listed twice'),
])
def test_bad_member_names_the_member(member: str, expected: str) -> None:
    message = error_of(with_(cluster={**CLUSTER, "members": ["127.0.0.1:9000", member]}))
    assert expected in message


def test_member_helpers() -> None:
    assert split_member("zot-0.zot-members.default.svc.cluster.local:5000") == (
        "zot-0.zot-members.default.svc.cluster.local", 5000)
    assert split_member("[::1]:9000") == ("::1", 9000)
    cluster = ClusterConfig.model_validate({"members": ["a:1", "[fd00::2]:2"], "hashKey": "loremipsumdolors"})
    assert cluster.member_addresses == [("a", 1), ("fd00::2", 2)]
    assert cluster.is_clustered and cluster.hash_key_bytes == b"loremipsumdolors"


def test_single_member_is_not_clustered() -> None:
    config = parse(with_(cluster={"members": ["127.0.0.1:5000"], "hashKey": "loremipsumdolors"})).config
    assert config.cluster is not None and not config.cluster.is_clustered and not config.is_clustered


def test_models_use_zot_aliases_and_snake_case_names() -> None:
    config = ZotConfig.model_validate({"storage": {"root_directory": "/r", "gc_delay": "5m"}})
    assert config.storage.gc_delay == 300.0
    dumped = config.model_dump(by_alias=True)
    assert dumped["distSpecVersion"] == "1.1.1" and dumped["storage"]["rootDirectory"] == "/r"


# ---------------------------------------------------------------------------------------------
# `zot-registry verify`
# ---------------------------------------------------------------------------------------------


def write(tmp_path: Path, doc: dict[str, Any] | str) -> str:
    path = tmp_path / "config.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=2))
    return str(path)


def test_verify_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # verify also checks the files the config names: the root must be creatable here.
    path = write(tmp_path, {"storage": {"rootDirectory": str(tmp_path / "root")}})
    assert verify_main(path) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: ok\n"
    assert err == ""


def test_verify_prints_warnings_and_still_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, {"storage": {"rootDirectory": str(tmp_path / "root")},
                            "extensions": {"search": {"enable": True}}, "log": {"audit": "/a"}})
    assert verify_main(path) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: ok\n"
    # In the order of the file.
    assert err.splitlines() == ["warning: extensions.search: not supported yet, ignored",
                                "warning: log.audit: not supported yet, ignored: no audit log is written"]


def test_verify_prints_each_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, {"storage": {"rootDirectory": "/r"}, "http": {"port": "99999"},
                            "log": {"level": "loud"}})
    assert verify_main(path) == 1
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == f'error: {path}:6:5: http.port: must be a port number 1-65535, got "99999"'
    assert lines[1].startswith(f"error: {path}:9:5: log.level: must be one of")
    assert len(lines) == 2


def test_verify_published_redis_example(zot_examples: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = zot_examples / "cluster-s3-redis.json"
    assert verify_main(str(path)) == 1
    assert capsys.readouterr().err == f"error: {trailing_comma_message(path)}\n"


def test_verify_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert verify_main(str(tmp_path / "missing.json")) == 1
    assert capsys.readouterr().err == f"error: {tmp_path / 'missing.json'}: no such file\n"


# ---------------------------------------------------------------------------------------------
# zot settings that restrict who may do what: refused, never ignored (fail closed)
# ---------------------------------------------------------------------------------------------

# Each one, as a user would write it; all of them must be refused.
RESTRICTIVE: list[tuple[str, dict[str, Any]]] = [
    ("http.accessControl", {"http": {"auth": {"htpasswd": {"path": "/p"}},
                                     "accessControl": {"repositories": {"**": {"defaultPolicy": ["read"]}}}}}),
    ("http.accessControl", {"http": {"accessControl": {"repositories": {"**": {"anonymousPolicy": ["read"]}}}}}),
    ("http.auth.ldap", {"http": {"auth": {"ldap": {"address": "ldap.example.com", "baseDN": "dc=x"}}}}),
    ("http.auth.bearer", {"http": {"auth": {"bearer": {"realm": "https://auth", "service": "reg", "cert": "/c"}}}}),
    ("http.auth.openid", {"http": {"auth": {"openid": {"providers": {"github": {"clientid": "x"}}}}}}),
    ("http.auth.apikey", {"http": {"auth": {"apikey": True}}}),
    ("http.auth.mtls", {"http": {"auth": {"mtls": {"identityAttributes": ["CommonName"]}}}}),
    ("http.tls.cacert", {"http": {"tls": {"cert": "/c", "key": "/k", "cacert": "/ca"}}}),
    ("storage.maxRepos", {"storage": {"rootDirectory": "/r", "maxRepos": 10}}),
    ("storage.subPaths", {"storage": {"rootDirectory": "/r", "subPaths": {"/a": {"rootDirectory": "/a"}}}}),
    ("extensions.lint", {"extensions": {"lint": {"enable": True, "mandatoryAnnotations": ["org.opencontainers.x"]}}}),
    ("extensions.apikey", {"extensions": {"apikey": {"enable": True}}}),
]


@pytest.mark.parametrize(("key", "doc"), RESTRICTIVE, ids=[f"{key}-{i}" for i, (key, _) in enumerate(RESTRICTIVE)])
def test_restrictive_unsupported_settings_are_errors_naming_the_key(key: str, doc: dict[str, Any]) -> None:
    message = error_of({**MINIMAL, **doc})
    line = next(line for line in message.splitlines() if f": {key}: " in line)
    assert re.match(rf"test\.json:\d+:\d+: {re.escape(key)}: .*; remove it or run zot$", line), line


def test_the_table_refuses_every_setting_that_restricts_access() -> None:
    refused = {path for path, entry in UNSUPPORTED_KEYS.items() if entry.refuse}
    assert refused == {"http.accessControl", "http.auth.ldap", "http.auth.bearer", "http.auth.openid",
                       "http.auth.apikey", "http.auth.mtls", "http.tls.cacert", "storage.maxRepos",
                       "storage.subPaths", "extensions.lint", "extensions.apikey"}
    assert {key for key, _ in RESTRICTIVE} == refused


def test_access_control_message_is_the_documented_one() -> None:
    text = '{\n  "storage": {"rootDirectory": "/r"},\n  "http": {\n    "accessControl": {}\n  }\n}'
    assert error_of(text) == ("test.json:4:5: http.accessControl: restricts access, which this registry does not "
                              "enforce yet; remove it or run zot")


@pytest.mark.parametrize("doc", [
    {"http": {"auth": {"ldap": None, "apikey": False, "bearer": None}}},
    {"http": {"tls": {"cert": "/c", "key": "/k", "cacert": ""}}},
    {"storage": {"rootDirectory": "/r", "maxRepos": 0}},
    {"extensions": {"lint": {"enable": False, "mandatoryAnnotations": ["a"]}, "apikey": {"enable": False}}},
    {"extensions": {"lint": {"enable": True}}},  # nothing mandatory: zot's linter refuses nothing
])
def test_restrictive_settings_that_are_switched_off_are_fine(doc: dict[str, Any]) -> None:
    loaded = parse({**MINIMAL, **doc})
    assert loaded.warnings == []


def test_lowercase_spelling_of_a_restrictive_key_is_refused_too() -> None:
    assert "http.accessControl: restricts access" in error_of(with_(http={"ACCESSCONTROL": {}}))
    assert "http.auth.ldap: requires LDAP logins" in error_of(with_(http={"Auth": {"LDAP": {}}}))


# ---------------------------------------------------------------------------------------------
# zot settings of recent versions: known, not "unknown key"
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("section", "key", "value"), [
    ("http", "readTimeout", "30s"), ("http", "writeTimeout", "2m"), ("storage", "gcTimeWindow", "01:00-08:00"),
])
def test_recent_zot_keys_are_known(section: str, key: str, value: str) -> None:
    doc: dict[str, Any] = {"storage": {"rootDirectory": "/r"}}
    doc.setdefault(section, {})[key] = value
    loaded = parse(doc)
    assert not any("unknown key" in warning for warning in loaded.warnings)


def test_mtls_is_known_and_refused_not_unknown() -> None:
    message = error_of(with_(http={"auth": {"mtls": {}}}))
    assert "unknown key" not in message and "http.auth.mtls: identifies users by client certificates" in message


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30.0), ("1m30s", 90.0), ("0", 0.0), ("-1s", 0.0)])
def test_read_and_write_timeouts(text: str, seconds: float) -> None:
    http = parse(with_(http={"readTimeout": text, "writeTimeout": text})).config.http
    assert (http.read_timeout, http.write_timeout) == (seconds, seconds)


def test_timeouts_default_to_unset_and_reject_numbers_and_garbage() -> None:
    http = parse(MINIMAL).config.http
    assert (http.read_timeout, http.write_timeout) == (None, None)
    assert "http.readTimeout: must be a duration string" in error_of(with_(http={"readTimeout": 30}))
    assert 'http.writeTimeout: must be a duration like "1h"' in error_of(with_(http={"writeTimeout": "soon"}))


@pytest.mark.parametrize(("text", "window"), [
    ("01:00-08:00", (60, 480)), ("22:30 - 06:15", (1350, 375)), ("", None),
])
def test_gc_time_window_is_parsed_like_zot(text: str, window: tuple[int, int] | None) -> None:
    assert parse({"storage": {"rootDirectory": "/r", "gcTimeWindow": text}}).config.storage.gc_time_window == window


@pytest.mark.parametrize(("text", "reason"), [
    ("24:00-08:00", '"24:00" is not a 24h time'), ("10:60-12:00", '"10:60" is not a 24h time'),
    ("10:00 12:00", 'expected "HH:MM-HH:MM"'), ("08:00-08:00", "cannot be equal"), ("bad-08:00", '"bad"'),
])
def test_bad_gc_time_window(text: str, reason: str) -> None:
    message = error_of({"storage": {"rootDirectory": "/r", "gcTimeWindow": text}})
    assert f"storage.gcTimeWindow: {json.dumps(text)}: " in message and reason in message


def test_gc_time_window_warns_that_it_is_not_enforced() -> None:
    assert parse({"storage": {"rootDirectory": "/r", "gcTimeWindow": "01:00-08:00"}}).warnings == [
        "storage.gcTimeWindow: not supported yet, ignored: garbage collection may run at any time of day "
        "(it deletes the same blobs as inside the window, those unused for gcDelay)"]
    assert parse({"storage": {"rootDirectory": "/r", "gc": False, "gcTimeWindow": "01:00-08:00"}}).warnings == [
        "storage.gcTimeWindow: set while storage.gc is false, ignored"]


@pytest.mark.parametrize("name", ["gcs", "azure"])
def test_storage_drivers_zot_has_and_we_do_not_are_refused(name: str) -> None:
    message = error_of({"storage": {"rootDirectory": "/r", "remoteCache": False,
                                    "storageDriver": {"name": name, "bucket": "b"}}})
    assert message == (f"test.json:5:5: storage.storageDriver: the {name} storage driver is not supported by this "
                       f"registry yet (it supports s3); run zot for {name}")


def test_boltdb_is_not_a_remote_cache() -> None:
    message = error_of({"storage": {"rootDirectory": "/r", "remoteCache": True, "cacheDriver": {"name": "boltdb"}}})
    assert "storage.cacheDriver: the boltdb cache driver is not supported by this registry as a remote cache" in message


# ---------------------------------------------------------------------------------------------
# Strict values: "yes" is not true, "5" is not 5
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("storage", "expected"), [
    ({"dedupe": "no"}, 'storage.dedupe: must be true or false, got "no"'),
    ({"gc": "yes"}, 'storage.gc: must be true or false, got "yes"'),
    ({"gc": 1}, "storage.gc: must be true or false, got 1"),
    ({"remoteCache": "false"}, 'storage.remoteCache: must be true or false, got "false"'),
    ({"commit": 0}, "storage.commit: must be true or false, got 0"),
])
def test_booleans_are_strict(storage: dict[str, Any], expected: str) -> None:
    assert expected in error_of({"storage": {"rootDirectory": "/r", **storage}})


def test_numbers_are_strict_except_the_port() -> None:
    assert 'http.auth.failDelay: must be a whole number, got "5"' in error_of(with_(http={"auth": {"failDelay": "5"}}))
    assert "http.auth.failDelay: must be a whole number, got 1.5" in error_of(with_(http={"auth": {"failDelay": 1.5}}))
    assert 'distSpecVersion: must be a string, got 1.1' in error_of({**MINIMAL, "distSpecVersion": 1.1})
    assert parse(with_(http={"port": "5000"})).config.http.port == 5000


# ---------------------------------------------------------------------------------------------
# Every problem of a file in one run, in file order
# ---------------------------------------------------------------------------------------------


def test_unknown_keys_do_not_hide_the_other_errors() -> None:
    text = ('{\n  "storage": {\n    "rootDirectory": "/r",\n    "dedupe": "no",\n    "gcDelai": "1h"\n  },\n'
            '  "http": {\n    "port": "0",\n    "accessControl": {}\n  },\n'
            '  "cluster": {\n    "members": [],\n    "hashKey": "short"\n  }\n}')
    assert error_of(text).splitlines() == [
        'test.json:4:5: storage.dedupe: must be true or false, got "no"',
        'test.json:5:5: storage.gcDelai: unknown key, zot has no such setting in storage; did you mean "gcDelay"?',
        'test.json:8:5: http.port: must be a port number 1-65535, got "0"',
        "test.json:9:5: http.accessControl: restricts access, which this registry does not enforce yet; "
        "remove it or run zot",
        "test.json:12:5: cluster.members: cannot have 0 members in a scale out cluster",
        "test.json:13:5: cluster.hashKey: hashKey for scale out cluster must have 16 characters "
        "(exactly 16 bytes as UTF-8, got 5)",
    ]


def test_a_misspelled_required_key_is_reported_once() -> None:
    assert error_of({"storage": {"rootDirectry": "/r"}}).splitlines() == [
        'test.json:3:5: storage.rootDirectry: unknown key, zot has no such setting in storage; '
        'did you mean "rootDirectory"?']


def test_driver_errors_are_reported_beside_field_errors() -> None:
    lines = error_of({"storage": {"rootDirectory": "/r", "gc": "yes", "remoteCache": True,
                                  "storageDriver": {"name": "gcs"}, "cacheDriver": {"name": "boltdb"}}}).splitlines()
    assert len(lines) == 3
    assert 'storage.gc: must be true or false, got "yes"' in lines[0]
    assert "storage.storageDriver: the gcs storage driver is not supported" in lines[1]
    assert "storage.cacheDriver: the boltdb cache driver is not supported" in lines[2]


def test_duplicate_members_are_all_reported() -> None:
    members = ["a:1", "a:1", "b:1", "b:1"]
    message = error_of(with_(cluster={"members": members, "hashKey": "short"}))
    assert "cluster.members[1]: \"a:1\" is listed twice" in message
    assert "cluster.members[3]: \"b:1\" is listed twice" in message
    assert "cluster.hashKey: hashKey for scale out cluster" in message


@pytest.mark.parametrize("text", ["[" * 100_000, '{"a":' * 5000 + "1" + "}" * 5000])
def test_absurd_nesting_is_an_error_not_a_crash(text: str) -> None:
    assert "nested too deeply" in error_of(text)


def test_loaded_config_locates_later_problems() -> None:
    text = '{\n  "storage": {"rootDirectory": "/r"},\n  "http": {\n    "tls": {"cert": "c", "key": "k"}\n  }\n}'
    loaded = parse(text)
    assert loaded.describe([(("http", "tls", "key"), "no such file")]) == [
        "test.json:4:26: http.tls.key: no such file"]


def test_nul_characters_in_names_are_errors() -> None:
    message = error_of({"storage": {"rootDirectory": "/r\u0000x"}, "http": {"address": "127.0.0.1\u0000"},
                        "log": {"output": "/l\u0000"}})
    assert len(message.splitlines()) == 3
    assert 'storage.rootDirectory: must not contain a NUL character (\\u0000), got "/r\\u0000x"' in message
    assert "http.address: must not contain a NUL character" in message
    assert "log.output: must not contain a NUL character" in message


def test_config_files_larger_than_any_config_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    path.write_bytes(b" " * (config_module.MAX_CONFIG_BYTES + 1))
    with pytest.raises(ConfigError, match="more than 4 MiB, too large for a config file"):
        load_config(path)
