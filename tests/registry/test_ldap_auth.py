"""LDAP logins (registry/authn/ldap.py) against a real slapd on loopback (tests/support/ldap.py): the
groups of a good login, wrong passwords, unknown and ambiguous users, the anonymous bind trap, the
three connection modes with the fixture's CA, a server that is down or silent (503 in seconds, never
a hang), the cache, shared checks and the bound on waiting checks. No mocks: every answer is slapd's."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from zot_registry.authn.ldap import CONNECT_TIMEOUT, LdapAuth, LdapUnavailable
from zot_registry.config.ldap import LDAPConfig
from zot_registry.errors import TooManyRequests

from tests.support.certs import make_certs
from tests.support.ldap import (
    CONTRACTORS,
    SEARCHER_DN,
    USERS,
    Mode,
    Slapd,
    group_dn,
    ldap_config,
    running_slapd,
)
from tests.support.ports import free_port


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with running_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


def make_auth(slapd: Slapd, folder: Path, mode: Mode = "starttls", **keys: Any) -> LdapAuth:
    return LdapAuth(LDAPConfig.model_validate(ldap_config(slapd, folder, mode, **keys)))


@pytest.fixture
def auth(slapd: Slapd, tmp_path: Path) -> Iterator[LdapAuth]:
    checker = make_auth(slapd, tmp_path)
    yield checker
    checker.close()


def verify(auth: LdapAuth, user: str, password: str) -> frozenset[str] | None:
    return asyncio.run(auth.verify(user, password))


def groups_of(user: str) -> frozenset[str]:
    return frozenset(group_dn(name) for name in USERS[user].groups)


# ---------------------------------------------------------------------------------------------
# Who gets in, with which groups
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("user", ["alice", "bob", "carol", "dave", "erin"])
def test_a_good_password_gives_the_users_groups(auth: LdapAuth, user: str) -> None:
    # memberOf's values, whole group DNs, as zot takes them; dave is in no group.
    assert verify(auth, user, USERS[user].password) == groups_of(user)


def test_a_wrong_password_or_an_unknown_user_fails(auth: LdapAuth) -> None:
    assert verify(auth, "alice", "wrong") is None
    assert verify(auth, "alice", USERS["bob"].password) is None
    assert verify(auth, "nobody", "alice-password") is None
    # The password is compared as its bytes (no SASLprep, as zot): the same letters decomposed are another password.
    assert verify(auth, "carol", "carol pa\u0308sswo\u0308rd") is None


def test_an_empty_password_fails_although_the_server_would_bind_it(auth: LdapAuth, slapd: Slapd) -> None:
    # The trap: this server (as many do) answers a bind with a DN and no password with success, as anonymous.
    whoami = subprocess.run(
        ["ldapwhoami", "-x", "-H", slapd.url, "-D", USERS["alice"].dn, "-w", ""], capture_output=True, text=True
    )
    assert whoami.returncode == 0 and whoami.stdout.strip() == "anonymous"
    assert verify(auth, "alice", "") is None
    assert verify(auth, "", "alice-password") is None


def test_the_user_name_cannot_change_the_filter(auth: LdapAuth) -> None:
    assert verify(auth, "*", "alice-password") is None
    assert verify(auth, "al*", "alice-password") is None
    assert verify(auth, "alice)(uid=*", "alice-password") is None
    assert verify(auth, "alice", "alice-password") == groups_of("alice")


def test_one_entry_must_match(slapd: Slapd, tmp_path: Path) -> None:
    subtree = make_auth(slapd, tmp_path)
    one_level = make_auth(slapd, tmp_path, subtreeSearch=False)
    try:
        # "twin" is in ou=people and in ou=contractors below it: two entries for a subtree search.
        assert verify(subtree, "twin", "twin-password") is None
        assert verify(one_level, "twin", "twin-password") == frozenset()
        # erin is one level down: a one-level search below ou=people does not see her.
        assert verify(one_level, "erin", USERS["erin"].password) is None
    finally:
        subtree.close()
        one_level.close()


@pytest.mark.parametrize("user_filter", ["(!(uid=bob))", "!(uid=bob)", "((!(uid=bob)))"])
def test_the_user_filter_as_zot_takes_it(slapd: Slapd, tmp_path: Path, user_filter: str) -> None:
    auth = make_auth(slapd, tmp_path, userFilter=user_filter)
    try:
        assert verify(auth, "bob", USERS["bob"].password) is None
        assert verify(auth, "alice", USERS["alice"].password) == groups_of("alice")
    finally:
        auth.close()


def test_without_user_group_attribute_there_are_no_groups(slapd: Slapd, tmp_path: Path) -> None:
    auth = make_auth(slapd, tmp_path, userGroupAttribute=None)
    try:
        assert verify(auth, "alice", USERS["alice"].password) == frozenset()
    finally:
        auth.close()


def test_without_a_credentials_file_the_search_is_anonymous(slapd: Slapd, tmp_path: Path) -> None:
    # This server lets anonymous read ou=contractors only, and hides ou=people from it (noSuchObject):
    # the search cannot be made, which is the server's (or the config's) problem, not the password's.
    hidden = make_auth(slapd, tmp_path, credentialsFile=None)
    visible = make_auth(slapd, tmp_path, credentialsFile=None, baseDN=CONTRACTORS)
    try:
        with pytest.raises(LdapUnavailable):
            verify(hidden, "alice", USERS["alice"].password)
        assert verify(visible, "erin", USERS["erin"].password) == groups_of("erin")
        assert verify(visible, "erin", "wrong") is None
    finally:
        hidden.close()
        visible.close()


def test_a_service_account_that_cannot_bind_is_unavailable_not_a_wrong_password(slapd: Slapd, tmp_path: Path) -> None:
    credentials = tmp_path / "bad-credentials.json"
    credentials.write_text(json.dumps({"bindDN": SEARCHER_DN, "bindPassword": "not-it"}))
    auth = make_auth(slapd, tmp_path, credentialsFile=str(credentials))
    try:
        with pytest.raises(LdapUnavailable) as caught:
            verify(auth, "alice", USERS["alice"].password)
        assert caught.value.status == 503 and caught.value.code == "UNAVAILABLE"
        assert caught.value.headers["Retry-After"].isdigit()
    finally:
        auth.close()


def test_a_base_dn_that_does_not_exist_is_unavailable(slapd: Slapd, tmp_path: Path) -> None:
    auth = make_auth(slapd, tmp_path, baseDN="ou=nowhere,dc=zot,dc=test")
    try:
        with pytest.raises(LdapUnavailable):
            verify(auth, "alice", USERS["alice"].password)
    finally:
        auth.close()


# ---------------------------------------------------------------------------------------------
# TLS: StartTLS, LDAPS and plain, as zot derives them from insecure and startTLS
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["starttls", "ldaps", "plain"])
def test_each_connection_mode(slapd: Slapd, tmp_path: Path, mode: Mode) -> None:
    auth = make_auth(slapd, tmp_path, mode)
    try:
        assert verify(auth, "bob", USERS["bob"].password) == groups_of("bob")
    finally:
        auth.close()


def test_start_tls_is_used_and_the_certificate_checked(slapd: Slapd, tmp_path: Path) -> None:
    auth = make_auth(slapd, tmp_path, "starttls")
    try:
        assert verify(auth, "carol", USERS["carol"].password) == groups_of("carol")
    finally:
        auth.close()
    # slapd logged the StartTLS extended operation (its OID) on a connection of ours.
    assert "EXT oid=1.3.6.1.4.1.1466.20037" in slapd.log.read_text(errors="replace")
    other_ca = make_certs(tmp_path / "other", ["127.0.0.1"], ca_name="another CA").ca
    for mode in ("starttls", "ldaps"):
        strange = make_auth(slapd, tmp_path, mode, caCert=str(other_ca))
        try:
            with pytest.raises(LdapUnavailable):  # a server this CA did not certify: no password sent
                verify(strange, "carol", USERS["carol"].password)
        finally:
            strange.close()
    # skipVerify: the certificate is not checked (zot's skipVerify), so the other CA does not matter.
    unchecked = make_auth(slapd, tmp_path, "starttls", caCert=str(other_ca), skipVerify=True)
    try:
        assert verify(unchecked, "carol", USERS["carol"].password) == groups_of("carol")
    finally:
        unchecked.close()


def test_the_certificate_must_name_the_address(tmp_path: Path) -> None:
    # A certificate of the right CA for "localhost" only: 127.0.0.1 is not a name in it.
    with running_slapd(tmp_path / "slapd", cert_hosts=("localhost",)) as own:
        for mode in ("starttls", "ldaps"):
            auth = make_auth(own, tmp_path, mode)
            try:
                with pytest.raises(LdapUnavailable):
                    verify(auth, "alice", USERS["alice"].password)
            finally:
                auth.close()
            named = make_auth(own, tmp_path, mode, address="localhost")
            try:
                assert verify(named, "alice", USERS["alice"].password) == groups_of("alice")
            finally:
                named.close()


def test_a_server_without_tls_on_its_ldaps_port_is_unavailable(slapd: Slapd, tmp_path: Path) -> None:
    # LDAPS (zot's default) to the plain port: the handshake fails; nothing falls back to plain LDAP.
    auth = make_auth(slapd, tmp_path, "ldaps", port=slapd.port)
    try:
        with pytest.raises(LdapUnavailable):
            verify(auth, "alice", USERS["alice"].password)
    finally:
        auth.close()


# ---------------------------------------------------------------------------------------------
# A server that is down or silent; the cache
# ---------------------------------------------------------------------------------------------


def test_a_stopped_server_is_unavailable_at_once_and_the_cache_still_answers(tmp_path: Path) -> None:
    with running_slapd(tmp_path / "slapd") as own:
        auth = make_auth(own, tmp_path)
        try:
            assert verify(auth, "alice", USERS["alice"].password) == groups_of("alice")
            assert verify(auth, "bob", "wrong") is None
            own.stop()
            assert not own.running()
            # Served from the cache (60 s), groups included: slapd is gone.
            assert verify(auth, "alice", USERS["alice"].password) == groups_of("alice")
            started = time.monotonic()
            with pytest.raises(LdapUnavailable) as caught:
                verify(auth, "bob", USERS["bob"].password)
            assert time.monotonic() - started < CONNECT_TIMEOUT + 5  # loosely: refused, not waited for
            assert caught.value.headers["Retry-After"]
            # A failure is not remembered: the same wrong password asks the server again.
            with pytest.raises(LdapUnavailable):
                verify(auth, "bob", "wrong")
        finally:
            auth.close()


def test_a_server_that_never_answers_fails_within_the_timeouts(
    slapd: Slapd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A socket that accepts connections (the kernel's backlog) and never says a word.
    import zot_registry.authn.ldap as ldap_auth

    monkeypatch.setattr(ldap_auth, "TIMEOUT", 1)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        for mode in ("starttls", "ldaps", "plain"):
            auth = make_auth(slapd, tmp_path, mode, port=port)
            try:
                started = time.monotonic()
                with pytest.raises(LdapUnavailable):
                    verify(auth, "alice", USERS["alice"].password)
                assert time.monotonic() - started < 10  # loosely: not a hang
            finally:
                auth.close()


def test_nothing_listening_is_unavailable(slapd: Slapd, tmp_path: Path) -> None:
    auth = make_auth(slapd, tmp_path, port=free_port())
    try:
        with pytest.raises(LdapUnavailable):
            verify(auth, "alice", USERS["alice"].password)
    finally:
        auth.close()


# ---------------------------------------------------------------------------------------------
# Shared checks and the bound on waiting ones
# ---------------------------------------------------------------------------------------------


def test_identical_checks_share_one_and_others_wait_within_the_bound(slapd: Slapd, tmp_path: Path) -> None:
    auth = LdapAuth(LDAPConfig.model_validate(ldap_config(slapd, tmp_path)), threads=1, max_pending=1)

    async def main() -> list[Any]:
        same = [auth.verify("alice", USERS["alice"].password) for _ in range(20)]
        # The 20 share the one pending check; a different one finds the bound reached: 429.
        return await asyncio.gather(*same, auth.verify("bob", USERS["bob"].password), return_exceptions=True)

    try:
        results = asyncio.run(main())
        assert results[:20] == [groups_of("alice")] * 20
        refused = results[20]
        assert isinstance(refused, TooManyRequests) and refused.headers["Retry-After"] == "1"
        assert verify(auth, "bob", USERS["bob"].password) == groups_of("bob")  # once the first is done
    finally:
        auth.close()


def test_close_and_use_again(auth: LdapAuth) -> None:
    assert verify(auth, "dave", USERS["dave"].password) == frozenset()
    auth.close()
    auth.close()  # twice is fine
    assert verify(auth, "erin", USERS["erin"].password) == groups_of("erin")
