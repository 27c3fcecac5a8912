"""Adversarial HTTP against one registry, the parsing of requests: smuggling-shaped framing, paths and
methods without a route, absurd numbers. Every answer goes through assert_sane_response."""

from __future__ import annotations

import httpx
import pytest

from tests.support.checks import assert_sane_response
from tests.support.http_corpus import raw
from tests.support.images import make_image, push_image, sha256
from tests.support.rawhttp import exchange
from tests.support.registry import RegistryProcess

# --- smuggling-shaped framing -------------------------------------------------------------------

SMUGGLED = b"POST /v2/smuggled/blobs/uploads/ HTTP/1.1\r\nHost: registry\r\nContent-Length: 0\r\n\r\n"


def test_transfer_encoding_with_content_length_is_refused_and_closed(registry: RegistryProcess) -> None:
    # h11 would read the chunked body and hand both headers on; a proxy reading Content-Length
    # would read another body: the request is refused, once, and nothing behind it is run.
    body = b"0\r\n\r\n" + SMUGGLED
    for target in ("/v2/r/blobs/uploads/", "/livez", f"/v2/r/blobs/uploads/?digest={sha256(b'')}"):
        answer = raw(
            registry,
            "POST",
            target,
            [("Content-Length", str(len(body))), ("Transfer-Encoding", "chunked")],
            body,
            until_close=True,
        )
        assert (answer.status, answer.code()) == (400, "UNSUPPORTED"), answer
        assert answer.headers.get("connection") == "close"
        assert answer.closed and answer.extra == b"", f"a second answer followed: {answer.extra[:200]!r}"
    assert not (registry.root / "smuggled").exists()
    assert not (registry.root / "r").exists()


@pytest.mark.parametrize(
    ("name", "headers", "body", "expected"),
    [
        ("unknown transfer coding", [("Transfer-Encoding", "gzip, chunked")], b"0\r\n\r\n", (400, "UNSUPPORTED")),
        (
            "two Transfer-Encoding headers",
            [("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")],
            b"0\r\n\r\n",
            (400, "UNSUPPORTED"),
        ),
        ("identity transfer coding", [("Transfer-Encoding", "identity")], b"", (400, "UNSUPPORTED")),
        (
            "conflicting Content-Length",
            [("Content-Length", "0"), ("Content-Length", "5")],
            b"hello",
            (400, "UNSUPPORTED"),
        ),
        ("list of Content-Lengths that differ", [("Content-Length", "0, 5")], b"hello", (400, "UNSUPPORTED")),
        ("signed Content-Length", [("Content-Length", "+5")], b"hello", (400, "UNSUPPORTED")),
        ("Content-Length of 30 digits", [("Content-Length", "9" * 30)], b"hello", (400, "UNSUPPORTED")),
        ("Content-Length past 2**63", [("Content-Length", "9" * 20)], b"hello", (400, "SIZE_INVALID")),
        ("headers of 100 kB", [("X-Big", "b" * 100_000)], b"", (431, "UNSUPPORTED")),
        ("space before the colon", [("Content-Length ", "5")], b"hello", (400, "UNSUPPORTED")),
        ("bad chunk size", [("Transfer-Encoding", "chunked")], b"zz\r\nhello\r\n0\r\n\r\n", (400, "UNSUPPORTED")),
    ],
)
def test_framing_h11_refuses_gets_an_oci_error(
    registry: RegistryProcess, name: str, headers: list[tuple[str, str]], body: bytes, expected: tuple[int, str]
) -> None:
    target = f"/v2/r/blobs/uploads/?digest={sha256(b'hello')}"  # a handler that reads the body
    answer = raw(registry, "POST", target, headers, body + SMUGGLED, until_close=True, case=name)
    assert (answer.status, answer.code()) == expected, (name, answer)
    assert answer.closed and answer.extra == b"", (name, answer.extra[:200])
    assert not (registry.root / "smuggled").exists()


def test_framing_h11_accepts_is_read_once(registry: RegistryProcess) -> None:
    # Equal Content-Length headers are one length; an obs-fold line is unfolded into a space.
    blob = b"hello"
    answer = raw(
        registry,
        "POST",
        f"/v2/dup/blobs/uploads/?digest={sha256(blob)}",
        [("Content-Length", "5"), ("Content-Length", "5"), ("Connection", "close")],
        blob,
        until_close=True,
    )
    assert answer.status == 201 and answer.extra == b""
    folded = exchange(
        registry.host, registry.port, b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\nConnection: close\r\n\r\n"
    )
    assert folded.status == 200


def test_paths_and_methods_without_a_route_get_oci_errors(registry: RegistryProcess) -> None:
    # Quart's own 404 and 405 went through the catch-all: a 500 and a traceback in the log.
    with httpx.Client(base_url=registry.url, timeout=10) as c:
        for method, path, status, code in (
            ("GET", "/nothing/here", 404, "NAME_UNKNOWN"),
            ("GET", "/v2x", 404, "NAME_UNKNOWN"),
            ("POST", "/livez", 405, "UNSUPPORTED"),
            ("DELETE", "/metrics", 405, "UNSUPPORTED"),
        ):
            response = c.request(method, path)
            assert_sane_response(response, path)
            assert (method, path, response.status_code, response.json()["errors"][0]["code"]) == (
                method,
                path,
                status,
                code,
            )
        assert "GET" in c.post("/livez").headers["Allow"]
    answer = raw(registry, "GET", "*", [("Connection", "close")])
    assert answer.status == 404
    answer = raw(registry, "GET", "http://elsewhere.example/v2/", [("Connection", "close")])
    assert answer.status == 200


# --- numbers ---------------------------------------------------------------------------------------

HUGE = "9" * 5000  # past the 4300 digits where int() raises


def test_numbers_out_of_range_get_the_right_oci_error(registry: RegistryProcess) -> None:
    blob = b"0123456789" * 10
    with httpx.Client(base_url=registry.url, timeout=30) as c:
        assert c.post("/v2/num/blobs/uploads/", params={"digest": sha256(blob)}, content=blob).status_code == 201
        assert push_image(c, "num", make_image("num"), tag="v1").status_code == 201
        location = c.post("/v2/num/blobs/uploads/").headers["Location"]
        blob_path = f"/v2/num/blobs/{sha256(blob)}"
        cases: list[tuple[str, httpx.Response, int, str]] = []
        for n in (HUGE, "²", "٣", "-1", "1e3", " 1", "99999999999999999999", "0x10"):
            cases.append(
                (f"tags n={n[:10]}", c.get("/v2/num/tags/list", params={"n": n}), 400, "PAGINATION_NUMBER_INVALID")
            )
            cases.append(
                (f"catalog n={n[:10]}", c.get("/v2/_catalog", params={"n": n}), 400, "PAGINATION_NUMBER_INVALID")
            )
        for value in (f"bytes={HUGE}-", f"bytes=0-{HUGE}", f"bytes=-{HUGE}", "bytes=99999999999999999999-"):
            cases.append(
                (f"Range {value[:20]}", c.get(blob_path, headers={"Range": value}), 416, "BLOB_UPLOAD_INVALID")
            )
        for value in (f"0-{HUGE}", f"{HUGE}-{HUGE}", f"bytes 0-9/{HUGE}", "0-99999999999999999999"):
            cases.append(
                (
                    f"Content-Range {value[:20]}",
                    c.patch(location, content=b"x", headers={"Content-Range": value}),
                    416,
                    "BLOB_UPLOAD_INVALID",
                )
            )
        for name, response, status, code in cases:
            assert_sane_response(response, name)
            assert (name, response.status_code, response.json()["errors"][0]["code"]) == (name, status, code)
        # Still a working registry: ranges and pages that make sense work.
        assert c.get(blob_path, headers={"Range": "bytes=10-19"}).content == blob[10:20]
        assert c.get("/v2/num/tags/list", params={"n": "9223372036854775807"}).json()["tags"] == ["v1"]
        # A bad n is refused before the repository is looked up.
        assert c.get("/v2/absent/tags/list", params={"n": "²"}).status_code == 400
    # Non-ASCII digits in a header (obs-text bytes) and a Content-Length h11 refuses.
    for octets in (b"bytes=\xb2-", b"bytes=0-\xd9\xa3"):
        request = b"GET " + blob_path.encode() + b" HTTP/1.1\r\nHost: x\r\nRange: " + octets + b"\r\n\r\n"
        answer = exchange(registry.host, registry.port, request)
        assert_sane_response(answer.as_httpx("GET", registry.url + blob_path), repr(octets))
        assert answer.status == 416 and answer.code() == "BLOB_UPLOAD_INVALID"
    answer = raw(registry, "PATCH", location, [("Content-Length", HUGE)], b"x", until_close=True)
    assert answer.status == 400
