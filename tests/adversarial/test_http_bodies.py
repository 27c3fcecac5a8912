"""Adversarial HTTP against one registry, bodies: early errors on large bodies reach the client, and
stalled bodies get 408 and the connection ends. Every answer goes through assert_sane_response."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable, Iterator

import httpx

from tests.support.checks import assert_sane_response
from tests.support.images import OCI_MANIFEST, sha256
from tests.support.rawhttp import connect, read_answer, request_bytes
from tests.support.registry import RegistryProcess

# --- early errors on large bodies -----------------------------------------------------------------


def _send_all_then_read(
    registry: RegistryProcess, method: str, target: str, body: bytes | Iterator[bytes], headers: dict[str, str]
) -> tuple[int, bytes]:
    """http.client sends the whole body before it reads: the client that lost the answer most."""
    connection = http.client.HTTPConnection(registry.host, registry.port, timeout=30)
    try:
        connection.request(method, target, body=body, headers=headers, encode_chunked=not isinstance(body, bytes))
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _chunks(total: int, size: int = 1 << 20) -> Iterator[bytes]:
    for _ in range(total // size):
        yield b"x" * size


def test_early_errors_on_large_bodies_reach_the_client(registry: RegistryProcess) -> None:
    big = b"x" * (5 << 20)
    cases: list[tuple[str, str, str, Callable[[], bytes | Iterator[bytes]], dict[str, str], int, str]] = [
        (
            "5 MiB manifest",
            "PUT",
            "/v2/early/manifests/big",
            lambda: big,
            {"Content-Type": OCI_MANIFEST},
            413,
            "MANIFEST_INVALID",
        ),
        (
            "12 MiB chunked manifest",
            "PUT",
            "/v2/early/manifests/big",
            lambda: _chunks(12 << 20),
            {"Content-Type": OCI_MANIFEST},
            413,
            "MANIFEST_INVALID",
        ),
        (
            "5 MiB PATCH to an unknown session",
            "PATCH",
            "/v2/early/blobs/uploads/nope",
            lambda: big,
            {},
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            "20 MiB PATCH to an unknown session",
            "PATCH",
            "/v2/early/blobs/uploads/nope",
            lambda: b"y" * (20 << 20),
            {},
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            "5 MiB blob with a bad digest",
            "POST",
            "/v2/early/blobs/uploads/?digest=sha256:zz",
            lambda: big,
            {},
            400,
            "DIGEST_INVALID",
        ),
    ]
    for name, method, target, body, headers, status, code in cases:
        for attempt in range(3):
            got_status, got_body = _send_all_then_read(registry, method, target, body(), headers)
            response = httpx.Response(got_status, content=got_body, request=httpx.Request(method, registry.url))
            assert_sane_response(response, name)
            assert (name, attempt, got_status, response.json()["errors"][0]["code"]) == (name, attempt, status, code)


# --- stalled bodies -------------------------------------------------------------------------------


def test_a_stalled_body_gets_408_and_the_connection_ends(registry: RegistryProcess) -> None:
    started = time.monotonic()
    sockets = []
    for target, headers in (
        (f"/v2/stall/blobs/uploads/?digest={sha256(b'z' * 1000)}", []),
        ("/v2/stall/manifests/t", [("Content-Type", OCI_MANIFEST)]),
    ):
        sock = connect(registry.host, registry.port, timeout=30)
        sock.sendall(
            request_bytes(
                "PUT" if "manifests" in target else "POST", target, [*headers, ("Content-Length", "1000")], b"z" * 100
            )
        )
        sockets.append(sock)
    for sock in sockets:
        with sock:
            answer = read_answer(sock, timeout=30, until_close=True)
        assert_sane_response(answer.as_httpx("POST", registry.url), "stalled body")
        assert (answer.status, answer.code()) == (408, "SIZE_INVALID"), answer
        assert answer.closed
    # 2 s of silence, then 3 s of lingering at most: well inside this bound on a loaded machine.
    assert time.monotonic() - started < 20
    with httpx.Client(base_url=registry.url, timeout=10) as c:
        assert c.head(f"/v2/stall/blobs/{sha256(b'z' * 1000)}").status_code == 404  # nothing half-made kept
        assert c.get("/v2/stall/manifests/t").status_code == 404
        blob = b"after the stall"
        assert c.post("/v2/stall/blobs/uploads/", params={"digest": sha256(blob)}, content=blob).status_code == 201
