"""Adversarial HTTP against one registry: smuggling-shaped framing, absurd numbers, early errors on
large bodies, stalled bodies, bad-login storms. Every answer goes through assert_sane_response."""

from __future__ import annotations

import asyncio
import base64
import http.client
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest

from tests.support.checks import assert_no_traceback, assert_sane_response
from tests.support.images import make_image, push_image, sha256
from tests.support.ports import free_port
from tests.support.rawhttp import RawAnswer, connect, exchange, read_answer, request_bytes
from tests.support.registry import RegistryProcess, registry_config, write_htpasswd

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# Short enough for a test, long enough not to fire on a loaded machine between two chunks.
FAST_ENV = {"ZOT_HTTP_BODY_IDLE_TIMEOUT": "2", "ZOT_HTTP_LINGER_SECONDS": "3"}


@pytest.fixture
def start_with_env(tmp_path: Path) -> Iterator[Callable[..., RegistryProcess]]:
    """Like start_registry, with environment variables for the registry process."""
    started: list[RegistryProcess] = []

    def start(env: dict[str, str] | None = None, workers: int = 1, **http: Any) -> RegistryProcess:
        folder = tmp_path / f"registry-{len(started)}"
        folder.mkdir()
        port = free_port()
        proc = RegistryProcess(
            folder / "config.json",
            registry_config(folder / "root", port, **http),
            folder / "registry.log",
            workers=workers,
            env=env or {},
        )
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()
        assert_no_traceback(proc.log_path.read_text(), f"log of {proc.hostport}")


@pytest.fixture
def registry(start_with_env: Callable[..., RegistryProcess]) -> RegistryProcess:
    return start_with_env(FAST_ENV)


def raw(
    registry: RegistryProcess,
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    until_close: bool = False,
    case: str = "",
) -> RawAnswer:
    answer = exchange(
        registry.host, registry.port, request_bytes(method, target, headers, body), until_close=until_close
    )
    shown = target if target.startswith("/") else "/"
    assert_sane_response(answer.as_httpx(method, f"{registry.url}{shown}"), case or target)
    return answer


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


# --- bad logins -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def costly_htpasswd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Cost 12, as `htpasswd -B -C 12` writes: a few hundred milliseconds per check.
    path = tmp_path_factory.mktemp("auth") / "htpasswd"
    path.write_text(f"alice:{bcrypt.hashpw(b'wonderland', bcrypt.gensalt(rounds=12)).decode()}\n")
    return path


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_bad_login_storm_does_not_stall_livez(
    start_with_env: Callable[..., RegistryProcess], costly_htpasswd: Path
) -> None:
    registry = start_with_env(auth={"htpasswd": {"path": str(costly_htpasswd)}})
    with httpx.Client(base_url=registry.url, timeout=30) as c:
        assert c.get("/livez").status_code == 200  # connected before the storm
        storm = []
        for i in range(12):  # sent whole before /livez is asked: 12 checks of ~0.3 s each
            sock = connect(registry.host, registry.port, timeout=60)
            sock.sendall(request_bytes("GET", "/v2/", [("Authorization", _basic("alice", f"wrong-{i}"))]))
            storm.append(sock)
        time.sleep(0.2)
        latencies = []
        for _ in range(3):
            started = time.monotonic()
            assert c.get("/livez").status_code == 200
            latencies.append(time.monotonic() - started)
        answers = []
        for sock in storm:
            with sock:
                answers.append(read_answer(sock, timeout=60))
    for answer in answers:
        assert_sane_response(answer.as_httpx("GET", registry.url), "bad login")
        assert (answer.status, answer.code()) == (401, "UNAUTHORIZED")
    # Checked on the event loop, the checks held /livez for seconds; off it, it answers at once.
    assert max(latencies) < 1.0, f"/livez took {max(latencies):.2f}s during a bad-login storm"
    with httpx.Client(base_url=registry.url, auth=("alice", "wonderland"), timeout=30) as alice:
        assert alice.get("/v2/").status_code == 200


def test_unknown_user_costs_what_a_wrong_password_costs(
    start_with_env: Callable[..., RegistryProcess], costly_htpasswd: Path
) -> None:
    registry = start_with_env(auth={"htpasswd": {"path": str(costly_htpasswd)}})

    def cost(user: str) -> float:
        times = []
        with httpx.Client(base_url=registry.url, timeout=30) as c:
            for i in range(5):
                started = time.monotonic()
                response = c.get("/v2/", headers={"Authorization": _basic(user, f"wrong-{i}")})
                times.append(time.monotonic() - started)
                assert response.status_code == 401 and response.json()["errors"][0]["code"] == "UNAUTHORIZED"
        return statistics.median(times)

    known, unknown = cost("alice"), cost("mallory")
    # Same cost by construction; the bound leaves room for a noisy machine (it was 1% before).
    assert unknown > 0.5 * known, f"unknown user {unknown * 1000:.0f} ms vs wrong password {known * 1000:.0f} ms"


def test_password_checks_are_bounded_and_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from zot_registry import auth as auth_module
    from zot_registry.errors import TooManyRequests, Unauthorized

    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "wonderland"})
    calls: list[bytes] = []
    real_check = auth_module._check

    def counting_check(password: str, hashed: bytes) -> bool:
        calls.append(hashed)
        time.sleep(0.2)
        return real_check(password, hashed)

    monkeypatch.setattr(auth_module, "_check", counting_check)

    async def storm() -> tuple[list[BaseException | str], list[BaseException | str]]:
        checker = auth_module.HtpasswdAuth(htpasswd, threads=1, max_pending=2)
        try:
            distinct = await asyncio.gather(
                *(checker.authenticate(_basic("alice", f"bad-{i}")) for i in range(5)), return_exceptions=True
            )
            same = await asyncio.gather(
                *(checker.authenticate(_basic("alice", "bad")) for _ in range(5)), return_exceptions=True
            )
            assert await checker.authenticate(_basic("alice", "wonderland")) == "alice"
            assert await checker.authenticate(_basic("alice", "wonderland")) == "alice"  # remembered
            return distinct, same
        finally:
            checker.close()

    distinct, same = asyncio.run(storm())
    kinds = [type(result).__name__ for result in distinct]
    assert kinds.count("Unauthorized") == 2 and kinds.count("TooManyRequests") == 3, kinds
    refused = next(r for r in distinct if isinstance(r, TooManyRequests))
    assert refused.status == 429 and refused.headers["Retry-After"]
    assert all(isinstance(result, Unauthorized) for result in same)
    # 2 distinct bad ones, 1 shared by the 5 identical ones, 1 for the good password (then cached).
    assert len(calls) == 4
    # An unknown user is checked too, against a hash of the same cost as alice's.
    calls.clear()

    async def unknown() -> None:
        checker = auth_module.HtpasswdAuth(htpasswd)
        try:
            with pytest.raises(Unauthorized):
                await checker.authenticate(_basic("mallory", "x"))
        finally:
            checker.close()

    asyncio.run(unknown())
    assert len(calls) == 1 and calls[0][:7] == htpasswd.read_text().split(":", 1)[1][:7].encode()
