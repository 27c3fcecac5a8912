"""The adversarial HTTP tests through a 3-member cluster: which member owns the repositories, clients
and credentials for a member, the repository the cases are about, and a case sent as written."""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass, field

import httpx

from tests.support.checks import assert_sane_response
from tests.support.cluster import ClusterUnderTest
from tests.support.images import sha256
from tests.support.rawhttp import RawAnswer, exchange, request_bytes

IDLE_TIMEOUT = 3
LINGER = 2
OWNER, PROXY = 1, 0  # the repositories of these modules belong to member 1; member 0 proxies to it


def authorization(cluster: ClusterUnderTest) -> str:
    assert cluster.auth is not None
    return "Basic " + base64.b64encode(":".join(cluster.auth).encode()).decode()


def client_for(cluster: ClusterUnderTest, member: int, tls: ssl.SSLContext) -> httpx.Client:
    return httpx.Client(base_url=cluster.members[member].url, verify=tls, auth=cluster.auth, timeout=30)


@dataclass
class Repo:
    name: str
    blob: bytes
    image_blobs: list[bytes]
    manifest: bytes


@dataclass
class Case:
    """A request as written; send fills {repo}, {blob}, {digest_hello} and {session} in its target."""

    name: str
    method: str
    target: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    # A new upload session first: its Location replaces {session} in the target.
    session: bool = False

    def build(self, repo: Repo, session_path: str) -> tuple[str, list[tuple[str, str]], bytes]:
        path = self.target.format(
            repo=repo.name, blob=sha256(repo.blob), session=session_path, digest_hello=sha256(b"hello")
        )
        return path, list(self.headers), self.body


def send(cluster: ClusterUnderTest, member: int, tls: ssl.SSLContext, repo: Repo, case: Case) -> RawAnswer:
    session_path = ""
    if case.session:
        with client_for(cluster, OWNER, tls) as c:
            session_path = c.post(f"/v2/{repo.name}/blobs/uploads/").headers["Location"]
    target, headers, body = case.build(repo, session_path)
    if case.name == "manifest without Content-Type":
        body, headers = repo.manifest, [("Content-Length", str(len(repo.manifest)))]
    if not any(key == "Authorization" for key, _ in headers):
        headers.append(("Authorization", authorization(cluster)))
    headers = [(key, value) for key, value in headers if value]
    headers.append(("Connection", "close"))
    node = cluster.members[member]
    answer = exchange(node.host, node.port, request_bytes(case.method, target, headers, body), tls=tls, timeout=60)
    shown = target[:200] if target.startswith("/") else "/"
    assert_sane_response(answer.as_httpx(case.method, f"{node.url}{shown}"), f"{case.name} via {member}")
    return answer
