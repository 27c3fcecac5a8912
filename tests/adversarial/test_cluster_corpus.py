"""Adversarial HTTP through a 3-member cluster: every case gets the same answer (status and OCI
code) from the owner of the repository and through a member that proxies to it, and every answer
is sane; early errors on large bodies come back through the proxy; stalled uploads through one
member do not take the proxy's capacity from everyone else."""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.support.checks import assert_no_traceback, assert_sane_response
from tests.support.cluster import ClusterUnderTest, start_cluster
from tests.support.images import make_image, push_image, sha256
from tests.support.rawhttp import RawAnswer, connect, exchange, read_answer, request_bytes

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
HUGE = "9" * 5000
IDLE_TIMEOUT = 3
LINGER = 2
OWNER, PROXY = 1, 0  # the repositories of this module belong to member 1; member 0 proxies to it


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterUnderTest]:
    env = {"ZOT_HTTP_BODY_IDLE_TIMEOUT": str(IDLE_TIMEOUT), "ZOT_HTTP_LINGER_SECONDS": str(LINGER)}
    started = start_cluster(tmp_path_factory.mktemp("corpus"), env=env)
    yield started
    started.stop()
    for member in started.members:
        assert_no_traceback(member.log_path.read_text(), f"log of {member.hostport}")


@pytest.fixture(scope="module")
def tls(cluster: ClusterUnderTest) -> ssl.SSLContext:
    assert cluster.ca is not None
    return ssl.create_default_context(cafile=str(cluster.ca))


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


@pytest.fixture(scope="module")
def repo(cluster: ClusterUnderTest, tls: ssl.SSLContext) -> Repo:
    name = cluster.repo_owned_by(OWNER, "corpus/r")
    image = make_image(name)
    blob = b"0123456789" * 100
    with client_for(cluster, OWNER, tls) as c:
        assert push_image(c, name, image, tag="v1").status_code == 201
        assert c.post(f"/v2/{name}/blobs/uploads/", params={"digest": sha256(blob)}, content=blob).status_code == 201
    return Repo(name, blob, [image.config, *image.layers], image.manifest)


@dataclass
class Case:
    name: str
    method: str
    build: Callable[[Repo, str], tuple[str, list[tuple[str, str]], bytes]]  # target, headers, body
    # A new upload session first: its Location replaces {session} in the target.
    session: bool = False


def _case(
    name: str,
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    session: bool = False,
) -> Case:
    def build(repo: Repo, session_path: str) -> tuple[str, list[tuple[str, str]], bytes]:
        path = target.format(
            repo=repo.name, blob=sha256(repo.blob), session=session_path, digest_hello=sha256(b"hello")
        )
        return path, list(headers or []), body

    return Case(name, method, build, session)


BIG = b"x" * (5 << 20)
CASES = [
    # Framing.
    _case(
        "TE and CL",
        "POST",
        "/v2/{repo}/blobs/uploads/?digest={digest_hello}",
        [("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
        b"5\r\nhello\r\n0\r\n\r\n",
    ),
    _case(
        "TE and longer CL",
        "POST",
        "/v2/{repo}/blobs/uploads/?digest={digest_hello}",
        [("Content-Length", "40"), ("Transfer-Encoding", "chunked")],
        b"5\r\nhello\r\n0\r\n\r\n",
    ),
    _case("gzip, chunked", "POST", "/v2/{repo}/blobs/uploads/", [("Transfer-Encoding", "gzip, chunked")], b"0\r\n\r\n"),
    _case(
        "two TE headers",
        "POST",
        "/v2/{repo}/blobs/uploads/",
        [("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")],
        b"0\r\n\r\n",
    ),
    _case(
        "conflicting CL",
        "POST",
        "/v2/{repo}/blobs/uploads/",
        [("Content-Length", "0"), ("Content-Length", "5")],
        b"hello",
    ),
    _case(
        "equal CLs",
        "POST",
        "/v2/{repo}/blobs/uploads/?digest={digest_hello}",
        [("Content-Length", "5"), ("Content-Length", "5")],
        b"hello",
    ),
    _case("CL of 30 digits", "POST", "/v2/{repo}/blobs/uploads/", [("Content-Length", "9" * 30)], b"hello"),
    _case("CL of 20 digits", "POST", "/v2/{repo}/blobs/uploads/", [("Content-Length", "9" * 20)], b"hello"),
    _case("headers of 100 kB", "GET", "/v2/{repo}/tags/list", [("X-Big", "b" * 100_000)]),
    _case(
        "CL with leading zeros",
        "POST",
        "/v2/{repo}/blobs/uploads/?digest={digest_hello}",
        [("Content-Length", "0005")],
        b"hello",
    ),
    _case(
        "chunked blob",
        "POST",
        "/v2/{repo}/blobs/uploads/?digest={digest_hello}",
        [("Transfer-Encoding", "chunked")],
        b"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n",
    ),
    _case(
        "bad chunk size",
        "POST",
        "/v2/{repo}/blobs/uploads/?digest={digest_hello}",
        [("Transfer-Encoding", "chunked")],
        b"zz\r\nhello\r\n0\r\n\r\n",
    ),
    _case("obs-fold", "GET", "/v2/{repo}/tags/list", [("X-Folded", "a\r\n b")]),
    _case("space before colon", "GET", "/v2/{repo}/tags/list", [("Accept ", "x")]),
    _case("GET with a body", "GET", "/v2/{repo}/tags/list", [("Content-Length", "5")], b"hello"),
    _case("no credentials", "GET", "/v2/{repo}/tags/list", [("Authorization", "")]),  # empty: not sent
    _case("absolute-form target", "GET", "http://elsewhere.example/v2/{repo}/tags/list"),
    _case("path outside /v2/", "GET", "/nothing/here"),
    _case("method a probe does not take", "POST", "/livez", [("Content-Length", "0")]),
    # Numbers.
    _case("n of 5000 digits", "GET", "/v2/{repo}/tags/list?n=" + HUGE),
    _case("n superscript two", "GET", "/v2/{repo}/tags/list?n=%C2%B2"),
    _case("n arabic-indic three", "GET", "/v2/{repo}/tags/list?n=%D9%A3"),
    _case("n negative", "GET", "/v2/{repo}/tags/list?n=-1"),
    _case("n of 20 digits", "GET", "/v2/{repo}/tags/list?n=" + "9" * 20),
    _case("catalog n superscript two", "GET", "/v2/_catalog?n=%C2%B2"),
    _case("Range of 5000 digits", "GET", "/v2/{repo}/blobs/{blob}", [("Range", f"bytes={HUGE}-")]),
    _case("Range end of 5000 digits", "GET", "/v2/{repo}/blobs/{blob}", [("Range", f"bytes=0-{HUGE}")]),
    _case("Range superscript", "GET", "/v2/{repo}/blobs/{blob}", [("Range", "bytes=\xb2-")]),
    _case("Range that makes sense", "GET", "/v2/{repo}/blobs/{blob}", [("Range", "bytes=10-19")]),
    _case(
        "Content-Range of 5000 digits",
        "PATCH",
        "{session}",
        [("Content-Range", f"0-{HUGE}"), ("Content-Length", "1")],
        b"x",
        session=True,
    ),
    _case(
        "Content-Range total of 5000 digits",
        "PATCH",
        "{session}",
        [("Content-Range", f"0-0/{HUGE}"), ("Content-Length", "1")],
        b"x",
        session=True,
    ),
    # Bodies answered early, and what the proxy adds or drops.
    _case(
        "5 MiB manifest",
        "PUT",
        "/v2/{repo}/manifests/big",
        [("Content-Type", OCI_MANIFEST), ("Content-Length", str(len(BIG)))],
        BIG,
    ),
    _case(
        "5 MiB PATCH to an unknown session",
        "PATCH",
        "/v2/{repo}/blobs/uploads/nope",
        [("Content-Length", str(len(BIG)))],
        BIG,
    ),
    _case("PATCH to an unknown session", "PATCH", "/v2/{repo}/blobs/uploads/nope", [("Content-Length", "5")], b"hello"),
    # aiohttp adds Content-Type: application/octet-stream to a body that has none, unless told not to.
    _case("manifest without Content-Type", "PUT", "/v2/{repo}/manifests/no-type"),
]


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


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_owner_and_non_owner_answer_alike(
    cluster: ClusterUnderTest, tls: ssl.SSLContext, repo: Repo, case: Case
) -> None:
    direct = send(cluster, OWNER, tls, repo, case)
    proxied = send(cluster, PROXY, tls, repo, case)
    assert (proxied.status, proxied.code()) == (direct.status, direct.code()), (
        f"{case.name}: owner said {direct.status} {direct.body[:200]!r}, "
        f"through a non-owner {proxied.status} {proxied.body[:200]!r}"
    )
    assert direct.status != 500


EXPECTED = {
    "TE and CL": (400, "UNSUPPORTED"),
    "gzip, chunked": (400, "UNSUPPORTED"),
    "equal CLs": (201, ""),
    "chunked blob": (201, ""),
    "CL with leading zeros": (201, ""),
    "GET with a body": (200, ""),
    "n superscript two": (400, "PAGINATION_NUMBER_INVALID"),
    "n of 5000 digits": (400, "PAGINATION_NUMBER_INVALID"),
    "Range of 5000 digits": (416, "BLOB_UPLOAD_INVALID"),
    "Range that makes sense": (206, ""),
    "Content-Range of 5000 digits": (416, "BLOB_UPLOAD_INVALID"),
    "5 MiB manifest": (413, "MANIFEST_INVALID"),
    "5 MiB PATCH to an unknown session": (404, "BLOB_UPLOAD_UNKNOWN"),
    "manifest without Content-Type": (201, ""),
    "no credentials": (401, "UNAUTHORIZED"),
    "CL of 20 digits": (400, "SIZE_INVALID"),
    "headers of 100 kB": (431, "UNSUPPORTED"),
    "absolute-form target": (200, ""),
    "path outside /v2/": (404, "NAME_UNKNOWN"),
    "method a probe does not take": (405, "UNSUPPORTED"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_answers_are_the_right_ones(cluster: ClusterUnderTest, tls: ssl.SSLContext, repo: Repo, name: str) -> None:
    case = next(case for case in CASES if case.name == name)
    answer = send(cluster, PROXY, tls, repo, case)
    assert (answer.status, answer.code()) == EXPECTED[name], answer


def test_early_errors_on_large_bodies_come_back_through_the_proxy(
    cluster: ClusterUnderTest, tls: ssl.SSLContext, repo: Repo
) -> None:
    node = cluster.members[PROXY]
    auth = authorization(cluster)
    cases = [
        (
            "PUT",
            f"/v2/{repo.name}/manifests/big",
            b"x" * (5 << 20),
            {"Content-Type": OCI_MANIFEST},
            413,
            "MANIFEST_INVALID",
        ),
        ("PATCH", f"/v2/{repo.name}/blobs/uploads/nope", b"y" * (5 << 20), {}, 404, "BLOB_UPLOAD_UNKNOWN"),
        ("PATCH", f"/v2/{repo.name}/blobs/uploads/nope", b"z" * (24 << 20), {}, 404, "BLOB_UPLOAD_UNKNOWN"),
        ("POST", f"/v2/{repo.name}/blobs/uploads/?digest=sha256:zz", b"w" * (5 << 20), {}, 400, "DIGEST_INVALID"),
    ]
    for method, target, body, headers, status, code in cases:
        for attempt in range(4):
            # http.client sends the whole body before reading: it lost the answer most often.
            connection = http.client.HTTPSConnection(node.host, node.port, timeout=60, context=tls)
            try:
                connection.request(method, target, body=body, headers={"Authorization": auth, **headers})
                response = connection.getresponse()
                got = (response.status, json.loads(response.read())["errors"][0]["code"])
            finally:
                connection.close()
            assert got == (status, code), (method, target, len(body), attempt, got)


def test_stalled_uploads_through_one_member_leave_room_for_everyone_else(
    cluster: ClusterUnderTest, tls: ssl.SSLContext, repo: Repo
) -> None:
    node = cluster.members[PROXY]
    auth = authorization(cluster)
    repos = [cluster.repo_owned_by(OWNER, f"corpus/stall-{i}") for i in range(10)]
    started = time.monotonic()
    stalled = []
    try:
        for i in range(140):
            sock = connect(node.host, node.port, tls, timeout=60)
            name = repos[i % len(repos)]
            if i % 2:
                target, extra = f"/v2/{name}/blobs/uploads/?digest={sha256(b'z' * 1000)}", []
            else:
                target, extra = f"/v2/{name}/manifests/t{i}", [("Content-Type", OCI_MANIFEST)]
            sock.sendall(
                request_bytes(
                    "POST" if i % 2 else "PUT",
                    target,
                    [("Authorization", auth), ("Content-Length", "1000"), *extra],
                    b"z" * 100,
                )
            )
            stalled.append(sock)
        # Meanwhile the proxy still serves everyone else at once, uploads from another client included.
        with client_for(cluster, PROXY, tls) as c:
            for _ in range(3):
                asked = time.monotonic()
                response = c.get(f"/v2/{repo.name}/manifests/v1", headers={"Accept": OCI_MANIFEST})
                elapsed = time.monotonic() - asked
                assert response.status_code == 200 and response.content == repo.manifest, response.text
                assert elapsed < 2.5, f"a manifest took {elapsed:.1f}s through a member with stalled uploads"
        other = http.client.HTTPSConnection(
            node.host, node.port, timeout=30, context=tls, source_address=("127.0.0.9", 0)
        )
        blob = b"from another client"
        other.request(
            "POST", f"/v2/{repos[0]}/blobs/uploads/?digest={sha256(blob)}", body=blob, headers={"Authorization": auth}
        )
        assert other.getresponse().status == 201
        other.close()
        # Every stalled one ends by itself: refused at once (429: too many from one client) or cut
        # when its body has sent nothing for IDLE_TIMEOUT (408), then closed after lingering.
        answers: list[RawAnswer] = []
        for sock in stalled:
            answers.append(read_answer(sock, timeout=max(60 - (time.monotonic() - started), 1), until_close=True))
    finally:
        for sock in stalled:
            sock.close()
    kinds = Counter((answer.status, answer.code()) for answer in answers)
    for answer in answers:
        assert_sane_response(answer.as_httpx("POST", node.url), "stalled upload")
        assert answer.closed
    assert set(kinds) <= {(408, "SIZE_INVALID"), (429, "TOOMANYREQUESTS")}, kinds
    assert kinds[(429, "TOOMANYREQUESTS")] > 0 and kinds[(408, "SIZE_INVALID")] > 0, kinds
    assert all("retry-after" in answer.headers for answer in answers if answer.status == 429)
    assert time.monotonic() - started < 60
    # The pool is back to normal: uploads through the proxy work again.
    with client_for(cluster, PROXY, tls) as c:
        for name in repos[:3]:
            blob = f"after the stall {name}".encode()
            response = c.post(f"/v2/{name}/blobs/uploads/", params={"digest": sha256(blob)}, content=blob)
            assert response.status_code == 201, response.text


def test_bad_login_storm_through_a_non_owner_gets_401s(
    cluster: ClusterUnderTest, tls: ssl.SSLContext, repo: Repo
) -> None:
    node = cluster.members[PROXY]
    statuses: list[int] = []

    def bad_login(i: int) -> None:
        with httpx.Client(base_url=node.url, verify=tls, timeout=60) as c:
            response = c.get(f"/v2/{repo.name}/tags/list", auth=("member", f"wrong-{i}"))
            assert_sane_response(response, "bad login")
            statuses.append(response.status_code)

    storm = [threading.Thread(target=bad_login, args=(i,)) for i in range(16)]
    for thread in storm:
        thread.start()
    for thread in storm:
        thread.join(60)
    assert sorted(statuses) == [401] * 16


def test_early_errors_come_back_through_the_proxy_over_plain_tcp(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Without TLS nothing lingers by accident (a TLS close waits for close_notify, reading
    # meanwhile): a member that closed after an early answer reset the connection the proxy was
    # still writing the body into (502 "broken pipe"), and the proxy reset its own client's.
    cluster = start_cluster(tmp_path_factory.mktemp("plain"), count=2, tls=False, auth=False)
    try:
        name = cluster.repo_owned_by(1, "plain")
        got: Counter[tuple[int, str] | str] = Counter()
        for attempt in range(40):
            node = cluster.members[attempt % 2]  # through the owner and through the other member
            manifest = attempt % 4 < 2
            method, target, expected = (
                ("PUT", f"/v2/{name}/manifests/big", (413, "MANIFEST_INVALID"))
                if manifest
                else ("PATCH", f"/v2/{name}/blobs/uploads/nope", (404, "BLOB_UPLOAD_UNKNOWN"))
            )
            connection = http.client.HTTPConnection(node.host, node.port, timeout=60)
            try:
                size = (5 << 20) if attempt % 3 else (24 << 20)
                connection.request(method, target, body=b"x" * size, headers={"Content-Type": OCI_MANIFEST})
                response = connection.getresponse()
                error = json.loads(response.read())["errors"][0]
                answer = (response.status, str(error["code"]) + ("" if response.status < 500 else error["message"]))
                got["as expected" if answer == expected else answer] += 1
            except OSError as err:
                got[type(err).__name__] += 1
            finally:
                connection.close()
        assert got == {"as expected": 40}, got
    finally:
        cluster.stop()
