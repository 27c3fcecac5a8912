"""`zot-registry verify` and `serve` refuse what they cannot honour: restrictive settings, and files
the config names that are missing or wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.certs import make_certs
from tests.support.cli import base_config, cli, error_lines, nothing_listens, write_config
from tests.support.config_cases import RESTRICTIVE
from tests.support.registry import write_htpasswd

# ---------------------------------------------------------------------------------------------
# Settings that restrict access, which we do not enforce: refused by verify and by serve
# ---------------------------------------------------------------------------------------------


def restrictive_config(tmp_path: Path, doc: dict[str, Any]) -> dict[str, Any]:
    config = base_config(tmp_path)
    for section, values in doc.items():
        config[section] = {**config.get(section, {}), **values}
    return config


@pytest.mark.parametrize(("key", "doc"), RESTRICTIVE, ids=[f"{key}-{i}" for i, (key, _) in enumerate(RESTRICTIVE)])
def test_verify_refuses_restrictive_settings(tmp_path: Path, key: str, doc: dict[str, Any]) -> None:
    path = write_config(tmp_path, restrictive_config(tmp_path, doc))
    result = cli("verify", str(path))
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert any(f": {key}: " in line and line.endswith("; remove it or run zot") for line in error_lines(result)), (
        result.stderr
    )


@pytest.mark.parametrize(("key", "doc"), RESTRICTIVE, ids=[f"{key}-{i}" for i, (key, _) in enumerate(RESTRICTIVE)])
def test_serve_refuses_to_start_with_restrictive_settings(tmp_path: Path, key: str, doc: dict[str, Any]) -> None:
    config = restrictive_config(tmp_path, doc)
    result = cli("serve", str(write_config(tmp_path, config)), "--workers", "1", timeout=30)
    assert result.returncode == 1, result
    assert any(f": {key}: " in line for line in error_lines(result)), result.stderr
    assert nothing_listens("127.0.0.1", int(config["http"]["port"]))


# ---------------------------------------------------------------------------------------------
# Files the config names
# ---------------------------------------------------------------------------------------------


def both_refuse(path: Path, expected: str) -> None:
    """verify and serve: exit code 1 and exactly one error line, containing `expected`."""
    for command in (["verify", str(path)], ["serve", str(path), "--workers", "1"]):
        result = cli(*command, timeout=30)
        assert result.returncode == 1, result
        lines = error_lines(result)
        assert len(lines) == 1 and expected in lines[0], result.stderr


def test_missing_htpasswd_file(tmp_path: Path) -> None:
    config = base_config(tmp_path, auth={"htpasswd": {"path": str(tmp_path / "missing.htpasswd")}})
    path = write_config(tmp_path, config)
    both_refuse(path, f"http.auth.htpasswd.path: {tmp_path / 'missing.htpasswd'}: no such file")
    assert nothing_listens("127.0.0.1", int(config["http"]["port"]))


def test_htpasswd_that_is_a_directory(tmp_path: Path) -> None:
    path = write_config(tmp_path, base_config(tmp_path, auth={"htpasswd": {"path": str(tmp_path)}}))
    both_refuse(path, "is a directory, not a file")


@pytest.mark.parametrize("missing", ["cert", "key"])
def test_missing_tls_file(tmp_path: Path, missing: str) -> None:
    certs = make_certs(tmp_path / "tls", ["127.0.0.1"])
    tls = {"cert": str(certs.cert), "key": str(certs.key), missing: str(tmp_path / "nope.pem")}
    path = write_config(tmp_path, base_config(tmp_path, tls=tls))
    both_refuse(path, f"http.tls.{missing}: {tmp_path / 'nope.pem'}: no such file")


def test_certificate_and_key_that_do_not_match(tmp_path: Path) -> None:
    one, other = make_certs(tmp_path / "one", ["127.0.0.1"]), make_certs(tmp_path / "other", ["127.0.0.1"])
    path = write_config(tmp_path, base_config(tmp_path, tls={"cert": str(one.cert), "key": str(other.key)}))
    both_refuse(path, f"http.tls.key: {other.key}: does not belong to the certificate {one.cert}")


def test_key_given_as_certificate_and_garbage_certificate(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "tls", ["127.0.0.1"])
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    path = write_config(tmp_path, base_config(tmp_path, tls={"cert": str(garbage), "key": str(certs.cert)}))
    result = cli("verify", str(path))
    assert result.returncode == 1
    lines = error_lines(result)
    assert len(lines) == 2
    assert lines[0].endswith(f"http.tls.cert: {garbage}: not a PEM certificate")
    assert lines[1].endswith(f"http.tls.key: {certs.cert}: not a PEM private key")


def test_cluster_tls_files_are_checked(tmp_path: Path) -> None:
    config = base_config(tmp_path)
    config["cluster"] = {
        "members": ["127.0.0.1:1", "127.0.0.2:1"],
        "hashKey": "loremipsumdolors",
        "tls": {"cacert": str(tmp_path / "ca.crt")},
    }
    both_refuse(write_config(tmp_path, config), f"cluster.tls.cacert: {tmp_path / 'ca.crt'}: no such file")


def test_log_output_in_a_missing_directory(tmp_path: Path) -> None:
    config = base_config(tmp_path)
    config["log"]["output"] = str(tmp_path / "no" / "such" / "registry.log")
    both_refuse(write_config(tmp_path, config), f"the directory {tmp_path / 'no' / 'such'} does not exist")


def test_every_file_problem_is_reported_at_once(tmp_path: Path) -> None:
    config = base_config(
        tmp_path,
        tls={"cert": str(tmp_path / "c.pem"), "key": str(tmp_path / "k.pem")},
        auth={"htpasswd": {"path": str(tmp_path / "h")}},
    )
    result = cli("verify", str(write_config(tmp_path, config)))
    assert result.returncode == 1
    assert [line.split(": ")[2] for line in error_lines(result)] == [
        "http.tls.cert",
        "http.tls.key",
        "http.auth.htpasswd.path",
    ]


def test_verify_ok_with_real_files(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "tls", ["127.0.0.1"])
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"admin": "secret"})
    config = base_config(
        tmp_path, tls={"cert": str(certs.cert), "key": str(certs.key)}, auth={"htpasswd": {"path": str(htpasswd)}}
    )
    config["log"]["output"] = str(tmp_path / "registry.log")
    path = write_config(tmp_path, config)
    result = cli("verify", str(path))
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{path}: ok\n", "")


def test_htpasswd_entries_that_cannot_log_in_are_warned_about(tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("# users\nold:$apr1$abcdefgh$0123456789abcdefghij/.\n")
    path = write_config(tmp_path, base_config(tmp_path, auth={"htpasswd": {"path": str(htpasswd)}}))
    result = cli("verify", str(path))
    assert result.returncode == 0, result
    assert f"{htpasswd}:2: the password of 'old' is not a bcrypt hash (create it with htpasswd -B)" in result.stderr
    htpasswd.write_text("")
    result = cli("verify", str(path))
    assert result.returncode == 0 and "has no user:password lines; nobody can log in" in result.stderr
