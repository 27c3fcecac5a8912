"""A corpus of bad configs fed to the real `zot-registry verify` and `serve`.

Whatever the mistake, each command exits non-zero where it must, says what is wrong in lines that
start with "error: ", and never prints a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.certs import make_certs
from tests.support.checks import assert_no_traceback
from tests.support.ports import free_port

Build = Callable[[Path, int], Path]  # (folder, a free port) -> the config file to pass


def _json(doc: Any) -> Callable[[Path, int], Path]:
    """A config written as JSON; "$PORT" and "$DIR" are replaced by the port and the folder."""

    def build(folder: Path, port: int) -> Path:
        text = json.dumps(doc, indent=2).replace("$PORT", str(port)).replace("$DIR", str(folder))
        path = folder / "config.json"
        path.write_text(text)
        return path

    return build


def _text(text: str | bytes, name: str = "config.json") -> Build:
    def build(folder: Path, port: int) -> Path:
        path = folder / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path

    return build


def _valid(**changes: Any) -> dict[str, Any]:
    """A usable config, with sections replaced or added."""
    doc: dict[str, Any] = {
        "storage": {"rootDirectory": "$DIR/root", "gc": False},
        "http": {"address": "127.0.0.1", "port": "$PORT"},
        "log": {"level": "warn"},
    }
    for section, value in changes.items():
        doc[section] = value
    return doc


def _http(**values: Any) -> dict[str, Any]:
    return {"address": "127.0.0.1", "port": "$PORT", **values}


def _directory(folder: Path, port: int) -> Path:
    return folder


def _missing(folder: Path, port: int) -> Path:
    return folder / "nope.json"


def _mismatched_tls(folder: Path, port: int) -> Path:
    one, other = make_certs(folder / "one", ["127.0.0.1"]), make_certs(folder / "other", ["127.0.0.1"])
    return _json(_valid(http=_http(tls={"cert": str(one.cert), "key": str(other.key)})))(folder, port)


def _port_taken(folder: Path, port: int) -> Path:
    return _json(_valid())(folder, port)


@dataclass(frozen=True)
class Case:
    name: str
    build: Build
    expected: str  # in the error output of every command that must fail
    verify_fails: bool = True  # verify does not look at ports: a port in use passes it
    occupy_port: bool = False


CASES = [
    # The file itself
    Case("missing file", _missing, "nope.json: no such file"),
    Case("directory", _directory, "is a directory, not a config file"),
    Case("empty", _text(""), "the file is empty"),
    Case("whitespace", _text(" \n\t\n"), "the file is empty"),
    Case("binary", _text(b"\x89PNG\r\n\x1a\n\x00\xff"), "not UTF-8 text"),
    Case("bom then garbage", _text(b"\xef\xbb\xbf}{"), "invalid JSON"),
    Case("yaml", _text("storage:\n  rootDirectory: /r\n", "config.yaml"), "this registry reads JSON only"),
    # JSON
    Case("trailing comma", _text('{"storage": {"rootDirectory": "/r",}}'), "trailing comma"),
    Case("comment", _text('{\n// zot\n"storage": {}}'), "comments are not allowed in JSON"),
    Case("single quotes", _text("{'storage': {}}"), "need double quotes"),
    Case("NaN", _text('{"storage": {"rootDirectory": "/r"}, "x": NaN}'), "NaN is not valid JSON"),
    Case("truncated", _text('{"storage": {"rootDirectory": "/r"'), "the file ends before the JSON document does"),
    Case("array", _text("[1, 2]"), "must be a JSON object"),
    Case("null", _text("null"), "must be a JSON object"),
    Case("deep nesting", _text("[" * 200_000), "nested too deeply"),
    Case("deep objects", _text('{"a":' * 3000 + "1" + "}" * 3000), "nested too deeply"),
    # Keys and values
    Case("unknown key", _json(_valid(htpp={})), 'did you mean "http"?'),
    Case(
        "same key twice",
        _json({"storage": {"rootDirectory": "/a", "ROOTDIRECTORY": "/b"}}),
        "keys are case-insensitive",
    ),
    Case("no storage", _json({"http": {}}), "storage: required"),
    Case("storage not an object", _json({"storage": 5}), "storage: must be an object"),
    Case("null root", _json({"storage": {"rootDirectory": None}}), "storage.rootDirectory: must be a string"),
    Case("empty root", _json({"storage": {"rootDirectory": ""}}), "storage.rootDirectory: must not be empty"),
    Case("NUL in root", _json({"storage": {"rootDirectory": "/r\u0000"}}), "must not contain a NUL character"),
    Case("dedupe no", _json({"storage": {"rootDirectory": "/r", "dedupe": "no"}}), "must be true or false"),
    Case("gc yes", _json({"storage": {"rootDirectory": "/r", "gc": "yes"}}), "must be true or false"),
    Case("port too big", _json(_valid(http={"port": "99999"})), "must be a port number 1-65535"),
    Case("port as list", _json(_valid(http={"port": [5000]})), "must be a port number 1-65535"),
    Case("port as float", _json(_valid(http={"port": 5000.0})), "must be a port number 1-65535"),
    Case("failDelay string", _json(_valid(http=_http(auth={"failDelay": "5"}))), "must be a whole number"),
    Case("gcDelay number", _json({"storage": {"rootDirectory": "/r", "gcDelay": 3600}}), "must be a duration string"),
    Case("gcDelay words", _json({"storage": {"rootDirectory": "/r", "gcDelay": "1 hour"}}), "must be a duration"),
    Case("readTimeout number", _json(_valid(http=_http(readTimeout=30))), "must be a duration string"),
    Case(
        "gcTimeWindow", _json({"storage": {"rootDirectory": "/r", "gcTimeWindow": "25:00-01:00"}}), "is not a 24h time"
    ),
    Case("log level", _json(_valid(log={"level": "loud"})), "log.level: must be one of"),
    Case(
        "gcs",
        _json({"storage": {"rootDirectory": "/r", "remoteCache": False, "storageDriver": {"name": "gcs"}}}),
        "the gcs storage driver is not supported by this registry yet",
    ),
    Case(
        "azure",
        _json({"storage": {"rootDirectory": "/r", "remoteCache": False, "storageDriver": {"name": "azure"}}}),
        "the azure storage driver is not supported by this registry yet",
    ),
    Case(
        "driver name a list",
        _json({"storage": {"rootDirectory": "/r", "remoteCache": False, "storageDriver": {"name": ["s3"]}}}),
        '"name" must be a string',
    ),
    Case(
        "cache name an object",
        _json({"storage": {"rootDirectory": "/r", "remoteCache": True, "cacheDriver": {"name": {}}}}),
        '"name" must be a string',
    ),
    Case(
        "s3 without bucket",
        _json({"storage": {"rootDirectory": "/r", "remoteCache": False, "storageDriver": {"name": "s3"}}}),
        'needs a "bucket"',
    ),
    Case("cluster", _json(_valid(cluster={"members": ["a"], "hashKey": "short"})), "has no port"),
    Case("cluster not an object", _json(_valid(cluster=[])), "cluster: must be an object"),
    Case("tls half", _json(_valid(http=_http(tls={"cert": "/c"}))), "cert and key must be given together"),
    # Restrictive settings we do not enforce
    Case("accessControl", _json(_valid(http=_http(accessControl={"repositories": {}}))), "http.accessControl: "),
    Case("bearer", _json(_valid(http=_http(auth={"bearer": {}}))), "http.auth.bearer: "),
    Case("openid", _json(_valid(http=_http(auth={"openid": {"providers": {}}}))), "http.auth.openid: "),
    Case("apikey", _json(_valid(http=_http(auth={"apikey": True}))), "http.auth.apikey: "),
    # Login methods that are implemented, given incompletely or where they can do nothing
    Case("ldap", _json(_valid(http=_http(auth={"ldap": {"address": "x"}}))), "http.auth.ldap.port: required"),
    Case("mtls", _json(_valid(http=_http(auth={"mtls": {}}))), "http.auth.mtls: "),
    Case("client CA", _json(_valid(http=_http(tls={"cert": "/c", "key": "/k", "cacert": "/ca"}))), "http.tls.cacert: "),
    Case("lint", _json(_valid(extensions={"lint": {"mandatoryAnnotations": ["a"]}})), "extensions.lint: "),
    # Files the config names
    Case(
        "missing htpasswd",
        _json(_valid(http=_http(auth={"htpasswd": {"path": "$DIR/htpasswd"}}))),
        "htpasswd: no such file",
    ),
    Case(
        "htpasswd is a directory",
        _json(_valid(http=_http(auth={"htpasswd": {"path": "$DIR"}}))),
        "is a directory, not a file",
    ),
    Case(
        "missing certificate",
        _json(_valid(http=_http(tls={"cert": "$DIR/c.pem", "key": "$DIR/k.pem"}))),
        "c.pem: no such file",
    ),
    Case(
        "certificate is /dev/null",
        _json(_valid(http=_http(tls={"cert": "/dev/null", "key": "/dev/null"}))),
        "is not a regular file",
    ),
    Case("mismatched certificate", _mismatched_tls, "does not belong to the certificate"),
    Case("log in a missing directory", _json(_valid(log={"output": "$DIR/no/registry.log"})), "does not exist"),
    Case("log is a directory", _json(_valid(log={"output": "$DIR"})), "is a directory, not a file"),
    Case("root is a file", _json(_valid(storage={"rootDirectory": "$DIR/config.json"})), "is not a directory"),
    Case(
        "names too long",
        _json(
            _valid(
                storage={"rootDirectory": "/" + "a" * 5000},
                http=_http(auth={"htpasswd": {"path": "/" + "b" * 5000}}),
                log={"output": "/" + "c" * 5000},
            )
        ),
        "File name too long",
    ),
    # The port
    Case("port in use", _port_taken, "is already in use", verify_fails=False, occupy_port=True),
]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zot_registry.cli", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def port() -> Iterator[int]:
    yield free_port()


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_config(tmp_path: Path, port: int, case: Case) -> None:
    folder = tmp_path / "case"
    folder.mkdir()
    path = case.build(folder, port)
    listener = None
    if case.occupy_port:
        listener = socket.create_server(("127.0.0.1", port))
    try:
        verify = run_cli("verify", str(path))
        serve = run_cli("serve", str(path), "--workers", "1")
    finally:
        if listener is not None:
            listener.close()
    for name, result, must_fail in (("verify", verify, case.verify_fails), ("serve", serve, True)):
        output = result.stdout + result.stderr
        assert_no_traceback(output, f"{name} {case.name}")
        if must_fail:
            assert result.returncode == 1, f"{name} {case.name}: exit {result.returncode}\n{output}"
            assert case.expected in result.stderr, f"{name} {case.name}:\n{output}"
            assert all(line.startswith(("error: ", "warning: ")) for line in result.stderr.splitlines()), output
        else:
            assert result.returncode == 0, f"{name} {case.name}: exit {result.returncode}\n{output}"
    assert not (folder / "root").exists()  # refused before anything was created


def _without_file_override() -> list[str]:
    """A prefix that runs a command unable to read a mode-000 file, also as root: root reads every
    file through CAP_DAC_OVERRIDE, so the command runs with that capability out of its bounding set."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")  # util-linux, on every Debian
    if setpriv is None:
        pytest.skip("running as root without setpriv (util-linux): cannot make a file unreadable to root")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]


def test_unreadable_config(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{}")
    path.chmod(0)
    for command in ("verify", "serve"):
        result = subprocess.run(
            [*_without_file_override(), sys.executable, "-m", "zot_registry.cli", command, str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1
        assert result.stderr == f"error: {path}: permission denied\n"
