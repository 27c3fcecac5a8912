"""zot config loading: zot's published examples and ours, and `zot-registry verify`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from zot_registry.cli import verify_main
from zot_registry.config import (
    ConfigError,
    LoadedConfig,
    load_config,
    parse_config,
)
from zot_registry.config import tables as config_tables

from tests.support.paths import REPO_ROOT, ZOT_EXAMPLES

OUR_EXAMPLE = REPO_ROOT / "examples" / "config.json"


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
    return (
        f"{path}:{bl}:{bc}: trailing comma after the last member of an object: remove the ',' at line {cl}, column {cc}"
    )


@pytest.mark.parametrize("name", ["cluster-s3-redis.json", "cluster-s3-redis-ui.json"])
def test_published_redis_examples_fail_on_their_trailing_comma(zot_examples: Path, name: str) -> None:
    path = zot_examples / name
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == trailing_comma_message(path)
    # As published, the comma closes cacheDriver (line 20) and storage closes on line 21.
    assert str(caught.value) == (
        f"{path}:21:1: trailing comma after the last member of an object: remove the ',' at line 20, column 2"
    )


def test_every_published_example_loads_or_fails_as_documented(zot_examples: Path) -> None:
    refused = {
        "cluster-s3-redis.json": "trailing comma",
        "cluster-s3-redis-ui.json": "trailing comma",
        # Refused rather than half-enforced (tests/unit/test_access_config.py has the details).
        "config-policy.json": "CEL conditions on a policy are not implemented",
        # Its credentialsFile is named relative to zot's repository (test_ldap_config.py points it at the copy).
        "config-ldap.json": "examples/config-ldap-credentials.json: no such file",
    }
    for path in sorted(zot_examples.glob("*.json")):
        if path.name in refused:
            with pytest.raises(ConfigError, match=refused[path.name]):
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
    path = write(
        tmp_path,
        {
            "storage": {"rootDirectory": str(tmp_path / "root")},
            "extensions": {"search": {"enable": True}},
            "log": {"audit": "/a"},
        },
    )
    assert verify_main(path) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: ok\n"
    # In the order of the file.
    assert err.splitlines() == [
        "warning: extensions.search: not supported yet, ignored",
        "warning: log.audit: not supported yet, ignored: no audit log is written",
    ]


def test_verify_prints_each_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, {"storage": {"rootDirectory": "/r"}, "http": {"port": "99999"}, "log": {"level": "loud"}})
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
