"""Adversarial HTTP through a 3-member cluster: every case gets the same answer (status and OCI
code) from the owner of the repository and through a member that proxies to it, every answer is
sane, and the answers to the cases listed in EXPECTED are the right ones."""

from __future__ import annotations

import ssl

import pytest

from tests.support.cluster import ClusterUnderTest
from tests.support.cluster_corpus import OWNER, PROXY, Case, Repo, send
from tests.support.images import OCI_MANIFEST

HUGE = "9" * 5000
BIG = b"x" * (5 << 20)
CASES = [
    # Framing.
    Case(
        "TE and CL",
        "POST",
        "/v2/{repo}/blobs/uploads/?digest={digest_hello}",
        [("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
        b"5\r\nhello\r\n0\r\n\r\n",
    ),
    Case(
        "TE and longer CL",
        "POST",
        "/v2/{repo}/blobs/uploads/?digest={digest_hello}",
        [("Content-Length", "40"), ("Transfer-Encoding", "chunked")],
        b"5\r\nhello\r\n0\r\n\r\n",
    ),
    Case("gzip, chunked", "POST", "/v2/{repo}/blobs/uploads/", [("Transfer-Encoding", "gzip, chunked")], b"0\r\n\r\n"),
    Case(
        "two TE headers",
        "POST",
        "/v2/{repo}/blobs/uploads/",
        [("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")],
        b"0\r\n\r\n",
    ),
    Case(
        "conflicting CL",
        "POST",
        "/v2/{repo}/blobs/uploads/",
        [("Content-Length", "0"), ("Content-Length", "5")],
        b"hello",
    ),
    Case(
        "equal CLs",
        "POST",
        "/v2/{repo}/blobs/uploads/?digest={digest_hello}",
        [("Content-Length", "5"), ("Content-Length", "5")],
        b"hello",
    ),
    Case("CL of 30 digits", "POST", "/v2/{repo}/blobs/uploads/", [("Content-Length", "9" * 30)], b"hello"),
    Case("CL of 20 digits", "POST", "/v2/{repo}/blobs/uploads/", [("Content-Length", "9" * 20)], b"hello"),
    Case("headers of 100 kB", "GET", "/v2/{repo}/tags/list", [("X-Big", "b" * 100_000)]),
    Case(
        "CL with leading zeros",
        "POST",
        "/v2/{repo}/blobs/uploads/?digest={digest_hello}",
        [("Content-Length", "0005")],
        b"hello",
    ),
    Case(
        "chunked blob",
        "POST",
        "/v2/{repo}/blobs/uploads/?digest={digest_hello}",
        [("Transfer-Encoding", "chunked")],
        b"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n",
    ),
    Case(
        "bad chunk size",
        "POST",
        "/v2/{repo}/blobs/uploads/?digest={digest_hello}",
        [("Transfer-Encoding", "chunked")],
        b"zz\r\nhello\r\n0\r\n\r\n",
    ),
    Case("obs-fold", "GET", "/v2/{repo}/tags/list", [("X-Folded", "a\r\n b")]),
    Case("space before colon", "GET", "/v2/{repo}/tags/list", [("Accept ", "x")]),
    Case("GET with a body", "GET", "/v2/{repo}/tags/list", [("Content-Length", "5")], b"hello"),
    Case("no credentials", "GET", "/v2/{repo}/tags/list", [("Authorization", "")]),  # empty: not sent
    Case("absolute-form target", "GET", "http://elsewhere.example/v2/{repo}/tags/list"),
    Case("path outside /v2/", "GET", "/nothing/here"),
    Case("method a probe does not take", "POST", "/livez", [("Content-Length", "0")]),
    # Numbers.
    Case("n of 5000 digits", "GET", "/v2/{repo}/tags/list?n=" + HUGE),
    Case("n superscript two", "GET", "/v2/{repo}/tags/list?n=%C2%B2"),
    Case("n arabic-indic three", "GET", "/v2/{repo}/tags/list?n=%D9%A3"),
    Case("n negative", "GET", "/v2/{repo}/tags/list?n=-1"),
    Case("n of 20 digits", "GET", "/v2/{repo}/tags/list?n=" + "9" * 20),
    Case("catalog n superscript two", "GET", "/v2/_catalog?n=%C2%B2"),
    Case("Range of 5000 digits", "GET", "/v2/{repo}/blobs/{blob}", [("Range", f"bytes={HUGE}-")]),
    Case("Range end of 5000 digits", "GET", "/v2/{repo}/blobs/{blob}", [("Range", f"bytes=0-{HUGE}")]),
    Case("Range superscript", "GET", "/v2/{repo}/blobs/{blob}", [("Range", "bytes=\xb2-")]),
    Case("Range that makes sense", "GET", "/v2/{repo}/blobs/{blob}", [("Range", "bytes=10-19")]),
    *(
        Case(name, "PATCH", "{session}", [("Content-Range", value), ("Content-Length", "1")], b"x", session=True)
        for name, value in (
            ("Content-Range of 5000 digits", f"0-{HUGE}"),
            ("Content-Range total of 5000 digits", f"0-0/{HUGE}"),
        )
    ),
    # Bodies answered early, and what the proxy adds or drops.
    Case(
        "5 MiB manifest",
        "PUT",
        "/v2/{repo}/manifests/big",
        [("Content-Type", OCI_MANIFEST), ("Content-Length", str(len(BIG)))],
        BIG,
    ),
    Case(
        "5 MiB PATCH to an unknown session",
        "PATCH",
        "/v2/{repo}/blobs/uploads/nope",
        [("Content-Length", str(len(BIG)))],
        BIG,
    ),
    Case("PATCH to an unknown session", "PATCH", "/v2/{repo}/blobs/uploads/nope", [("Content-Length", "5")], b"hello"),
    # aiohttp adds Content-Type: application/octet-stream to a body that has none, unless told not to.
    Case("manifest without Content-Type", "PUT", "/v2/{repo}/manifests/no-type"),
]


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
