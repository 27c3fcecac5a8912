"""Adversarial HTTP through a 3-member cluster, bodies and load through a non-owner: early errors on
large bodies come back through the proxy (over TLS and over plain TCP), stalled uploads through one
member do not take the proxy's capacity from everyone else, and a bad-login storm gets 401s."""

from __future__ import annotations

import http.client
import json
import os
import signal
import ssl
import threading
import time
from collections import Counter

import httpx
import pytest

from tests.support.checks import assert_sane_response
from tests.support.cluster import ClusterUnderTest, start_cluster
from tests.support.cluster_corpus import OWNER, PROXY, Repo, authorization, client_for
from tests.support.images import OCI_MANIFEST, sha256
from tests.support.rawhttp import RawAnswer, connect, read_answer, request_bytes


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


def test_an_answer_given_while_the_body_is_held_back_reaches_a_client_still_sending(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # The owner is frozen: it stops reading the upload, and the client's body piles up in the
    # proxying member to its back-pressure bound (and hypercorn's queue behind it). The proxy must
    # give up on a write that makes no progress (aiohttp's read timeout only starts after the body),
    # and answer 504. Sending that answer ends the request for hypercorn, which then hands the app
    # its disconnect through the same full queue: the body must stop holding back then, or the
    # answer blocks for good, the member stops reading, and the client hangs on the rest of its
    # body (what an owner's early 404 did, now and then, when the body outran the proxy).
    cluster = start_cluster(
        tmp_path_factory.mktemp("frozen"), count=2, tls=False, auth=False, env={"ZOT_CLUSTER_READ_TIMEOUT": "3"}
    )
    owner = cluster.members[1].process
    assert owner is not None
    try:
        name = cluster.repo_owned_by(1, "frozen")
        os.killpg(owner.pid, signal.SIGSTOP)
        try:
            node = cluster.members[0]
            connection = http.client.HTTPConnection(node.host, node.port, timeout=30)
            try:
                connection.request("PATCH", f"/v2/{name}/blobs/uploads/nope", body=b"x" * (48 << 20))
                response = connection.getresponse()
                error = json.loads(response.read())["errors"][0]
            finally:
                connection.close()
        finally:
            os.killpg(owner.pid, signal.SIGCONT)
        assert (response.status, error["code"]) in ((503, "UNAVAILABLE"), (504, "UNAVAILABLE")), (
            response.status,
            error,
        )
        # The member is still whole: it answers the next client at once.
        assert httpx.get(f"http://{node.host}:{node.port}/v2/", timeout=10).status_code == 200
    finally:
        cluster.stop()
