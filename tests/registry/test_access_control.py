"""zot's http.accessControl on a running `zot-registry serve` with htpasswd users: every route for
every kind of user (tests/support/access_matrix.py), the catalog filtered, /v2/ and its Docker
workaround, credentials that are optional only where an anonymous policy exists, /metrics, mounts
across repositories, and zot's anonymous-only example config served as published."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import access_matrix as matrix
from tests.support.images import make_image, push_image, sha256
from tests.support.paths import ZOT_EXAMPLES
from tests.support.ports import free_port
from tests.support.registry import RegistryProcess, registry_config


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    folder = tmp_path_factory.mktemp("access")
    htpasswd = matrix.write_users(folder)
    config = registry_config(
        folder / "root",
        free_port(),
        auth={"htpasswd": {"path": str(htpasswd)}},
        realm="guarded",
        accessControl=matrix.ACCESS_CONTROL,
    )
    registry = RegistryProcess(folder / "config.json", config, folder / "registry.log")
    registry.start()
    yield registry
    registry.stop()


def client(registry: RegistryProcess, who: str) -> httpx.Client:
    return httpx.Client(base_url=registry.url, auth=matrix.credentials(who), timeout=30)


@pytest.fixture(scope="module")
def admin(guarded: RegistryProcess) -> Iterator[httpx.Client]:
    with client(guarded, "admin") as made:
        yield made


@pytest.mark.parametrize("area", matrix.AREAS)
@pytest.mark.parametrize("who", matrix.IDENTITIES)
def test_every_route_for_every_user(guarded: RegistryProcess, admin: httpx.Client, who: str, area: str) -> None:
    prepared = matrix.prepare(admin, f"{area}/app-{who}", f"{area}/src-{who}")
    with client(guarded, who) as user:
        assert matrix.run(user, admin, prepared, who) == matrix.expected(who, area)


def test_the_catalog_lists_what_each_user_may_read(guarded: RegistryProcess, admin: httpx.Client) -> None:
    for repo in ("pub/one", "pub/two/deep", "private/one", "private/two/deep"):
        assert push_image(admin, repo, make_image(repo, (64,)), tag="v1").status_code == 201
    everything = admin.get("/v2/_catalog").json()["repositories"]
    assert {"pub/one", "pub/two/deep", "private/one", "private/two/deep"} <= set(everything)
    for who in matrix.IDENTITIES:
        with client(guarded, who) as user:
            listed = user.get("/v2/_catalog")
            assert listed.status_code == 200
            assert listed.json()["repositories"] == [r for r in everything if matrix.may_list(who, r)], who
    # Pagination pages through the filtered list.
    with client(guarded, "anonymous") as anonymous:
        visible = [r for r in everything if matrix.may_list("anonymous", r)]
        page = anonymous.get("/v2/_catalog", params={"n": 1})
        assert page.json()["repositories"] == visible[:1]
        following = anonymous.get("/v2/_catalog", params={"n": 100, "last": visible[0]}).json()["repositories"]
        assert following == visible[1:]


def test_the_base_route_is_open_to_every_login_and_to_anonymous(guarded: RegistryProcess) -> None:
    for who in matrix.IDENTITIES:
        with client(guarded, who) as user:
            assert user.get("/v2/").status_code == 200, who
    with httpx.Client(base_url=guarded.url) as anonymous:
        # zot's Docker workaround: with anonymous and authenticated policies side by side, Docker's
        # anonymous /v2/ gets the challenge, so that it sends the credentials it has.
        for agent in ("docker/27.0.1 go/go1.22 os/linux", "Docker-Client/27.0.1 (linux)"):
            docker = anonymous.get("/v2/", headers={"User-Agent": agent})
            assert docker.status_code == 401 and docker.headers["WWW-Authenticate"] == 'Basic realm="guarded"'
        assert anonymous.get("/v2/", headers={"User-Agent": "containerd/1.7"}).status_code == 200


def test_credentials_are_optional_but_wrong_ones_are_refused(guarded: RegistryProcess, admin: httpx.Client) -> None:
    assert push_image(admin, "pub/open", make_image("open", (64,)), tag="v1").status_code == 201
    with httpx.Client(base_url=guarded.url) as anonymous:
        assert anonymous.get("/v2/pub/open/tags/list").status_code == 200
        # Basic with an empty user and password is no credentials (zot's isAuthorizationHeaderEmpty).
        assert anonymous.get("/v2/pub/open/tags/list", headers={"Authorization": "Basic Og=="}).status_code == 200
        for bad in (("reader", "wrong"), ("stranger", "reader-pw")):
            refused = anonymous.get("/v2/pub/open/tags/list", auth=bad)
            assert refused.status_code == 401 and refused.json()["errors"][0]["code"] == "UNAUTHORIZED"
            assert refused.headers["WWW-Authenticate"] == 'Basic realm="guarded"'
        assert anonymous.get("/v2/pub/open/tags/list", headers={"Authorization": "Basic !!!"}).status_code == 401
        twice = [("Authorization", "Basic Og=="), ("Authorization", "Basic Og==")]
        assert anonymous.get("/v2/pub/open/tags/list", headers=twice).status_code == 401
        # A wrong path without credentials is still answered by the route (anonymous may be in).
        assert anonymous.get("/v2/pub/open/nothing").status_code == 404


def test_an_authenticated_user_does_not_get_the_anonymous_policy(guarded: RegistryProcess, admin: httpx.Client) -> None:
    assert push_image(admin, "pub/anon-only", make_image("anon", (64,)), tag="v1").status_code == 201
    with httpx.Client(base_url=guarded.url) as anonymous:
        assert anonymous.get("/v2/pub/anon-only/manifests/v1").status_code == 200
    with client(guarded, "nobody") as nobody:
        denied = nobody.get("/v2/pub/anon-only/manifests/v1")
        assert denied.status_code == 403
        assert denied.json()["errors"][0] == {
            "code": "DENIED",
            "message": "requested access to the resource is denied",
            "detail": {"repository": "pub/anon-only", "action": "read"},
        }


def test_a_mount_needs_read_on_its_source(guarded: RegistryProcess, admin: httpx.Client) -> None:
    blob = b"mount me " * 100
    assert admin.post("/v2/private/origin/blobs/uploads/", params={"digest": sha256(blob)}, content=blob).status_code
    params = {"mount": sha256(blob), "from": "private/origin"}
    with client(guarded, "writer") as writer:
        # writer reads private/: mounted.
        assert writer.post("/v2/pub/w-target/blobs/uploads/", params=params).status_code == 201
        assert writer.get(f"/v2/pub/w-target/blobs/{sha256(blob)}").content == blob
    with client(guarded, "maint") as maint:
        # maint creates in pub/ but may not read private/: not mounted, an upload session instead (zot's
        # canMount), and nothing of private/ shows through pub/.
        started = maint.post("/v2/pub/m-target/blobs/uploads/", params=params)
        assert started.status_code == 202 and "/blobs/uploads/" in started.headers["Location"]
        assert maint.head(f"/v2/pub/m-target/blobs/{sha256(blob)}").status_code == 404
        # Without `from`, the blob is not looked for in other repositories (zot would mount it from one
        # the user may read; here the client uploads it).
        assert maint.post("/v2/pub/m-target/blobs/uploads/", params={"mount": sha256(blob)}).status_code == 202
    with client(guarded, "reader") as reader:
        assert reader.post("/v2/pub/r-target/blobs/uploads/", params=params).status_code == 403


def test_metrics_follow_access_control(guarded: RegistryProcess) -> None:
    with client(guarded, "admin") as admin_client:
        assert admin_client.get("/metrics").status_code == 200
        assert "zot_http_requests_total" in admin_client.get("/metrics").text
    with client(guarded, "reader") as reader:
        assert reader.get("/metrics").status_code == 403
    with httpx.Client(base_url=guarded.url) as anonymous:
        closed = anonymous.get("/metrics")
        assert closed.status_code == 401 and closed.headers["WWW-Authenticate"] == 'Basic realm="guarded"'
        assert anonymous.get("/metrics", auth=("admin", "wrong")).status_code == 401
        # The probes stay open.
        for path in ("/livez", "/readyz", "/startupz"):
            assert anonymous.get(path).status_code == 200


def test_zots_anonymous_only_example_as_published(tmp_path: Path) -> None:
    """examples/config-anonymous-authz.json: no logins at all, anonymous policies by pattern."""
    config = json.loads((ZOT_EXAMPLES / "config-anonymous-authz.json").read_text())
    config["storage"]["rootDirectory"] = str(tmp_path / "root")
    config["http"]["port"] = str(free_port())
    config["log"] = {"level": "warn"}
    registry = RegistryProcess(tmp_path / "config.json", config, tmp_path / "registry.log").start()
    try:
        with httpx.Client(base_url=registry.url, timeout=30) as anonymous:
            assert push_image(anonymous, "tmp/app", make_image("tmp", (64,)), tag="v1").status_code == 201
            moved = push_image(anonymous, "tmp/app", make_image("tmp2", (64,)), tag="v1")  # update: tmp/**
            assert moved.status_code == 201
            assert push_image(anonymous, "app", make_image("app", (64,)), tag="v1").status_code == 201  # create: **
            again = push_image(anonymous, "app", make_image("app2", (64,)), tag="v1")  # update: not on **
            assert again.status_code == 401 and again.headers["WWW-Authenticate"] == 'Basic realm="zot"'
            refused = anonymous.post("/v2/infra/db/blobs/uploads/")  # infra/**: read only
            assert refused.status_code == 401
            assert anonymous.get("/v2/app/manifests/v1").status_code == 200
            assert anonymous.delete(f"/v2/app/manifests/{make_image('app', (64,)).digest}").status_code == 401
            # Credentials are not asked for, and not read: there are no logins.
            assert anonymous.get("/v2/app/tags/list", auth=("who", "ever")).status_code == 200
            assert anonymous.get("/v2/_catalog").json()["repositories"] == ["app", "tmp/app"]
    finally:
        registry.stop()


def test_a_denial_waits_fail_delay_as_a_failed_login_does(tmp_path: Path) -> None:
    htpasswd = matrix.write_users(tmp_path)
    config = registry_config(
        tmp_path / "root",
        free_port(),
        auth={"htpasswd": {"path": str(htpasswd)}, "failDelay": 1},
        accessControl=matrix.ACCESS_CONTROL,
    )
    registry = RegistryProcess(tmp_path / "config.json", config, tmp_path / "registry.log").start()
    try:
        with client(registry, "reader") as reader, httpx.Client(base_url=registry.url) as anonymous:
            assert reader.get("/v2/pub/x/tags/list").status_code == 404  # allowed: answered at once
            for user, expected_status in ((reader, 403), (anonymous, 401)):
                started = time.monotonic()
                assert user.post("/v2/pub/x/blobs/uploads/").status_code == expected_status
                assert time.monotonic() - started >= 1.0
    finally:
        registry.stop()
