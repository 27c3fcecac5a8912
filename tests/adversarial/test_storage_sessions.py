"""Adversarial storage corpus: one upload session closed twice, or appended to while it closes
(through the registry and in the store itself)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from zot_registry.digests import parse_digest
from zot_registry.errors import BlobUploadUnknown, RegistryError
from zot_registry.storage.local.store import LocalStore

from tests.support.checks import (
    assert_root_intact,
    oci_error_codes,
)
from tests.support.images import sha256
from tests.support.sites import OCTETS, Site, SiteFactory
from tests.support.streams import trickle

# 2. One upload session closed twice, or appended to while it closes ----------------------------


def _concurrently(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    barrier = threading.Barrier(len(calls))
    results: list[httpx.Response | BaseException] = [RuntimeError("no answer")] * len(calls)

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = calls[i]()
        except BaseException as err:  # reported below, with the others
            results[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    answers = []
    for result in results:
        if isinstance(result, BaseException):
            raise result
        answers.append(result)
    return answers


def _own_connection(url: str) -> Callable[..., httpx.Response]:
    """A request on a connection of its own, so concurrent requests may reach either worker."""

    def send(method: str, path: str, **kwargs: Any) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=60) as client:
            return client.request(method, path, **kwargs)

    return send


@pytest.mark.parametrize("dedupe", [True, False], ids=["dedupe", "no-dedupe"])
def test_concurrent_puts_closing_one_session(site: SiteFactory, dedupe: bool) -> None:
    s = site(dedupe=dedupe)
    send = _own_connection(s.registry.url)
    for attempt in range(8):
        data = os.urandom(384 << 10)
        with_last_chunk = attempt % 2 == 1
        head, last = (data[:200_000], data[200_000:]) if with_last_chunk else (data, b"")
        location = s.check(s.client.post("/v2/race/blobs/uploads/"), "start", {202}).headers["Location"]
        s.check(
            s.client.patch(location, content=head, headers={**OCTETS, "Content-Range": f"0-{len(head) - 1}"}),
            "chunk",
            {202},
        )

        def close(location: str = location, last: bytes = last, digest: str = sha256(data)) -> httpx.Response:
            return send("PUT", location, params={"digest": digest}, content=last, headers=OCTETS)

        answers = _concurrently([close] * 3)
        print(f"try {attempt}: closing PUTs answered {[a.status_code for a in answers]}")
        for answer in answers:
            s.check(answer, f"try {attempt}: closing PUT", {201, 404})
            if answer.status_code == 404:
                assert "BLOB_UPLOAD_UNKNOWN" in oci_error_codes(answer), answer.text
        assert any(a.status_code == 201 for a in answers), [a.status_code for a in answers]
        got = s.check(s.client.get(f"/v2/race/blobs/{sha256(data)}"), f"try {attempt}: pull", {200})
        assert got.content == data, f"try {attempt}: stored blob has {len(got.content)} bytes, not {len(data)}"
        # The session is gone: a late retry gets a clean answer too.
        late = s.check(send("PUT", location, params={"digest": sha256(data)}, headers=OCTETS), "late PUT", {201, 404})
        assert late.status_code == 201 or "BLOB_UPLOAD_UNKNOWN" in oci_error_codes(late)
        assert_root_intact(s.root)
    s.finish()


def _patch_race_once(s: Site, send: Callable[..., httpx.Response], attempt: int) -> None:
    data, extra = os.urandom(256 << 10), os.urandom(1 << 20)
    location = s.check(s.client.post("/v2/patchrace/blobs/uploads/"), "start", {202}).headers["Location"]
    s.check(
        s.client.patch(location, content=data, headers={**OCTETS, "Content-Range": f"0-{len(data) - 1}"}),
        "first chunk",
        {202},
    )
    started = threading.Event()
    results: dict[str, httpx.Response] = {}
    headers = {
        **OCTETS,
        "Content-Length": str(len(extra)),
        "Content-Range": f"{len(data)}-{len(data) + len(extra) - 1}",
    }

    def patch() -> None:
        results["patch"] = send("PATCH", location, content=trickle(extra, started), headers=headers)

    thread = threading.Thread(target=patch)
    thread.start()
    assert started.wait(30)
    time.sleep(0.2)
    early = s.check(
        send("PUT", location, params={"digest": sha256(data)}, headers=OCTETS), f"try {attempt}: PUT during PATCH"
    )
    thread.join(60)
    print(f"try {attempt}: PUT during a PATCH {early.status_code}, the PATCH {results['patch'].status_code}")
    s.check(results["patch"], f"try {attempt}: PATCH during PUT", {202, 404, 416})
    if early.status_code == 201:
        # The session closed first: the chunk must not have gone into the blob.
        assert results["patch"].status_code in (404, 416)
        assert s.client.get(f"/v2/patchrace/blobs/{sha256(data)}").content == data
        return
    assert early.status_code in (404, 416), early.text
    s.check(
        send("PUT", location, params={"digest": sha256(data + extra)}, headers=OCTETS),
        f"try {attempt}: closing PUT after the PATCH",
        {201},
    )
    assert s.client.get(f"/v2/patchrace/blobs/{sha256(data + extra)}").content == data + extra


@pytest.mark.parametrize("dedupe", [True, False], ids=["dedupe", "no-dedupe"])
def test_patch_racing_the_put_that_closes_its_session(site: SiteFactory, dedupe: bool) -> None:
    """A chunk still streaming while the session is closed: the PUT never commits a file being appended to."""
    s = site(dedupe=dedupe)
    send = _own_connection(s.registry.url)
    for attempt in range(3):
        _patch_race_once(s, send, attempt)
        assert_root_intact(s.root)
    s.finish()


async def _body(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


@pytest.mark.parametrize("dedupe", [True, False], ids=["dedupe", "no-dedupe"])
def test_store_closes_a_session_exactly_once(tmp_path: Path, dedupe: bool) -> None:
    """The same race without HTTP: three finishes of one session in one event loop."""
    store = LocalStore(tmp_path / "root", dedupe=dedupe)
    data = os.urandom(300_000)
    digest = parse_digest(sha256(data))

    async def race(last: bytes) -> list[BaseException | None]:
        session = await store.new_upload("s")
        head = data[: len(data) - len(last)]
        await store.append_upload("s", session, _body(head), 0, len(head))
        return await asyncio.gather(
            *(store.finish_upload("s", session, digest, _body(last), len(last)) for _ in range(3)),
            return_exceptions=True,
        )

    for last in (b"", data[-1000:]):
        outcomes = asyncio.run(race(last))
        assert all(o is None or isinstance(o, BlobUploadUnknown) for o in outcomes), outcomes
        assert None in outcomes
        assert store.layout.blob("s", digest).read_bytes() == data
        asyncio.run(store.delete_blob("s", digest))
    assert_root_intact(tmp_path / "root")


def test_store_refuses_a_chunk_or_cancel_while_another_request_holds_the_session(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "root")
    session = asyncio.run(store.new_upload("held"))
    asyncio.run(store.append_upload("held", session, _body(b"abc"), 0, 3))
    with open(store.layout.upload("held", session), "rb") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # what a PUT closing the session holds
        with pytest.raises(RegistryError) as chunk:
            asyncio.run(store.append_upload("held", session, _body(b"def"), 3, 3))
        assert (chunk.value.status, chunk.value.code, chunk.value.headers["Range"]) == (
            416,
            "BLOB_UPLOAD_INVALID",
            "0-2",
        )
        with pytest.raises(RegistryError) as cancel:
            asyncio.run(store.cancel_upload("held", session))
        assert (cancel.value.status, cancel.value.code) == (409, "BLOB_UPLOAD_INVALID")
        with pytest.raises(BlobUploadUnknown):
            asyncio.run(store.finish_upload("held", session, parse_digest(sha256(b"abc")), _body(), 0))
    assert asyncio.run(store.upload_size("held", session)) == 3
    asyncio.run(store.finish_upload("held", session, parse_digest(sha256(b"abc")), _body(), 0))
    assert store.layout.blob("held", parse_digest(sha256(b"abc"))).read_bytes() == b"abc"
