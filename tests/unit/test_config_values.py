"""zot config loading: values, durations, storage and cache drivers, the cluster section."""

from __future__ import annotations

import json
from typing import Any

import pytest
from zot_registry.config import (
    ClusterConfig,
    ZotConfig,
    parse_duration,
    split_member,
)

from tests.support.config_cases import CLUSTER, MINIMAL, error_of, parse, with_

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


@pytest.mark.parametrize(
    ("port", "shown"),
    [
        ("99999", '"99999"'),
        (0, "0"),
        ("0", '"0"'),
        ("abc", '"abc"'),
        ("", '""'),
        (True, "true"),
        (-1, "-1"),
    ],
)
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
        with_(log={"level": "verbose"})
    )


def test_tls_needs_cert_and_key_together() -> None:
    assert "http.tls: key is missing: cert and key must be given together" in error_of(
        with_(http={"tls": {"cert": "c"}})
    )
    cluster = {**CLUSTER, "tls": {"cacert": "ca", "key": "k"}}
    assert "cluster.tls: cert is missing: cert and key must be given together" in error_of(with_(cluster=cluster))


def test_negative_fail_delay() -> None:
    assert "http.auth.failDelay: must be at least 0, got -1" in error_of(with_(http={"auth": {"failDelay": -1}}))


# ---------------------------------------------------------------------------------------------
# Durations
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1h", 3600),
        ("30m", 1800),
        ("1h30m", 5400),
        ("10s", 10),
        ("1.5h", 5400),
        ("300ms", 0.3),
        ("2h45m30.5s", 9930.5),
        ("0", 0),
        ("0s", 0),
        ("+5s", 5),
        ("-1m", -60),
        (".5s", 0.5),
        ("1500us", 0.0015),
        ("2µs", 2e-6),
        ("100ns", 1e-7),
    ],
)
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
        {"storage": {"rootDirectory": "/r", "gcDelay": "1 hour"}}
    )
    assert "storage.gcInterval: must be a duration string" in error_of(
        {"storage": {"rootDirectory": "/r", "gcInterval": 3600}}
    )
    assert 'storage.gcDelay: must not be negative, got "-1h"' in error_of(
        {"storage": {"rootDirectory": "/r", "gcDelay": "-1h"}}
    )


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
    storage = parse(
        {
            "storage": {
                "rootDirectory": "/r",
                "storageDriver": {"name": "s3", "bucket": "b"},
                "cacheDriver": {"name": "dynamodb"},
            }
        }
    ).config.storage
    assert storage.remote_cache is True  # zot's default for remote storage with dedupe


def test_unknown_drivers_are_errors() -> None:
    assert 'storage.storageDriver: unsupported storage driver "swift" (zot knows azure, gcs, s3)' in error_of(
        {"storage": {"rootDirectory": "/r", "remoteCache": False, "storageDriver": {"name": "swift"}}}
    )
    assert 'storage.cacheDriver: unsupported cache driver "memcached"' in error_of(
        {"storage": {"rootDirectory": "/r", "remoteCache": True, "cacheDriver": {"name": "memcached"}}}
    )
    assert 'storage.storageDriver: needs a "name"' in error_of(
        {"storage": {"rootDirectory": "/r", "remoteCache": False, "storageDriver": {}}}
    )


def test_s3_needs_a_bucket_and_redis_a_url() -> None:
    assert 'storage.storageDriver: the s3 driver needs a "bucket"' in error_of(
        {"storage": {"rootDirectory": "/r", "remoteCache": False, "storageDriver": {"name": "s3"}}}
    )
    assert 'storage.cacheDriver: the redis cache needs a "url", or the ZOT_REDIS_URL environment variable' in error_of(
        {"storage": {"rootDirectory": "/r", "remoteCache": True, "cacheDriver": {"name": "redis"}}}
    )


def test_local_storage_with_a_remote_dynamodb_cache_is_an_error() -> None:
    assert "storage.cacheDriver: a dynamodb cache needs a remote storageDriver" in error_of(
        {"storage": {"rootDirectory": "/r", "remoteCache": True, "cacheDriver": {"name": "dynamodb"}}}
    )


def test_cache_driver_without_remote_cache_is_ignored_with_a_warning() -> None:
    loaded = parse({"storage": {"rootDirectory": "/r", "cacheDriver": {"name": "redis", "url": "redis://x"}}})
    assert loaded.warnings == [
        "storage.cacheDriver: ignored because storage.remoteCache is false (a local cache is used, as in zot)"
    ]


# ---------------------------------------------------------------------------------------------
# Cluster
# ---------------------------------------------------------------------------------------------


def test_cluster_with_zero_members() -> None:
    text = (
        '{\n  "storage": {"rootDirectory": "/r"},\n  "cluster": {\n    "members": [],\n'
        '    "hashKey": "loremipsumdolors"\n  }\n}'
    )
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


@pytest.mark.parametrize(
    ("member", "expected"),
    [
        ("zot-server2", 'cluster.members[1]: "zot-server2" has no port: write it as host:port'),
        ("zot-server2:", 'cluster.members[1]: "zot-server2:" must end with a port number 1-65535'),
        ("zot-server2:70000", 'cluster.members[1]: "zot-server2:70000" must end with a port number 1-65535'),
        (":9000", 'cluster.members[1]: ":9000" has no host'),
        (
            "http://zot-server2:9000",
            'cluster.members[1]: "http://zot-server2:9000" must be host:port, without a scheme',
        ),
        ("::1:9000", 'cluster.members[1]: "::1:9000": an IPv6 address needs brackets'),
        ("127.0.0.1:9000", 'cluster.members[1]: "127.0.0.1:9000" is listed twice'),
    ],
)
def test_bad_member_names_the_member(member: str, expected: str) -> None:
    message = error_of(with_(cluster={**CLUSTER, "members": ["127.0.0.1:9000", member]}))
    assert expected in message


def test_member_helpers() -> None:
    assert split_member("zot-0.zot-members.default.svc.cluster.local:5000") == (
        "zot-0.zot-members.default.svc.cluster.local",
        5000,
    )
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
