"""zot's http.auth.ldap as a config model (registry/config/ldap.py): zot's published example, zot's
mandatory keys, the credentials file (read when the config is loaded, its problems naming the file
and the key), the TLS modes as zot 2.1.20 derives them, and the checks of attribute names and of
userFilter."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from zot_registry.config.ldap import LDAPConfig, load_ldap_credentials, user_filter
from zot_registry.config.messages import ConfigError, dotted, validation_problems

from tests.support.certs import make_certs
from tests.support.paths import ZOT_EXAMPLES

MINIMAL: dict[str, Any] = {
    "address": "ldap.example.org",
    "port": 636,
    "baseDN": "ou=people,dc=example,dc=org",
    "userAttribute": "uid",
}


def problems(stanza: dict[str, Any]) -> dict[str, str]:
    """key path -> message, for a stanza that must be refused."""
    with pytest.raises(ValidationError) as caught:
        LDAPConfig.model_validate(stanza)
    return {dotted(path): message for path, message in validation_problems(caught.value)}


def write(tmp_path: Path, content: Any, name: str = "ldap-credentials.json") -> str:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content, indent=2))
    return str(path)


def credentials_problem(tmp_path: Path, content: Any) -> str:
    path = write(tmp_path, content)
    found = problems({**MINIMAL, "credentialsFile": path})
    assert list(found) == ["credentialsFile"]
    message = found["credentialsFile"]
    assert message.startswith("cannot use the credentials file: ") and path in message
    return message


# ---------------------------------------------------------------------------------------------
# zot's example and the model
# ---------------------------------------------------------------------------------------------


def test_zots_example_stanza_with_its_credentials_file() -> None:
    example = json.loads((ZOT_EXAMPLES / "config-ldap.json").read_text())
    stanza = example["http"]["auth"]["ldap"]
    # The example names the file relative to zot's repository; here it is next to the example.
    assert stanza["credentialsFile"] == "examples/config-ldap-credentials.json"
    stanza["credentialsFile"] = str(ZOT_EXAMPLES / "credentials" / "config-ldap-credentials.json")
    ldap = LDAPConfig.model_validate(stanza)
    assert (ldap.address, ldap.port, ldap.base_dn) == ("ldap.example.org", 389, "ou=Users,dc=example,dc=org")
    assert (ldap.user_attribute, ldap.user_group_attribute) == ("uid", "memberOf")
    assert ldap.user_filter == "(!(nsaccountlock=TRUE))"
    assert ldap.skip_verify and ldap.subtree_search and not ldap.start_tls and not ldap.insecure
    assert ldap.bind_dn == "cn=ldap-searcher,ou=Users,dc=example,dc=org"
    assert ldap.bind_password == "ldap-searcher-password"
    # insecure is not set: zot connects with LDAPS, to port 389 as written; the certificate is not checked.
    assert ldap.ldaps and not ldap.uses_start_tls
    assert [warning.split(":")[0] for warning in ldap.warnings()] == ["skipVerify"]
    context = ldap.tls_context()
    assert context is not None and context.verify_mode == ssl.CERT_NONE and not context.check_hostname


def test_every_key_and_the_defaults(tmp_path: Path) -> None:
    ldap = LDAPConfig.model_validate(MINIMAL)
    assert ldap.credentials_file is None and (ldap.bind_dn, ldap.bind_password) == ("", "")  # anonymous search
    assert not (ldap.insecure or ldap.start_tls or ldap.skip_verify or ldap.subtree_search)
    assert ldap.user_group_attribute is None and ldap.user_filter is None and ldap.ca_cert is None
    assert ldap.ldaps and ldap.warnings() == []
    credentials = write(tmp_path, {"bindDN": "cn=reader,dc=example,dc=org", "bindPassword": "s3cret"})
    every = LDAPConfig.model_validate(
        {
            **MINIMAL,
            "credentialsFile": credentials,
            "port": 389,
            "insecure": True,
            "startTLS": True,
            "skipVerify": False,
            "subtreeSearch": True,
            "userGroupAttribute": "memberOf",
            "userFilter": "(objectClass=inetOrgPerson)",
            "caCert": "/etc/ssl/certs/ca-certificates.crt",
        }
    )
    assert every.credentials_file == credentials and every.bind_dn == "cn=reader,dc=example,dc=org"
    assert every.uses_start_tls and not every.ldaps and every.ca_cert == "/etc/ssl/certs/ca-certificates.crt"
    # zot's "" means not set.
    empty = LDAPConfig.model_validate({**MINIMAL, "credentialsFile": "", "userGroupAttribute": "", "userFilter": ""})
    assert empty.credentials_file is None and empty.user_group_attribute is None and empty.user_filter is None


def test_the_password_is_kept_out_of_repr_and_dumps(tmp_path: Path) -> None:
    credentials = write(tmp_path, {"bindDN": "cn=reader,dc=x", "bindPassword": "do-not-show"})
    ldap = LDAPConfig.model_validate({**MINIMAL, "credentialsFile": credentials})
    assert ldap.bind_password == "do-not-show"
    assert "do-not-show" not in repr(ldap) and "do-not-show" not in json.dumps(ldap.model_dump())
    with pytest.raises(ValidationError):  # frozen, as every config model
        ldap.port = 1  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# Mandatory keys and values
# ---------------------------------------------------------------------------------------------


def test_zots_mandatory_keys_and_the_port() -> None:
    # zot: "missing mandatory key" for userAttribute, address and basedn; the port has no default
    # there (it would dial port 0), so it is required here.
    assert problems({}) == {name: "required" for name in ("port", "address", "baseDN", "userAttribute")}
    found = problems({**MINIMAL, "address": "", "baseDN": "", "userAttribute": ""})
    assert found["address"].startswith("required: the LDAP server's host name")
    assert found["baseDN"].startswith("must be the DN under which the users are")
    assert found["userAttribute"].startswith("required: the attribute that holds the user name")


@pytest.mark.parametrize("port", [0, 65536, -1, True, "ldaps", 636.0, None])
def test_a_port_that_is_not_one(port: Any) -> None:
    assert problems({**MINIMAL, "port": port})["port"].startswith("must be a port number 1-65535")


def test_a_port_as_a_string_of_digits_as_zots_viper_takes_it() -> None:
    assert LDAPConfig.model_validate({**MINIMAL, "port": "389"}).port == 389


def test_types_are_strict() -> None:
    found = problems({**MINIMAL, "insecure": "true", "startTLS": 1, "subtreeSearch": None, "userFilter": 5})
    assert found["insecure"] == 'must be true or false, got "true"'
    assert found["startTLS"] == "must be true or false, got 1"
    assert set(found) == {"insecure", "startTLS", "subtreeSearch", "userFilter"}


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("ldap://ldap.example.org:389", 'write the host name only, as "ldap.example.org"'),
        ("ldaps://[::1", "write the host name only"),
        ("ldap.example.org:389", "(the port goes in `port`)"),
        ("ldap example", "is not a host name or an address"),
        ("ldap.example.org/", "is not a host name or an address"),
    ],
)
def test_the_address_is_a_host_name(address: str, words: str) -> None:
    assert words in problems({**MINIMAL, "address": address})["address"]


@pytest.mark.parametrize("address", ["ldap.example.org", "192.0.2.10", "[2001:db8::10]", "localhost"])
def test_good_addresses(address: str) -> None:
    assert LDAPConfig.model_validate({**MINIMAL, "address": address}).address == address


def test_attribute_names_are_checked_as_they_go_into_the_filter() -> None:
    found = problems({**MINIMAL, "userAttribute": "uid)(uid=*", "userGroupAttribute": "member of"})
    assert found["userAttribute"].startswith('"uid)(uid=*" is not an LDAP attribute name')
    assert found["userGroupAttribute"].startswith('"member of" is not an LDAP attribute name')
    good = LDAPConfig.model_validate({**MINIMAL, "userAttribute": "sAMAccountName", "userGroupAttribute": "2.5.4.31"})
    assert (good.user_attribute, good.user_group_attribute) == ("sAMAccountName", "2.5.4.31")


def test_inline_bind_dn_and_password_are_refused_as_zot_refuses_them() -> None:
    found = problems({**MINIMAL, "bindDN": "cn=reader,dc=x", "bindPassword": "pw"})
    assert set(found) == {"bindDN", "bindPassword"}
    assert all("reads the service account only from credentialsFile" in message for message in found.values())


# ---------------------------------------------------------------------------------------------
# userFilter
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "sent"),
    [
        (None, "(uid=al\\2aice)"),
        ("(!(nsaccountlock=TRUE))", "(&(uid=al\\2aice)(!(nsaccountlock=TRUE)))"),
        ("!(nsaccountlock=TRUE)", "(&(uid=al\\2aice)(!(nsaccountlock=TRUE)))"),
        # zot wraps the filter in parentheses of its own and its parser drops the extra ones.
        ("((objectClass=person))", "(&(uid=al\\2aice)(objectClass=person))"),
        ("objectClass=person", "(&(uid=al\\2aice)(objectClass=person))"),
        ("(objectClass=person)(!(ou=gone))", "(&(uid=al\\2aice)(objectClass=person)(!(ou=gone)))"),
    ],
)
def test_the_search_filter(written: str | None, sent: str) -> None:
    assert user_filter("uid", "al*ice", written) == sent
    if written is not None:
        assert LDAPConfig.model_validate({**MINIMAL, "userFilter": written}).user_filter == written


def test_the_user_name_is_escaped() -> None:
    assert user_filter("uid", "*)(uid=*", None) == "(uid=\\2a\\29\\28uid=\\2a)"
    assert user_filter("uid", "a\\b\x00", None) == "(uid=a\\5cb\\00)"


@pytest.mark.parametrize(
    ("written", "words"),
    [
        ("(a=b", "its parentheses do not balance"),
        ("a=b)(|(uid=*)", "its parentheses do not balance"),
        ("(bad)", "is not a valid LDAP filter"),
        ("()", "is not a valid LDAP filter"),
    ],
)
def test_a_user_filter_that_is_not_one(written: str, words: str) -> None:
    assert words in problems({**MINIMAL, "userFilter": written})["userFilter"]


# ---------------------------------------------------------------------------------------------
# The connection's TLS, as zot 2.1.20 derives it (UseSSL = !insecure, SkipTLS = !startTLS)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("insecure", "start_tls", "ldaps", "uses_start_tls", "warned"),
    [
        (False, False, True, False, []),
        (False, True, True, False, ["startTLS"]),  # zot ignores startTLS without insecure: LDAPS
        (True, True, False, True, []),
        (True, False, False, False, ["insecure"]),  # plain LDAP: passwords in clear text
    ],
)
def test_the_tls_modes(insecure: bool, start_tls: bool, ldaps: bool, uses_start_tls: bool, warned: list[str]) -> None:
    ldap = LDAPConfig.model_validate({**MINIMAL, "insecure": insecure, "startTLS": start_tls})
    assert (ldap.ldaps, ldap.uses_start_tls) == (ldaps, uses_start_tls)
    assert [warning.split(":")[0] for warning in ldap.warnings()] == warned
    context = ldap.tls_context()
    assert (context is not None) == (ldaps or uses_start_tls)
    if context is not None:  # the system's CAs and the host name, checked
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_ca_cert_is_read_when_the_context_is_made(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "tls", ["ldap.example.org"])
    context = LDAPConfig.model_validate({**MINIMAL, "caCert": str(certs.ca)}).tls_context()
    assert context is not None and context.get_ca_certs()[0]["subject"] == ((("commonName", "test CA"),),)
    missing = str(tmp_path / "missing.crt")
    with pytest.raises(ConfigError, match=f"^{missing}: no such file"):
        LDAPConfig.model_validate({**MINIMAL, "caCert": missing}).tls_context()
    with pytest.raises(ConfigError, match="not a PEM file of CA certificates"):
        LDAPConfig.model_validate({**MINIMAL, "caCert": write(tmp_path, "not a certificate", "ca.crt")}).tls_context()
    # zot reads caCert even for plain LDAP, and fails to start on a bad one.
    plain = LDAPConfig.model_validate({**MINIMAL, "insecure": True, "caCert": missing})
    with pytest.raises(ConfigError, match="no such file"):
        plain.tls_context()


# ---------------------------------------------------------------------------------------------
# The credentials file
# ---------------------------------------------------------------------------------------------


def test_credentials_keys_are_case_insensitive_as_viper_reads_them(tmp_path: Path) -> None:
    path = write(tmp_path, {"binddn": "cn=reader,dc=x", "BINDPASSWORD": "pw"})
    assert load_ldap_credentials(path) == ("cn=reader,dc=x", "pw")
    # Both empty: an anonymous search, as zot's empty bindPassword with an empty bindDN.
    assert load_ldap_credentials(write(tmp_path, {"bindDN": "", "bindPassword": ""})) == ("", "")


def test_a_missing_credentials_file_is_named(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.json")
    assert problems({**MINIMAL, "credentialsFile": missing}) == {
        "credentialsFile": f"cannot use the credentials file: {missing}: no such file"
    }
    assert "is a directory" in problems({**MINIMAL, "credentialsFile": str(tmp_path)})["credentialsFile"]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("", "the file is empty; an LDAP credentials file is a JSON object like"),
        ('{"bindDN": "cn=x",}', "ldap-credentials.json:1:"),  # JSON syntax: line and column
        (["cn=x", "pw"], 'an LDAP credentials file is a JSON object like {"bindDN"'),
        ({"bindDN": "cn=x"}, "needs a bindPassword (zot requires both)"),
        ({}, "needs a bindDN and a bindPassword"),
        ({"bindDN": "cn=x", "bindPasswd": "pw"}, '"bindPasswd": unknown key: an LDAP credentials file has a bindDN'),
        ({"bindDN": "cn=x", "bindPassword": "pw", "extra": 1}, '"extra": unknown key'),
        ({"bindDN": 5, "bindPassword": "pw"}, '"bindDN": must be a string, got 5'),
        ({"bindDN": "cn=x", "BindDN": "cn=y", "bindPassword": "pw"}, '"BindDN": the same key twice'),
        ({"bindDN": "cn=x", "bindPassword": ""}, '"bindPassword": is empty: a bind DN without its password'),
        ({"bindDN": "", "bindPassword": "pw"}, '"bindDN": is empty while bindPassword is not'),
    ],
)
def test_a_bad_credentials_file_names_the_file_and_the_key(tmp_path: Path, content: Any, words: str) -> None:
    assert words in credentials_problem(tmp_path, content)


def test_a_misspelled_key_is_suggested_and_not_reported_missing_too(tmp_path: Path) -> None:
    message = credentials_problem(tmp_path, {"bindDN": "cn=x", "bindPasword": "pw"})
    assert 'did you mean "bindPassword"?' in message and "needs a" not in message
    # The position of the key in the file: line 3 of the indented JSON.
    assert "ldap-credentials.json:3:3: " in message


def test_every_problem_of_the_stanza_at_once(tmp_path: Path) -> None:
    found = problems({"credentialsFile": str(tmp_path / "nope.json"), "port": 0, "userAttribute": "u id"})
    assert set(found) == {"credentialsFile", "port", "address", "baseDN", "userAttribute"}
