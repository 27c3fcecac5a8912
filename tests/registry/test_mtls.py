"""Client certificates (mTLS: zot's http.tls.cacert and http.auth.mtls) on a running
`zot-registry serve`: a certificate's identity under access control on every route, combined with
htpasswd as zot combines them (Basic credentials first, then the certificate, then anonymous), a
certificate of another CA refused at the handshake, each identity attribute, mTLS as the only login
method, and the cluster's identity header ignored from a client."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from zot_registry.certs import KeyPair, make_ca

from tests.support import access_matrix as matrix
from tests.support.certs import CertFiles, ClientCert, make_certs, make_user_cert
from tests.support.images import make_image, push_image
from tests.support.ports import free_port
from tests.support.registry import RegistryProcess, registry_config

IDENTITY_HEADER = "X-Zot-Cluster-Identity"


@dataclass
class Site:
    registry: RegistryProcess
    server: CertFiles
    users_ca: KeyPair
    folder: Path

    def client(self, cert: ClientCert | None = None, auth: tuple[str, str] | None = None) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.server.ca))
        if cert is not None:
            context.load_cert_chain(str(cert.cert), str(cert.key))
        return httpx.Client(base_url=self.registry.url, verify=context, auth=auth, timeout=30)

    def cert(self, name: str, common_name: str | None = None, sans: list[x509.GeneralName] | None = None) -> ClientCert:
        return make_user_cert(self.folder / "users", self.users_ca, name, common_name, sans)


def start_site(folder: Path, **http: Any) -> Site:
    server = make_certs(folder / "server", ["127.0.0.1"], ca_name="server CA")
    users_ca = make_ca("users CA")
    (folder / "users-ca.crt").write_bytes(users_ca.cert_pem)
    tls = {"cert": str(server.cert), "key": str(server.key), "cacert": str(folder / "users-ca.crt")}
    config = registry_config(folder / "root", free_port(), tls=tls, **http)
    registry = RegistryProcess(folder / "config.json", config, folder / "registry.log", workers=1)
    registry.start()
    return Site(registry, server, users_ca, folder)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("mtls")
    htpasswd = matrix.write_users(folder)
    made = start_site(
        folder, auth={"htpasswd": {"path": str(htpasswd)}}, realm="mtls", accessControl=matrix.ACCESS_CONTROL
    )
    yield made
    made.registry.stop()


@pytest.fixture(scope="module")
def admin(site: Site) -> Iterator[httpx.Client]:
    with site.client(auth=matrix.credentials("admin")) as made:
        yield made


@pytest.mark.parametrize("area", matrix.AREAS)
def test_a_certificate_identity_on_every_route(site: Site, admin: httpx.Client, area: str) -> None:
    repo, source = f"{area}/cert-{uuid.uuid4().hex[:8]}", f"{area}/cert-src-{uuid.uuid4().hex[:8]}"
    prepared = matrix.prepare(admin, repo, source)
    with site.client(site.cert(matrix.CERTIFIED)) as user:
        assert matrix.run(user, admin, prepared, matrix.CERTIFIED) == matrix.expected(matrix.CERTIFIED, area)


def test_password_users_and_anonymous_are_unchanged_beside_certificates(site: Site, admin: httpx.Client) -> None:
    repo = f"private/mixed-{uuid.uuid4().hex[:8]}"
    assert push_image(admin, repo, make_image(repo, (64,)), tag="v1").status_code == 201
    with site.client(auth=matrix.credentials("writer")) as writer:
        assert writer.get(f"/v2/{repo}/tags/list").status_code == 200
    with site.client() as anonymous:
        denied = anonymous.get(f"/v2/{repo}/tags/list")
        assert denied.status_code == 401 and denied.headers["WWW-Authenticate"] == 'Basic realm="mtls"'
        assert anonymous.get(f"/v2/{repo.replace('private/', 'pub/')}/tags/list").status_code == 404  # may read


def test_basic_credentials_come_before_the_certificate(site: Site) -> None:
    # zot's order: an Authorization header is a login attempt, whatever the connection presents.
    cert = site.cert(matrix.CERTIFIED)
    with site.client(cert, auth=matrix.credentials("reader")) as both:
        assert both.post("/v2/pub/order/blobs/uploads/").status_code == 403  # reader may not create
    with site.client(cert) as certified:
        assert certified.post("/v2/pub/order/blobs/uploads/").status_code == 202
    with site.client(cert, auth=("reader", "wrong")) as wrong:
        assert wrong.get("/v2/pub/order/tags/list").status_code == 401  # no fallback to the certificate


def test_a_certificate_of_another_ca_is_refused_at_the_handshake(site: Site) -> None:
    rogue = make_user_cert(site.folder / "rogue", make_ca("users CA"), matrix.CERTIFIED)  # same names, other key
    with site.client(rogue) as client, pytest.raises(httpx.TransportError):
        client.get("/v2/pub/x/tags/list")


def test_a_client_cannot_assert_an_identity_with_the_cluster_header(site: Site, admin: httpx.Client) -> None:
    repo = f"private/forged-{uuid.uuid4().hex[:8]}"
    assert push_image(admin, repo, make_image(repo, (64,)), tag="v1").status_code == 201
    with site.client() as anonymous:
        assert anonymous.get(f"/v2/{repo}/tags/list", headers={IDENTITY_HEADER: "admin"}).status_code == 401
    with site.client(site.cert(matrix.CERTIFIED)) as certified:
        # certified reads private/ but may not delete; naming admin in the header changes nothing.
        digest = admin.head(f"/v2/{repo}/manifests/v1", headers={"Accept": "*/*"}).headers["Docker-Content-Digest"]
        refused = certified.delete(f"/v2/{repo}/manifests/{digest}", headers={IDENTITY_HEADER: "admin"})
        assert refused.status_code == 403


# ---------------------------------------------------------------------------------------------
# Identity attributes, and mTLS as the only login method
# ---------------------------------------------------------------------------------------------

SPIFFE = x509.UniformResourceIdentifier("spiffe://example.org/workload/builder")
DNS = [x509.DNSName("first.example.org"), x509.DNSName("second.example.org")]
# The same kind of names, another identity.
INTRUDER = x509.UniformResourceIdentifier("spiffe://example.org/workload/intruder")
OTHER_DNS = [x509.DNSName("first.example.org"), x509.DNSName("third.example.org")]


@pytest.mark.parametrize(
    ("mtls", "sans", "identity", "other_sans"),
    [
        ({}, [], "cn-user", []),
        ({"identityAttributes": ["Subject"]}, [], "CN=cn-user", []),
        (
            {"identityAttributes": ["URI", "CommonName"], "uriSanPattern": "spiffe://example.org/workload/(.*)"},
            [SPIFFE],
            "builder",
            [INTRUDER],
        ),
        ({"identityAttributes": ["URI", "DNSName"], "dnsSanIndex": 1}, DNS, "second.example.org", OTHER_DNS),
    ],
    ids=["default", "subject", "spiffe", "dns"],
)
def test_each_identity_attribute_names_the_policy_user(
    tmp_path: Path,
    mtls: dict[str, Any],
    sans: list[x509.GeneralName],
    identity: str,
    other_sans: list[x509.GeneralName],
) -> None:
    access = {"repositories": {"**": {"policies": [{"users": [identity], "actions": ["read"]}]}}}
    site = start_site(tmp_path, auth={"mtls": mtls}, accessControl=access)
    try:
        with site.client(site.cert("named", "cn-user", sans)) as named:
            assert named.get("/v2/some/repo/tags/list").status_code == 404  # read allowed: not there
            assert named.post("/v2/some/repo/blobs/uploads/").status_code == 403  # create is not
        with site.client(site.cert("other", "somebody-else", other_sans)) as other:
            assert other.get("/v2/some/repo/tags/list").status_code == 403
    finally:
        site.registry.stop()


def test_a_certificate_without_the_attribute_is_a_401(tmp_path: Path) -> None:
    site = start_site(tmp_path, auth={"mtls": {"identityAttributes": ["Email"]}})
    try:
        with site.client(site.cert("no-email")) as client:
            answer = client.get("/v2/some/repo/tags/list")
            assert answer.status_code == 401
            assert "names no user" in answer.json()["errors"][0]["message"]
    finally:
        site.registry.stop()


def test_client_certificates_as_the_only_login_method(tmp_path: Path) -> None:
    site = start_site(tmp_path)
    try:
        with site.client() as without:
            answer = without.get("/v2/")
            assert answer.status_code == 401 and answer.json()["errors"][0]["code"] == "UNAUTHORIZED"
            # The probes stay open to the kubelet, which has no certificate.
            assert without.get("/livez").status_code == 200 and without.get("/readyz").status_code == 200
        with site.client(site.cert("pusher")) as pusher:
            assert push_image(pusher, "only/certs", make_image("only-certs", (64,)), tag="v1").status_code == 201
            assert pusher.get("/v2/only/certs/tags/list").json()["tags"] == ["v1"]
    finally:
        site.registry.stop()
