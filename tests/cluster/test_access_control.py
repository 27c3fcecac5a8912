"""zot's http.accessControl in a 3-member cluster (TLS, htpasswd and client certificates, storage
local to each member): the route matrix of tests/support/access_matrix.py, a certificate identity
included, through a repository's owner and through a member that forwards to it, the catalog
gathered across members filtered for the caller, and the order: the receiving member authorizes
before it forwards (a denied request never reaches the owner), and the owner decides what only it
can know (whether a manifest PUT updates a tag). The trust model of certificate identities: a
member vouches for its client's certificate identity to the owner (authn/current.py); a client
cannot, with or without a certificate of its own, and a certificate of another CA gets no further
than the handshake."""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator

import httpx
import pytest
from zot_registry.certs import make_ca

from tests.support import access_matrix as matrix
from tests.support.certs import ClientCert, make_user_cert
from tests.support.cluster import PASSWORD, USER, ClusterUnderTest, start_cluster
from tests.support.images import MANIFEST, make_image, push_image, sha256

VIA = 0  # the member every user talks to
IDENTITY_HEADER = "X-Zot-Cluster-Identity"
# The users' client certificates: their CA is not the cluster's (preflight refuses that).
USERS_CA = make_ca("users CA")
CERTS: dict[str, ClientCert] = {}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterUnderTest]:
    folder = tmp_path_factory.mktemp("guarded")
    htpasswd = matrix.write_users(folder, {USER: PASSWORD})
    (folder / "users-ca.crt").write_bytes(USERS_CA.cert_pem)
    CERTS[matrix.CERTIFIED] = make_user_cert(folder / "users", USERS_CA, matrix.CERTIFIED)

    def configure(config: dict[str, object]) -> None:
        http = config["http"]
        assert isinstance(http, dict)
        http["auth"]["htpasswd"]["path"] = str(htpasswd)
        http["tls"]["cacert"] = str(folder / "users-ca.crt")
        http["accessControl"] = matrix.ACCESS_CONTROL
        http["realm"] = "guarded"

    cluster = start_cluster(folder, configure=configure)
    yield cluster
    cluster.stop()


def client(cluster: ClusterUnderTest, member: int, who: str, cert: ClientCert | None = None) -> httpx.Client:
    """As `who`: Basic credentials of a password user, the client certificate of the certificate
    identity (or `cert`), nothing for anonymous."""
    assert cluster.ca is not None
    verify = ssl.create_default_context(cafile=str(cluster.ca))
    cert = cert or CERTS.get(who)
    if cert is not None:
        verify.load_cert_chain(str(cert.cert), str(cert.key))
    auth = matrix.credentials(who) if who in matrix.USERS else None
    return httpx.Client(base_url=cluster.members[member].url, verify=verify, auth=auth, timeout=30)


@pytest.fixture(scope="module")
def admin(guarded: ClusterUnderTest) -> Iterator[httpx.Client]:
    # Through another member than the users': the admin's preparations are forwarded too.
    with client(guarded, 1, "admin") as made:
        yield made


@pytest.mark.parametrize("route_to", ["owner", "non-owner"])
@pytest.mark.parametrize("area", matrix.AREAS)
@pytest.mark.parametrize("who", matrix.WITH_CERTIFICATES)
def test_every_route_through_the_owner_and_through_another_member(
    guarded: ClusterUnderTest, admin: httpx.Client, who: str, area: str, route_to: str
) -> None:
    prefix = f"{area}/{route_to}-{who}"
    repo = guarded.repo_owned_by(VIA, prefix) if route_to == "owner" else guarded.repo_not_owned_by(VIA, prefix)
    # The mount's source on another member than the repository's owner: the owner fetches the blob
    # from the source's owner, with the user's credentials, and that member checks read there.
    source = guarded.repo_not_owned_by(guarded.owner(repo), f"{prefix}-src")
    prepared = matrix.prepare(admin, repo, source)
    with client(guarded, VIA, who) as user:
        assert matrix.run(user, admin, prepared, who) == matrix.expected(who, area)


def test_the_catalog_gathered_across_members_is_filtered(guarded: ClusterUnderTest, admin: httpx.Client) -> None:
    repos = [f"{area}/listed-{i}" for area in matrix.AREAS for i in range(6)]
    assert {guarded.owner(repo) for repo in repos} == {0, 1, 2}
    for repo in repos:
        assert push_image(admin, repo, make_image(repo, (64,)), tag="v1").status_code == 201
    everything = admin.get("/v2/_catalog").json()["repositories"]
    assert set(repos) <= set(everything)
    for member in range(3):
        for who in matrix.WITH_CERTIFICATES:
            with client(guarded, member, who) as user:
                listed = user.get("/v2/_catalog")
                assert listed.status_code == 200, listed.text
                wanted = [repo for repo in everything if matrix.may_list(who, repo)]
                assert listed.json()["repositories"] == wanted, (member, who)


def _count(metrics_text: str, method: str, route: str, status: int) -> float:
    found = re.search(
        rf'^zot_http_requests_total\{{method="{method}",route="{route}",status="{status}"\}} (\S+)$',
        metrics_text,
        re.MULTILINE,
    )
    return float(found[1]) if found else 0.0


def test_the_receiving_member_denies_before_forwarding_and_the_owner_decides_updates(
    guarded: ClusterUnderTest, admin: httpx.Client
) -> None:
    repo = guarded.repo_not_owned_by(VIA, "pub/order")
    owner = guarded.owner(repo)
    with client(guarded, owner, "admin") as at_owner:

        def owner_count(method: str, route: str, status: int) -> float:
            return _count(at_owner.get("/metrics").text, method, route, status)

        assert push_image(admin, repo, make_image("order-v1", (64,)), tag="v1").status_code == 201
        moved = make_image("order-v2", (64,))
        for blob in [moved.config, *moved.layers]:
            admin.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(blob)}, content=blob)
        put_403, get_401 = owner_count("PUT", "manifest", 403), owner_count("GET", "tags", 401)
        # reader may not write at all, and anonymous may not read private/: the member they talk to
        # answers, the owner never sees the request.
        with client(guarded, VIA, "reader") as reader:
            denied = reader.put(f"/v2/{repo}/manifests/v2", content=moved.manifest, headers=MANIFEST)
            assert denied.status_code == 403
        with client(guarded, VIA, "anonymous") as anonymous:
            private = next(f"private/order-{i}" for i in range(1000) if guarded.owner(f"private/order-{i}") == owner)
            assert anonymous.get(f"/v2/{private}/tags/list").status_code == 401
        assert owner_count("PUT", "manifest", 403) == put_403
        assert owner_count("GET", "tags", 401) == get_401
        # writer may create, not update: the member it talks to cannot tell which a PUT of v1 is, so it
        # forwards; the owner, which has the tag, refuses the update.
        with client(guarded, VIA, "writer") as writer:
            refused = writer.put(f"/v2/{repo}/manifests/v1", content=moved.manifest, headers=MANIFEST)
            assert refused.status_code == 403 and refused.json()["errors"][0]["code"] == "DENIED"
            assert owner_count("PUT", "manifest", 403) == put_403 + 1
            assert writer.put(f"/v2/{repo}/manifests/v2", content=moved.manifest, headers=MANIFEST).status_code == 201
        tags = admin.get(f"/v2/{repo}/tags/list").json()["tags"]
        assert sorted(tags) == ["v1", "v2"]
        assert admin.get(f"/v2/{repo}/manifests/v1", headers={"Accept": MANIFEST["Content-Type"]}).content != (
            moved.manifest
        )


def test_a_mount_across_members_needs_read_on_the_source(guarded: ClusterUnderTest, admin: httpx.Client) -> None:
    source = guarded.repo_not_owned_by(VIA, "private/mount-src")
    target = guarded.repo_not_owned_by(guarded.owner(source), "pub/mount-dst")
    blob = b"across members " * 64
    assert admin.post(f"/v2/{source}/blobs/uploads/", params={"digest": sha256(blob)}, content=blob).status_code == 201
    params = {"mount": sha256(blob), "from": source}
    with client(guarded, VIA, "maint") as maint:
        # maint may create in pub/ but not read private/: the source's owner refuses the copy, and the
        # target's owner answers with an upload session.
        assert maint.post(f"/v2/{target}/blobs/uploads/", params=params).status_code == 202
        assert maint.head(f"/v2/{target}/blobs/{sha256(blob)}").status_code == 404
    with client(guarded, VIA, "writer") as writer:
        assert writer.post(f"/v2/{target}/blobs/uploads/", params=params).status_code == 201
        assert writer.get(f"/v2/{target}/blobs/{sha256(blob)}").content == blob


# ---------------------------------------------------------------------------------------------
# Who may vouch for an identity
# ---------------------------------------------------------------------------------------------


def _private_image(guarded: ClusterUnderTest, admin: httpx.Client, label: str) -> tuple[str, str]:
    repo = guarded.repo_not_owned_by(VIA, f"private/{label}")
    image = make_image(repo, (64,))
    assert push_image(admin, repo, image, tag="v1").status_code == 201
    return repo, image.digest


def test_an_identity_header_from_a_client_is_ignored_by_every_member(
    guarded: ClusterUnderTest, admin: httpx.Client
) -> None:
    repo, digest = _private_image(guarded, admin, "forged")
    owner = guarded.owner(repo)
    for member in (VIA, owner):  # through a member that forwards, and at the owner itself
        with client(guarded, member, "anonymous") as anonymous:
            answer = anonymous.get(f"/v2/{repo}/tags/list", headers={IDENTITY_HEADER: "admin"})
            assert answer.status_code == 401, (member, answer.text)
        with client(guarded, member, "reader") as reader:
            answer = reader.get(f"/v2/{repo}/tags/list", headers={IDENTITY_HEADER: "admin"})
            assert answer.status_code == 403, (member, answer.text)
        with client(guarded, member, matrix.CERTIFIED) as certified:
            # certified reads private/ (auditors) and may not delete it, whatever it claims to be.
            assert certified.get(f"/v2/{repo}/tags/list").status_code == 200
            refused = certified.delete(f"/v2/{repo}/manifests/{digest}", headers={IDENTITY_HEADER: "admin"})
            assert refused.status_code == 403, (member, refused.text)
    assert admin.get(f"/v2/{repo}/tags/list").json()["tags"] == ["v1"]


def test_a_member_forwards_no_identity_header_of_its_client(guarded: ClusterUnderTest, admin: httpx.Client) -> None:
    # writer may create tags, not move them: the member it talks to cannot tell which a PUT is, so
    # it forwards, and the owner decides. Were the client's header forwarded, the owner would take
    # it from the member as vouched for, and let "admin" move the tag.
    repo = guarded.repo_not_owned_by(VIA, "pub/vouch")
    assert push_image(admin, repo, make_image("vouch-v1", (64,)), tag="v1").status_code == 201
    moved = make_image("vouch-v2", (64,))
    for blob in [moved.config, *moved.layers]:
        admin.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(blob)}, content=blob)
    with client(guarded, VIA, "writer") as writer:
        headers = {**MANIFEST, IDENTITY_HEADER: "admin"}
        refused = writer.put(f"/v2/{repo}/manifests/v1", content=moved.manifest, headers=headers)
        assert refused.status_code == 403, refused.text


def test_a_certificate_named_like_a_member_is_a_user_not_a_member(
    guarded: ClusterUnderTest, admin: httpx.Client, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Issued by the users' CA with a member's name: the handshake takes it, but only a certificate
    # of the cluster CA may vouch, so it is the user "127.0.0.1", who has no policy.
    folder = tmp_path_factory.mktemp("lookalike")
    lookalike = make_user_cert(folder, USERS_CA, "lookalike", common_name="127.0.0.1")
    repo, _ = _private_image(guarded, admin, "lookalike")
    with client(guarded, guarded.owner(repo), "anonymous", cert=lookalike) as member_like:
        answer = member_like.get(f"/v2/{repo}/tags/list", headers={IDENTITY_HEADER: "admin"})
        assert answer.status_code == 403, answer.text


def test_a_certificate_of_another_ca_gets_no_further_than_the_handshake(
    guarded: ClusterUnderTest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("rogue")
    rogue = make_user_cert(folder, make_ca("zot cluster CA"), "rogue", common_name="127.0.0.1")
    for member in (VIA, 1):
        with client(guarded, member, "anonymous", cert=rogue) as intruder, pytest.raises(httpx.TransportError):
            intruder.get("/v2/_catalog", headers={IDENTITY_HEADER: "admin"})
