"""zot's extensions.sync stanza: the typed model, its defaults, every rule with its key path and line,
case-insensitive keys, switching it off, and zot's sync credentials file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from zot_registry.config import (
    UNSUPPORTED_KEYS,
    ConfigError,
    Credentials,
    SyncConfig,
    SyncContent,
    SyncTags,
    load_credentials,
)
from zot_registry.config.sync import valid_glob

from tests.support.config_cases import MINIMAL, error_of, parse, with_

UPSTREAM = "https://registry.example.com:5000"
# Key paths of the first registry and its first content rule, as messages write them.
REGISTRY = "extensions.sync.registries[0]"
CONTENT = f"{REGISTRY}.content[0]"


def with_sync(sync: dict[str, Any], **sections: Any) -> dict[str, Any]:
    return with_(extensions={"sync": sync}, **sections)


def with_registry(**settings: Any) -> dict[str, Any]:
    return with_sync({"registries": [{"urls": [UPSTREAM], **settings}]})


def sync_of(doc: dict[str, Any]) -> SyncConfig:
    loaded = parse(doc)
    assert loaded.warnings == []
    assert loaded.config.sync is not None
    return loaded.config.sync


def write_credentials(tmp_path: Path, content: Any) -> str:
    path = tmp_path / "credentials.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content, indent=2))
    return str(path)


# ---------------------------------------------------------------------------------------------
# The typed model
# ---------------------------------------------------------------------------------------------


def test_full_stanza_loads_into_the_typed_model(tmp_path: Path) -> None:
    credentials = write_credentials(tmp_path, {"registry.example.com:5000": {"username": "u", "password": "p"}})
    certs = tmp_path / "certs"
    certs.mkdir()
    sync = sync_of(
        with_sync(
            {
                "enable": True,
                "credentialsFile": credentials,
                "downloadDir": "/var/lib/zot-sync",
                "registries": [
                    {
                        "urls": [UPSTREAM, "http://mirror.example.com"],
                        "onDemand": True,
                        "pollInterval": "6h",
                        "tlsVerify": False,
                        "certDir": str(certs),
                        "maxRetries": 3,
                        "retryDelay": "5m",
                        "maxRetryDelay": "10m",
                        "onlySigned": False,
                        "syncLegacyCosignTags": False,
                        "preserveDigest": False,
                        "syncTimeout": "1h30m",
                        "content": [
                            {
                                "prefix": "/repo1/repo",
                                "tags": {"regex": "4.*", "excludeRegex": ".*-rc$", "semver": True},
                                "destination": "/repo",
                                "stripPrefix": True,
                            },
                            {"prefix": "team/**"},
                        ],
                    }
                ],
            }
        )
    )
    assert (sync.enable, sync.credentials_file, sync.download_dir) == (True, credentials, "/var/lib/zot-sync")
    (registry,) = sync.registries
    assert registry.urls == [UPSTREAM, "http://mirror.example.com"]
    assert (registry.on_demand, registry.poll_interval, registry.tls_verify) == (True, 21600.0, False)
    assert (registry.cert_dir, registry.max_retries, registry.retry_delay) == (str(certs), 3, 300.0)
    assert (registry.max_retry_delay, registry.only_signed, registry.sync_legacy_cosign_tags) == (600.0, False, False)
    assert (registry.preserve_digest, registry.sync_timeout) == (False, 5400.0)
    assert registry.content == [
        SyncContent(
            prefix="/repo1/repo",
            tags=SyncTags(regex="4.*", exclude_regex=".*-rc$", semver=True),
            destination="/repo",
            strip_prefix=True,
        ),
        SyncContent(prefix="team/**"),
    ]
    assert (registry.credential_helper, registry.oauth2_credential_helper) == (None, None)
    assert sync.enabled


def test_defaults_are_zots() -> None:
    sync = sync_of(with_registry())
    assert (sync.enable, sync.credentials_file, sync.download_dir, sync.enabled) == (None, None, None, True)
    registry = sync.registries[0]
    assert registry.urls == [UPSTREAM]
    assert (registry.on_demand, registry.tls_verify, registry.only_signed) == (False, True, False)
    assert (registry.sync_legacy_cosign_tags, registry.preserve_digest, registry.content) == (True, False, [])
    unset = (registry.poll_interval, registry.cert_dir, registry.max_retries, registry.retry_delay)
    assert unset == (None, None, None, None)
    assert (registry.max_retry_delay, registry.sync_timeout) == (None, None)
    content = sync_of(with_registry(content=[{"prefix": "**", "tags": {}}])).registries[0].content[0]
    assert content == SyncContent(prefix="**", tags=SyncTags(regex=None, exclude_regex=None, semver=False))
    assert (content.destination, content.strip_prefix) == (None, False)


def test_empty_strings_mean_not_set_as_in_zot() -> None:
    sync = sync_of(with_sync({"credentialsFile": "", "downloadDir": "", "registries": [{"urls": [UPSTREAM]}]}))
    assert (sync.credentials_file, sync.download_dir) == (None, None)
    assert sync_of(with_registry(certDir="")).registries[0].cert_dir is None


def test_durations_take_go_syntax_and_zero() -> None:
    registry = sync_of(with_registry(pollInterval="0", retryDelay="1.5s", maxRetries=0, syncTimeout="300ms"))
    registry_0 = registry.registries[0]
    assert (registry_0.poll_interval, registry_0.retry_delay, registry_0.max_retries) == (0.0, 1.5, 0)
    assert registry_0.sync_timeout == pytest.approx(0.3)


def test_no_sync_stanza_and_null() -> None:
    assert parse(MINIMAL).config.sync is None
    assert parse(with_(extensions={"search": {"enable": False}})).config.sync is None
    assert parse(with_(extensions={"sync": None})).config.sync is None


def test_sync_is_implemented_not_unsupported() -> None:
    assert "extensions.sync" not in UNSUPPORTED_KEYS
    loaded = parse(with_(extensions={"sync": {"registries": [{"urls": [UPSTREAM]}]}, "search": {"enable": True}}))
    assert loaded.warnings == ["extensions.search: not supported yet, ignored"]
    # The other extensions stay untyped; the stanza as written stays in `extensions`, and dumps keep it there.
    extensions = loaded.config.extensions
    assert extensions == {"sync": {"registries": [{"urls": [UPSTREAM]}]}, "search": {"enable": True}}
    dumped = loaded.config.model_dump(by_alias=True)
    assert "sync" not in dumped and dumped["extensions"] == extensions


def test_sync_is_not_a_top_level_key() -> None:
    message = error_of(with_(sync={"registries": [{"urls": [UPSTREAM]}]}))
    assert "sync: unknown key, zot has no such setting at the top level" in message


# ---------------------------------------------------------------------------------------------
# Keys: case-insensitive, unknown
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["onDemand", "ondemand", "ONDEMAND", "OnDemand"])
def test_keys_are_case_insensitive_like_zot(key: str) -> None:
    doc = with_(extensions={"Sync": {"Registries": [{"URLs": [UPSTREAM], key: True, "TLSVerify": False}]}})
    registry = sync_of(doc).registries[0]
    assert registry.on_demand and not registry.tls_verify


def test_nested_keys_are_case_insensitive_too() -> None:
    content = {"Prefix": "a/*", "Tags": {"Regex": "v1", "EXCLUDEREGEX": "rc"}, "StripPrefix": True}
    registry = sync_of(with_registry(Content=[content], PollInterval="1m")).registries[0]
    assert registry.poll_interval == 60.0
    assert registry.content == [
        SyncContent(prefix="a/*", tags=SyncTags(regex="v1", exclude_regex="rc"), strip_prefix=True)
    ]


def test_same_key_twice_in_different_case_is_an_error() -> None:
    message = error_of(with_registry(onDemand=True, ondemand=False))
    assert 'extensions.sync.registries[0].ondemand: same key as "onDemand" (keys are case-insensitive)' in message


def test_unknown_keys_are_errors_with_their_path_line_and_a_suggestion() -> None:
    text = json.dumps(with_registry(content=[{"prefix": "a/*", "tags": {"regx": "v1"}}], pollIntervall="1h"), indent=2)
    lines = error_of(text).splitlines()
    assert lines == [
        f"test.json:{_line(text, 'regx')}:17: extensions.sync.registries[0].content[0].tags.regx: unknown key, "
        'zot has no such setting in extensions.sync.registries[0].content[0].tags; did you mean "regex"?',
        f"test.json:{_line(text, 'pollIntervall')}:11: extensions.sync.registries[0].pollIntervall: unknown key, "
        'zot has no such setting in extensions.sync.registries[0]; did you mean "pollInterval"?',
    ]


def test_a_misspelled_required_key_is_reported_once() -> None:
    message = error_of(with_registry(content=[{"prefx": "a/*"}]))
    assert f'{CONTENT}.prefx: unknown key, zot has no such setting in {CONTENT}; did you mean "prefix"?' in message
    assert "required" not in message


# ---------------------------------------------------------------------------------------------
# The rules, each refused with its key path and line
# ---------------------------------------------------------------------------------------------


def _line(text: str, needle: str) -> int:
    """The line of the one line of `text` that has `needle` in quotes."""
    found = [number for number, line in enumerate(text.splitlines(), 1) if f'"{needle}"' in line]
    assert len(found) == 1, (needle, found)
    return found[0]


def assert_refused(doc: dict[str, Any], path: str, reason: str, needle: str) -> str:
    """The message has one line for `path`, at the line of `needle` (a key or value), saying `reason`."""
    text = json.dumps(doc, indent=2)
    message = error_of(text)
    line = next((line for line in message.splitlines() if f": {path}: " in line), None)
    assert line is not None, message
    match = re.match(rf"test\.json:(\d+):\d+: {re.escape(path)}: (.*)$", line)
    assert match is not None, line
    assert int(match.group(1)) == _line(text, needle), line
    assert reason in match.group(2), line
    return line


@pytest.mark.parametrize(
    ("urls", "path", "reason", "needle"),
    [
        ([], f"{REGISTRY}.urls", "needs at least one URL of the upstream registry", "urls"),
        (["registry.example.com:5000"], f"{REGISTRY}.urls[0]", 'needs its scheme: write it as "https://registry', ""),
        ([UPSTREAM, "ftp://x.example.com"], f"{REGISTRY}.urls[1]", "must be an http:// or https:// URL", ""),
        (["https://"], f"{REGISTRY}.urls[0]", "has no host", ""),
        (["https:///path"], f"{REGISTRY}.urls[0]", "has no host", ""),
        (["https://x.example.com:99999"], f"{REGISTRY}.urls[0]", "has an invalid port", ""),
        (["https://x.example.com:port"], f"{REGISTRY}.urls[0]", "has an invalid port", ""),
        (["https://x.example.com /v2"], f"{REGISTRY}.urls[0]", "must not contain spaces", ""),
        ([""], f"{REGISTRY}.urls[0]", "needs its scheme", ""),
        ("https://x.example.com", f"{REGISTRY}.urls", "must be a list", "urls"),
    ],
)
def test_bad_urls(urls: Any, path: str, reason: str, needle: str) -> None:
    bad = urls[-1] if isinstance(urls, list) and urls else urls
    assert_refused(with_sync({"registries": [{"urls": urls}]}), path, reason, needle or bad)


def test_missing_required_keys_are_located_at_their_parent() -> None:
    text = json.dumps(with_sync({"registries": [{"onDemand": True, "content": [{"tags": {}}]}]}), indent=2)
    lines = text.splitlines()
    registry = next(n for n, line in enumerate(lines, 1) if line.strip() == "{" and '"onDemand"' in lines[n])
    content = next(n for n, line in enumerate(lines, 1) if line.strip() == "{" and '"tags"' in lines[n])
    assert error_of(text).splitlines() == [
        f"test.json:{registry}:9: {REGISTRY}.urls: required",
        f"test.json:{content}:13: {CONTENT}.prefix: required",
    ]


def test_every_bad_url_is_reported_at_once() -> None:
    message = error_of(with_sync({"registries": [{"urls": ["a", UPSTREAM, "ftp://b"]}]}))
    assert [line.split(": ")[1] for line in message.splitlines()] == [f"{REGISTRY}.urls[0]", f"{REGISTRY}.urls[2]"]


@pytest.mark.parametrize(
    ("content", "path", "reason", "needle"),
    [
        (
            {"prefix": "a/*", "tags": {"regex": "(v1"}},
            f"{CONTENT}.tags.regex",
            '"(v1" is not a valid regular expression',
            "regex",
        ),
        (
            {"prefix": "a/*", "tags": {"excludeRegex": "[rc"}},
            f"{CONTENT}.tags.excludeRegex",
            "is not a valid regular expression",
            "excludeRegex",
        ),
        ({"prefix": ""}, f"{CONTENT}.prefix", "must not be empty", "prefix"),
        ({"prefix": "team/[abc"}, f"{CONTENT}.prefix", "is not a valid glob", "prefix"),
        ({"prefix": "team/{a,b"}, f"{CONTENT}.prefix", "is not a valid glob", "prefix"),
        ({"prefix": "team/[]"}, f"{CONTENT}.prefix", "is not a valid glob", "prefix"),
        ({"prefix": "team\\"}, f"{CONTENT}.prefix", "is not a valid glob", "prefix"),
        ({"prefix": 5}, f"{CONTENT}.prefix", "must be a string, got 5", "prefix"),
        (
            {"prefix": "a", "tags": {"semver": "yes"}},
            f"{CONTENT}.tags.semver",
            'must be true or false, got "yes"',
            "semver",
        ),
        (
            {"prefix": "repo", "destination": "/", "stripPrefix": True},
            f"{CONTENT}.stripPrefix",
            "can not use stripPrefix true and destination '/' without using glob patterns in prefix",
            "stripPrefix",
        ),
    ],
)
def test_bad_content(content: dict[str, Any], path: str, reason: str, needle: str) -> None:
    assert_refused(with_registry(content=[content]), path, reason, needle)


def test_the_path_names_the_content_entry_and_its_line() -> None:
    doc = with_registry(content=[{"prefix": "a/*"}, {"prefix": "b/*", "tags": {"regex": "(("}}])
    text = json.dumps(doc, indent=2)
    line = _line(text, "regex")
    assert error_of(text) == (
        f"test.json:{line}:17: {REGISTRY}.content[1].tags.regex: "
        '"((" is not a valid regular expression: missing ), unterminated subpattern at position 1'
    )


@pytest.mark.parametrize(
    ("settings", "path", "reason", "needle"),
    [
        ({"maxRetries": -1}, f"{REGISTRY}.maxRetries", "must be at least 0, got -1", "maxRetries"),
        (
            {"maxRetries": "3", "retryDelay": "1s"},
            f"{REGISTRY}.maxRetries",
            'must be a whole number, got "3"',
            "maxRetries",
        ),
        ({"pollInterval": "-1h"}, f"{REGISTRY}.pollInterval", 'must not be negative, got "-1h"', "pollInterval"),
        ({"retryDelay": "-5s"}, f"{REGISTRY}.retryDelay", "must not be negative", "retryDelay"),
        (
            {"retryDelay": "1s", "maxRetryDelay": "-5s"},
            f"{REGISTRY}.maxRetryDelay",
            "must not be negative",
            "maxRetryDelay",
        ),
        ({"syncTimeout": "-1m"}, f"{REGISTRY}.syncTimeout", "must not be negative", "syncTimeout"),
        (
            {"pollInterval": 3600},
            f"{REGISTRY}.pollInterval",
            "zot would read a bare number as nanoseconds",
            "pollInterval",
        ),
        ({"syncTimeout": "soon"}, f"{REGISTRY}.syncTimeout", 'must be a duration like "1h"', "syncTimeout"),
        ({"tlsVerify": "false"}, f"{REGISTRY}.tlsVerify", 'must be true or false, got "false"', "tlsVerify"),
        # zot's own rules (validateSync), in its words
        ({"maxRetries": 3}, f"{REGISTRY}.maxRetries", "retryDelay is required when using maxRetries", "maxRetries"),
        (
            {"maxRetryDelay": "1m"},
            f"{REGISTRY}.maxRetryDelay",
            "retryDelay is required when using maxRetryDelay",
            "maxRetryDelay",
        ),
        (
            {"retryDelay": "5m", "maxRetryDelay": "1m"},
            f"{REGISTRY}.maxRetryDelay",
            "maxRetryDelay must be greater than or equal to retryDelay",
            "maxRetryDelay",
        ),
    ],
)
def test_bad_numbers_and_durations(settings: dict[str, Any], path: str, reason: str, needle: str) -> None:
    assert_refused(with_registry(**settings), path, reason, needle)


@pytest.mark.parametrize(
    ("settings", "key", "reason"),
    [
        (
            {"onlySigned": True},
            "onlySigned",
            "this registry does not verify signatures: it would sync unsigned images too",
        ),
        (
            {"credentialHelper": "ecr"},
            "credentialHelper",
            'the "ecr" credential helper, which this registry does not implement',
        ),
        (
            {
                "credentialHelper": "oauth2",
                "oauth2CredentialHelper": {"tokenURL": "https://sts", "assertionFile": "/t"},
            },
            "credentialHelper",
            "it would contact the upstream without them",
        ),
        (
            {"oauth2CredentialHelper": {"tokenURL": "https://sts", "assertionFile": "/t"}},
            "oauth2CredentialHelper",
            "from an OAuth2 token endpoint, which this registry does not implement yet",
        ),
    ],
)
def test_settings_we_cannot_honour_are_refused_not_ignored(settings: dict[str, Any], key: str, reason: str) -> None:
    line = assert_refused(with_registry(**settings), f"{REGISTRY}.{key}", reason, key)
    assert line.endswith("remove it or run zot"), line


@pytest.mark.parametrize(
    "settings",
    [
        {"onlySigned": False},
        {"credentialHelper": ""},
        {"oauth2CredentialHelper": {}},
        {"credentialHelper": None, "oauth2CredentialHelper": None},
        {"syncLegacyCosignTags": True, "retryDelay": "1s", "maxRetryDelay": "1s"},
        {"preserveDigest": False},
    ],
)
def test_the_same_settings_switched_off_or_harmless_are_accepted(settings: dict[str, Any]) -> None:
    registry = sync_of(with_registry(**settings)).registries[0]
    assert registry.credential_helper is None and registry.oauth2_credential_helper is None
    assert not registry.only_signed


def test_preserve_digest_needs_compat_as_in_zot() -> None:
    doc = with_registry(preserveDigest=True)
    assert_refused(
        doc,
        f"{REGISTRY}.preserveDigest",
        "can not use PreserveDigest option without enabling http.Compat",
        "preserveDigest",
    )
    doc["http"] = {"compat": ["docker2s2"]}
    assert sync_of(doc).registries[0].preserve_digest


def test_sync_with_remote_storage_needs_a_download_dir_as_in_zot() -> None:
    storage = {"rootDirectory": "/r", "remoteCache": False, "storageDriver": {"name": "s3", "bucket": "b"}}
    doc = with_registry()
    doc["storage"] = storage
    text = json.dumps(doc, indent=2)
    assert error_of(text) == (
        f"test.json:{_line(text, 'sync')}:5: extensions.sync.downloadDir: using both sync and remote storage features "
        'needs config.Extensions.Sync.DownloadDir to be specified: add a local directory, e.g. "downloadDir": '
        '"/var/lib/zot-sync"'
    )
    doc["extensions"]["sync"]["downloadDir"] = "/tmp/sync"
    assert parse(doc).config.sync is not None
    doc["extensions"]["sync"] = {"enable": False, "registries": [{"urls": [UPSTREAM]}]}
    assert parse(doc).config.sync is not None


def test_cert_dir_must_be_a_directory(tmp_path: Path) -> None:
    missing, plain = tmp_path / "missing", tmp_path / "file"
    plain.write_text("x")
    assert_refused(with_registry(certDir=str(missing)), f"{REGISTRY}.certDir", "no such directory", "certDir")
    assert_refused(with_registry(certDir=str(plain)), f"{REGISTRY}.certDir", "is not a directory", "certDir")
    doc = with_sync({"registries": [{"urls": [UPSTREAM]}, {"urls": [UPSTREAM], "certDir": str(missing)}]})
    assert "extensions.sync.registries[1].certDir: " in error_of(doc)


def test_every_problem_of_the_stanza_is_reported_at_once() -> None:
    doc = with_sync(
        {
            "registries": [
                {"urls": ["nope"], "onlySigned": True, "content": [{"prefix": ""}]},
                {"urls": [UPSTREAM], "pollInterval": 10},
            ]
        }
    )
    paths = [line.split(": ")[1] for line in error_of(doc).splitlines()]
    assert paths == [
        f"{REGISTRY}.urls[0]",
        f"{REGISTRY}.onlySigned",
        f"{CONTENT}.prefix",
        "extensions.sync.registries[1].pollInterval",
    ]


def test_wrong_shapes_are_reported_in_words() -> None:
    assert "extensions.sync: must be an object ({...}), got" in error_of(with_(extensions={"sync": []}))
    assert "extensions.sync.registries: must be a list" in error_of(with_sync({"registries": {"urls": [UPSTREAM]}}))
    assert "extensions.sync.registries[0]: must be an object" in error_of(with_sync({"registries": [UPSTREAM]}))
    assert "extensions.sync.enable: must be true or false" in error_of(with_sync({"enable": "on"}))


@pytest.mark.parametrize(
    ("pattern", "valid"),
    [
        ("**", True),
        ("team/**", True),
        ("/repo1/repo", True),
        ("a/[abc]/b", True),
        ("a/[!abc]", True),
        ("a/{x,y}/*", True),
        ("a/{x,{y,z}}", True),
        ("a\\*", True),
        ("a/[]]", False),
        ("a/[abc", False),
        ("a/{x,y", False),
        ("a/x}", False),
        ("a\\", False),
        ("a/[", False),
    ],
)
def test_prefix_globs_are_checked_like_doublestar(pattern: str, valid: bool) -> None:
    assert valid_glob(pattern) is valid


# ---------------------------------------------------------------------------------------------
# Switching it on and off
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sync", "enabled"),
    [
        ({"registries": [{"urls": [UPSTREAM]}]}, True),
        ({"enable": True, "registries": [{"urls": [UPSTREAM]}]}, True),
        ({"enable": None, "registries": [{"urls": [UPSTREAM]}]}, True),
        ({"enable": False, "registries": [{"urls": [UPSTREAM]}]}, False),
        ({"Enable": False, "registries": [{"urls": [UPSTREAM]}]}, False),
        ({"enable": True}, False),
        ({"enable": True, "registries": []}, False),
        ({}, False),
    ],
)
def test_enabled_when_registries_are_given_unless_switched_off(sync: dict[str, Any], enabled: bool) -> None:
    assert sync_of(with_sync(sync)).enabled is enabled


def test_a_stanza_switched_off_is_still_validated_but_its_files_are_not_read(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    off = sync_of(
        with_sync(
            {"enable": False, "credentialsFile": missing, "registries": [{"urls": [UPSTREAM], "certDir": missing}]}
        )
    )
    assert not off.enabled and off.credentials_file == missing
    assert (
        sync_of(with_sync({"credentialsFile": missing})).credentials_file == missing
    )  # no registries: nothing to sync
    # zot validates the registries of a stanza that is off, too.
    assert "urls[0]: " in error_of(with_sync({"enable": False, "registries": [{"urls": ["nope"]}]}))


# ---------------------------------------------------------------------------------------------
# The credentials file
# ---------------------------------------------------------------------------------------------


def test_credentials_file_loads_with_case_insensitive_keys(tmp_path: Path) -> None:
    path = write_credentials(
        tmp_path,
        {
            "registry.example.com:5000": {"username": "alice", "password": "secret"},
            "Mirror.Example.com": {"Username": "bob", "PASSWORD": ""},
        },
    )
    assert load_credentials(path) == {
        "registry.example.com:5000": Credentials(username="alice", password="secret"),
        "mirror.example.com": Credentials(username="bob", password=""),
    }
    assert "secret" not in repr(load_credentials(path))
    assert load_credentials(write_credentials(tmp_path, {})) == {}


def test_a_good_credentials_file_in_the_config(tmp_path: Path) -> None:
    path = write_credentials(tmp_path, {"registry.example.com:5000": {"username": "u", "password": "p"}})
    doc = with_sync({"credentialsFile": path, "registries": [{"urls": [UPSTREAM]}]})
    assert sync_of(doc).credentials_file == path


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", r"{path}: the file is empty; a credentials file is a JSON object"),
        ('{\n  "r:5000": {"username": "u", "password": "p"},\n}', r"{path}:3:1: trailing comma after the last member"),
        ('{"r:5000": {"username": "u"', r"{path}:1:28: the file ends before the JSON document does"),
        ("[]", r"{path}: a credentials file is a JSON object like"),
        (
            '{\n  "r:5000": "u:p"\n}',
            r'{path}:2:3: "r:5000": must be an object \{{"username": ..., "password": ...\}}, got "u:p"',
        ),
        (
            '{\n  "r:5000": {\n    "username": "u",\n    "passwrod": "p"\n  }\n}',
            r'{path}:4:5: "r:5000"."passwrod": unknown key',
        ),
        ('{\n  "r:5000": {"username": "u"}\n}', r'{path}:2:3: "r:5000": needs a password$'),
        ('{\n  "r:5000": {}\n}', r'{path}:2:3: "r:5000": needs a username and a password$'),
        (
            '{\n  "r:5000": {"username": "u", "password": 5}\n}',
            r'{path}:2:31: "r:5000"."password": must be a string, got 5',
        ),
        (
            '{\n  "r:5000": {"username": "u", "Username": "v", "password": "p"}\n}',
            r'{path}:2:31: "r:5000"."Username": the same key twice',
        ),
        (
            '{\n  "R:5000": {"username": "u", "password": "p"},\n  "r:5000": {"username": "u", "password": "p"}\n}',
            r'{path}:3:3: "r:5000": the same registry twice',
        ),
        (
            '{\n  "https://r:5000/": {"username": "u", "password": "p"}\n}',
            r'{path}:2:3: "https://r:5000/": write the registry without its scheme, as "r:5000"',
        ),
        ('{\n  "": {"username": "u", "password": "p"}\n}', r'{path}:2:3: "": an empty registry name'),
    ],
)
def test_bad_credentials_files_name_the_file_and_line(tmp_path: Path, content: str, expected: str) -> None:
    path = write_credentials(tmp_path, content)
    with pytest.raises(ConfigError) as caught:
        load_credentials(path)
    assert re.match(expected.format(path=re.escape(path)), str(caught.value)), str(caught.value)


def test_missing_and_unreadable_credentials_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.json: no such file$"):
        load_credentials(str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="is a directory, not a credentials file"):
        load_credentials(str(tmp_path))
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe{}")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_credentials(str(binary))


def test_a_broken_credentials_file_is_a_config_error_at_its_key(tmp_path: Path) -> None:
    path = write_credentials(tmp_path, '{\n  "r:5000": {"user": "u", "password": "p"}\n}')
    doc = with_sync({"credentialsFile": path, "registries": [{"urls": [UPSTREAM]}]})
    line = assert_refused(
        doc, "extensions.sync.credentialsFile", "cannot use the credentials file: ", "credentialsFile"
    )
    assert line.endswith(
        f'cannot use the credentials file: {path}:2:14: "r:5000"."user": unknown key: a credentials entry has '
        'a username and a password; did you mean "username"?'
    )
    missing = str(tmp_path / "missing.json")
    doc = with_sync({"credentialsFile": missing, "registries": [{"urls": [UPSTREAM]}]})
    line = assert_refused(
        doc,
        "extensions.sync.credentialsFile",
        f"cannot use the credentials file: {missing}: no such file",
        "credentialsFile",
    )
