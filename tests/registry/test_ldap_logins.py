"""LDAP logins (zot's http.auth.ldap) on a running `zot-registry serve` and in a 3-member cluster,
against a real slapd (tests/support/ldap.py): a bind, a wrong password, an unknown user, policies
by LDAP group (memberOf) and by accessControl group, htpasswd tried first, and a directory that is
down (503 at once, no hang; logins already checked keep working for the cache's minute)."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cluster import ClusterUnderTest, start_cluster
from tests.support.images import make_image, push_image
from tests.support.ldap import USERS, Mode, Slapd, group_dn, ldap_config, running_slapd
from tests.support.ports import free_port
from tests.support.registry import RegistryProcess, registry_config, write_htpasswd

# htpasswd knows "local", and an "alice" with another password than the directory's.
LOCAL = {"local": "local-password", "alice": "htpasswd-alice"}
ACCESS: dict[str, Any] = {
    "groups": {"release": {"users": ["bob"]}},
    "repositories": {
        "**": {
            "policies": [
                {"users": ["alice", "local"], "actions": ["read"]},
                {"groups": [group_dn("devs")], "actions": ["read", "create"]},
            ]
        },
        # bob is in the directory's writers group, and in accessControl's release group: both count.
        "releases/**": {"policies": [{"groups": ["release"], "actions": ["read", "create", "update"]}]},
    },
}


def password(user: str) -> tuple[str, str]:
    return user, USERS[user].password


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with running_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


def start_registry(folder: Path, slapd: Slapd, mode: Mode = "ldaps") -> RegistryProcess:
    folder.mkdir(parents=True, exist_ok=True)
    htpasswd = write_htpasswd(folder / "htpasswd", LOCAL)
    auth = {"htpasswd": {"path": str(htpasswd)}, "ldap": ldap_config(slapd, folder, mode)}
    config = registry_config(folder / "root", free_port(), auth=auth, accessControl=ACCESS)
    return RegistryProcess(folder / "config.json", config, folder / "registry.log", workers=1).start()


@pytest.fixture(scope="module")
def registry(slapd: Slapd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    with start_registry(tmp_path_factory.mktemp("ldap-registry"), slapd) as running:
        yield running


def client(registry: RegistryProcess, auth: tuple[str, str] | None) -> httpx.Client:
    return httpx.Client(base_url=registry.url, auth=auth, timeout=30)


def test_a_directory_user_logs_in_and_gets_its_policies(registry: RegistryProcess) -> None:
    with client(registry, password("alice")) as alice:
        assert alice.get("/v2/").status_code == 200
        assert alice.get("/v2/some/repo/tags/list").status_code == 404  # read: allowed, nothing there
        denied = alice.post("/v2/some/repo/blobs/uploads/")
        assert denied.status_code == 403 and denied.json()["errors"][0]["code"] == "DENIED"


@pytest.mark.parametrize(
    "credentials",
    [("alice", "wrong"), ("nobody-by-that-name", "x"), ("alice", ""), ("", "")],
    ids=["wrong password", "unknown user", "empty password", "empty user"],
)
def test_failed_logins_are_401_with_the_challenge(registry: RegistryProcess, credentials: tuple[str, str]) -> None:
    with client(registry, credentials) as user:
        answer = user.get("/v2/some/repo/tags/list")
        assert answer.status_code == 401, answer.text
        assert answer.headers["WWW-Authenticate"].startswith("Basic realm=")


def test_policies_by_directory_group_and_by_access_control_group(registry: RegistryProcess) -> None:
    with client(registry, password("carol")) as carol:  # devs, by memberOf
        assert push_image(carol, "team/app", make_image("carol-app", (64,)), tag="v1").status_code == 201
    with client(registry, password("erin")) as erin:  # devs too, found below ou=contractors
        assert erin.post("/v2/team/other/blobs/uploads/").status_code == 202
    with client(registry, password("dave")) as dave:  # in no group: logged in, allowed nothing
        assert dave.get("/v2/team/app/tags/list").status_code == 403
    with client(registry, password("bob")) as bob:  # release, by accessControl.groups
        assert push_image(bob, "releases/app", make_image("bob-release", (64,)), tag="v1").status_code == 201
        assert bob.get("/v2/team/app/tags/list").status_code == 403  # the writers group has no policy


def test_htpasswd_is_tried_first_then_the_directory(registry: RegistryProcess) -> None:
    with client(registry, ("local", LOCAL["local"])) as local:
        assert local.get("/v2/some/repo/tags/list").status_code == 404
    # alice's htpasswd password and her directory password both log her in, as in zot.
    for secret in (LOCAL["alice"], USERS["alice"].password):
        with client(registry, ("alice", secret)) as alice:
            assert alice.get("/v2/some/repo/tags/list").status_code == 404


def test_a_directory_that_is_down_is_a_503_at_once_and_checked_logins_stay(tmp_path: Path) -> None:
    with running_slapd(tmp_path / "slapd") as server:
        registry = start_registry(tmp_path / "registry", server, mode="starttls")
        try:
            with client(registry, password("alice")) as alice:
                assert alice.get("/v2/some/repo/tags/list").status_code == 404
            server.stop()
            started = time.monotonic()
            with client(registry, password("carol")) as carol:
                answer = carol.get("/v2/some/repo/tags/list")
            took = time.monotonic() - started
            assert answer.status_code == 503, answer.text
            assert answer.json()["errors"][0]["code"] == "UNAVAILABLE" and "Retry-After" in answer.headers
            assert took < 20, f"a login against a stopped directory took {took:.1f}s"  # bound: no hang
            with client(registry, password("alice")) as alice:  # remembered for a minute
                assert alice.get("/v2/some/repo/tags/list").status_code == 404
            with client(registry, ("local", LOCAL["local"])) as local:  # htpasswd needs no directory
                assert local.get("/v2/some/repo/tags/list").status_code == 404
        finally:
            registry.stop()


# ---------------------------------------------------------------------------------------------
# In a cluster: the receiving member and the owner both ask the directory
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(slapd: Slapd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterUnderTest]:
    folder = tmp_path_factory.mktemp("ldap-cluster")
    htpasswd = write_htpasswd(folder / "ldap-htpasswd", LOCAL)

    def configure(config: dict[str, Any]) -> None:
        config["http"]["auth"] = {"htpasswd": {"path": str(htpasswd)}, "ldap": ldap_config(slapd, folder)}
        config["http"]["accessControl"] = ACCESS

    made = start_cluster(folder, configure=configure)
    yield made
    made.stop()


def test_directory_logins_through_a_member_that_forwards(cluster: ClusterUnderTest) -> None:
    assert cluster.ca is not None
    verify = ssl.create_default_context(cafile=str(cluster.ca))
    repo = cluster.repo_not_owned_by(0, "team/forwarded")
    with httpx.Client(base_url=cluster.members[0].url, verify=verify, auth=password("carol"), timeout=30) as carol:
        assert push_image(carol, repo, make_image(repo, (64,)), tag="v1").status_code == 201
        assert carol.get(f"/v2/{repo}/tags/list").json()["tags"] == ["v1"]
    owner = cluster.owner(repo)
    with httpx.Client(base_url=cluster.members[owner].url, verify=verify, auth=password("dave"), timeout=30) as dave:
        assert dave.get(f"/v2/{repo}/tags/list").status_code == 403
    with httpx.Client(base_url=cluster.members[0].url, verify=verify, auth=("carol", "wrong"), timeout=30) as wrong:
        assert wrong.get(f"/v2/{repo}/tags/list").status_code == 401
