"""Adversarial HTTP against one registry, bad logins: a storm of them does not stall /livez, an unknown
user costs what a wrong password costs, and password checks are bounded and shared."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import bcrypt
import httpx
import pytest

from tests.support.checks import assert_sane_response
from tests.support.http_corpus import basic
from tests.support.rawhttp import connect, read_answer, request_bytes
from tests.support.registry import RegistryProcess, write_htpasswd

# --- bad logins -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def costly_htpasswd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Cost 12, as `htpasswd -B -C 12` writes: a few hundred milliseconds per check.
    path = tmp_path_factory.mktemp("auth") / "htpasswd"
    path.write_text(f"alice:{bcrypt.hashpw(b'wonderland', bcrypt.gensalt(rounds=12)).decode()}\n")
    return path


def test_bad_login_storm_does_not_stall_livez(
    start_with_env: Callable[..., RegistryProcess], costly_htpasswd: Path
) -> None:
    registry = start_with_env(auth={"htpasswd": {"path": str(costly_htpasswd)}})
    with httpx.Client(base_url=registry.url, timeout=30) as c:
        assert c.get("/livez").status_code == 200  # connected before the storm
        storm = []
        for i in range(12):  # sent whole before /livez is asked: 12 checks of ~0.3 s each
            sock = connect(registry.host, registry.port, timeout=60)
            sock.sendall(request_bytes("GET", "/v2/", [("Authorization", basic("alice", f"wrong-{i}"))]))
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
                response = c.get("/v2/", headers={"Authorization": basic(user, f"wrong-{i}")})
                times.append(time.monotonic() - started)
                assert response.status_code == 401 and response.json()["errors"][0]["code"] == "UNAUTHORIZED"
        return statistics.median(times)

    known, unknown = cost("alice"), cost("mallory")
    # Same cost by construction; the bound leaves room for a noisy machine (it was 1% before).
    assert unknown > 0.5 * known, f"unknown user {unknown * 1000:.0f} ms vs wrong password {known * 1000:.0f} ms"


def test_password_checks_are_bounded_and_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from zot_registry.authn import htpasswd as auth_module
    from zot_registry.errors import TooManyRequests, Unauthorized

    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "wonderland"})
    calls: list[bytes] = []
    real_check = auth_module._bcrypt_matches

    def counting_check(password: str, hashed: bytes) -> bool:
        calls.append(hashed)
        time.sleep(0.2)
        return real_check(password, hashed)

    monkeypatch.setattr(auth_module, "_bcrypt_matches", counting_check)

    async def storm() -> tuple[list[BaseException | str], list[BaseException | str]]:
        checker = auth_module.HtpasswdAuth(htpasswd, threads=1, max_pending=2)
        try:
            distinct = await asyncio.gather(
                *(checker.authenticate(basic("alice", f"bad-{i}")) for i in range(5)), return_exceptions=True
            )
            same = await asyncio.gather(
                *(checker.authenticate(basic("alice", "bad")) for _ in range(5)), return_exceptions=True
            )
            assert await checker.authenticate(basic("alice", "wonderland")) == "alice"
            assert await checker.authenticate(basic("alice", "wonderland")) == "alice"  # remembered
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
                await checker.authenticate(basic("mallory", "x"))
        finally:
            checker.close()

    asyncio.run(unknown())
    assert len(calls) == 1 and calls[0][:7] == htpasswd.read_text().split(":", 1)[1][:7].encode()
