"""Adversarial storage corpus: requests that try to leave the root, overlap another repository's
layout, race on one upload session, break a manifest's JSON, meet a foreign index.json, or fill the disk.

Every answer goes through tests.adversarial.checks.assert_sane_response (no unexplained 5xx, OCI
error bodies, no traceback); a sentinel outside the root (Surroundings) proves nothing there is read
or written; each test ends with assert_root_intact(root): every stored blob hashes to its digest.
"""

from __future__ import annotations

import asyncio
import fcntl
import http.client
import json
import os
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from zot_registry.digests import Digest, parse_digest
from zot_registry.errors import BlobUploadUnknown, DigestInvalid, NameInvalid, RegistryError
from zot_registry.storage.local.layout import LocalLayout
from zot_registry.storage.local.store import LocalStore

from tests.adversarial.checks import (
    Surroundings,
    assert_no_traceback,
    assert_root_intact,
    assert_sane_response,
    oci_error_codes,
)
from tests.helpers import Image, RegistryProcess, free_port, make_image, registry_config, sha256

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
TAG_ANNOTATION = "org.opencontainers.image.ref.name"
OCTETS = {"Content-Type": "application/octet-stream"}


@dataclass
class Site:
    """One running registry, its root, and the sentinel folder around the root."""

    registry: RegistryProcess
    root: Path
    surroundings: Surroundings
    client: httpx.Client
    answers: int = 0

    def check(self, response: httpx.Response, case: str, statuses: set[int] | None = None,
              code: str | None = None) -> httpx.Response:
        assert_sane_response(response, case)
        self.surroundings.assert_not_leaked(response, case)
        if statuses is not None:
            assert response.status_code in statuses, f"{case}: {response.status_code} {response.text[:300]}"
        if code is not None:
            assert code in oci_error_codes(response), f"{case}: wanted {code}, got {response.text[:300]}"
        self.answers += 1
        return response

    def raw(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> httpx.Response:
        """Sends `path` exactly as written: httpx would resolve `..` and re-encode it."""
        connection = http.client.HTTPConnection(self.registry.host, self.registry.port, timeout=60)
        try:
            connection.request(method, path, body=body if body or method in ("PUT", "POST", "PATCH") else None,
                               headers=headers or {})
            answer = connection.getresponse()
            content = answer.read()
            return httpx.Response(answer.status, headers=answer.getheaders(), content=content,
                                  request=httpx.Request(method, self.registry.url + "/" + path.lstrip("/")))
        finally:
            connection.close()

    def push(self, repo: str, image: Image, tag: str | None = None) -> httpx.Response:
        for blob in [image.config, *image.layers]:
            self.check(self.client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(blob)}, content=blob,
                                        headers=OCTETS), f"push {repo} blob", {201})
        return self.check(self.client.put(f"/v2/{repo}/manifests/{tag or image.digest}", content=image.manifest,
                                          headers={"Content-Type": OCI_MANIFEST}), f"push {repo} manifest")

    def assert_pulls(self, repo: str, image: Image, tag: str) -> None:
        got = self.check(self.client.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST}),
                         f"pull {repo}:{tag}", {200})
        assert got.content == image.manifest, f"{repo}:{tag} changed"
        for blob in [image.config, *image.layers]:
            pulled = self.check(self.client.get(f"/v2/{repo}/blobs/{sha256(blob)}"), f"pull {repo} blob", {200})
            assert pulled.content == blob, f"{repo}: blob {sha256(blob)} changed"

    def finish(self) -> None:
        """Nothing appeared outside the root, no traceback was logged, every stored blob is whole."""
        assert self.surroundings.new_files() == set()
        assert_no_traceback(self.registry.log_path.read_text(errors="replace"), "registry log")
        assert_root_intact(self.root)


SiteFactory = Callable[..., Site]


@pytest.fixture
def site(start_registry: Callable[..., RegistryProcess], tmp_path: Path) -> Iterator[SiteFactory]:
    """Factory: a registry whose root is <folder>/root, with a sentinel beside it in <folder>/outside."""
    clients: list[httpx.Client] = []

    def make(dedupe: bool = True, prepare: Callable[[Path], None] | None = None, workers: int = 2,
             before_start: Callable[[Path], None] | None = None, **storage: Any) -> Site:
        folder = tmp_path / f"site-{len(clients)}"
        root = folder / "root"
        root.mkdir(parents=True)
        if prepare is not None:
            prepare(root)
        surroundings = Surroundings.around(folder, root)
        if before_start is not None:
            before_start(root)
        config = registry_config(root, free_port())
        config["storage"].update({"dedupe": dedupe, **storage})
        registry = start_registry(config=config, workers=workers, name=folder.name)
        client = httpx.Client(base_url=registry.url, timeout=60)
        clients.append(client)
        return Site(registry, root, surroundings, client)

    yield make
    for client in clients:
        client.close()


def files_containing(folder: Path, secret: bytes) -> list[Path]:
    found = []
    for directory, _, files in os.walk(folder):
        for name in files:
            path = Path(directory, name)
            if path.is_file() and secret in path.read_bytes():
                found.append(path)
    return found


# 1. Path traversal in every parameter that names a path ---------------------------------------


def _plant_outside(site: Site) -> dict[str, str]:
    """Files beside the root that a traversal would find: an OCI layout holding the sentinel's bytes."""
    secret = site.surroundings.secret
    folder = site.surroundings.folder
    verified, decoy = sha256(secret), sha256(b"decoy")
    tag = secret.decode()
    planted: list[Path] = []
    for layout in (folder / "outside", folder):
        for digest in (verified, decoy):
            blob = layout / "blobs" / "sha256" / digest[7:]
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(secret)
            planted.append(blob)
        descriptor = {"mediaType": OCI_MANIFEST, "digest": verified, "size": len(secret),
                      "annotations": {TAG_ANNOTATION: tag}}
        (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [descriptor]}))
        (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        planted += [layout / "index.json", layout / "oci-layout"]
    site.surroundings.before.update(planted)
    return {"d1": verified, "d2": decoy, "hex1": verified[7:], "tag": tag}


# (method, raw path and query, what may answer); {d1} is a blob beside the root holding the sentinel.
TRAVERSALS: list[tuple[str, str, set[int]]] = [
    ("GET", "/v2/../outside/tags/list", {400, 404}),
    ("GET", "/v2/%2e%2e/outside/tags/list", {400, 404}),
    ("GET", "/v2/x/../../outside/tags/list", {400, 404}),
    ("GET", "/v2/x/%2e%2e/%2e%2e/outside/tags/list", {400, 404}),
    ("GET", "/v2/x%2f..%2f..%2foutside/tags/list", {400, 404}),
    ("GET", "/v2/x/..%2F..%2Foutside/tags/list", {400, 404}),
    ("GET", "/v2/../outside/manifests/{tag}", {400, 404}),
    ("GET", "/v2/..%2foutside/manifests/{d1}", {400, 404}),
    ("HEAD", "/v2/../outside/manifests/{d1}", {400, 404}),
    ("GET", "/v2/../outside/blobs/{d1}", {400, 404}),
    ("GET", "/v2/%2e%2e%2foutside/blobs/{d2}", {400, 404}),
    ("GET", "/v2/../blobs/{d1}", {400, 404}),
    ("GET", "/v2/x/blobs/sha256:..%2f..%2f..%2foutside", {400, 404}),
    ("GET", "/v2/x/blobs/..%2f..%2foutside%2fblobs%2fsha256%2f{hex1}", {400, 404}),
    ("GET", "/v2/x/blobs/sha256:../../../outside/blobs/sha256/{hex1}", {400, 404}),
    ("GET", "/v2/../outside/referrers/{d1}", {400, 404}),
    ("GET", "/v2/x/referrers/..%2f..%2foutside", {400, 404}),
    ("GET", "/v2/x/blobs/uploads/..", {400, 404}),
    ("GET", "/v2/x/blobs/uploads/%2e%2e", {400, 404}),
    ("GET", "/v2/x/blobs/uploads/..%2f..%2f..%2foutside%2fsecret.txt", {400, 404}),
    ("PATCH", "/v2/x/blobs/uploads/..%2f..%2f..%2foutside%2fsecret.txt", {400, 404, 405}),
    ("PATCH", "/v2/x/blobs/uploads/%2e%2e", {400, 404}),
    ("PUT", "/v2/x/blobs/uploads/..%2f..%2f..%2foutside%2fsecret.txt?digest={d1}", {400, 404, 405}),
    ("PUT", "/v2/x/blobs/uploads/..?digest={d1}", {400, 404}),
    ("DELETE", "/v2/x/blobs/uploads/..%2f..%2f..%2foutside%2fsecret.txt", {400, 404, 405}),
    ("DELETE", "/v2/x/blobs/uploads/..", {400, 404}),
    ("DELETE", "/v2/../outside/blobs/{d1}", {400, 404}),
    ("DELETE", "/v2/../outside/manifests/{d1}", {400, 404}),
    ("PUT", "/v2/../outside/manifests/v1", {400, 404}),
    ("PUT", "/v2/x/manifests/..%2f..%2foutside", {400, 404, 405}),
    ("PUT", "/v2/x/manifests/v1%2f..%2f..%2fescape", {400, 404, 405}),
    ("PUT", "/v2/x/manifests/..", {400, 404}),
    ("POST", "/v2/../outside/blobs/uploads/", {400, 404}),
    ("POST", "/v2/x/blobs/uploads/?digest=sha256:..%2f..%2foutside", {400}),
    ("POST", "/v2/x/blobs/uploads/?digest=../../outside/blobs/sha256/{hex1}", {400}),
    ("POST", "/v2/x/blobs/uploads/?mount=..%2f..%2foutside&from=x", {400}),
    # A mount from a name that is not a repository of this registry is not mountable: the spec's
    # fallback is an ordinary upload session (202), never the file the name points at.
    ("POST", "/v2/y/blobs/uploads/?mount={d1}&from=../outside", {202}),
    ("POST", "/v2/y/blobs/uploads/?mount={d1}&from=..%2foutside", {202}),
    ("POST", "/v2/y/blobs/uploads/?mount={d2}&from=../outside", {202}),
    ("POST", "/v2/y/blobs/uploads/?mount={d1}&from=..", {202}),
    ("POST", "/v2/y/blobs/uploads/?mount={d1}&from=x/../../outside", {202}),
    ("POST", "/v2/y/blobs/uploads/?mount={d1}&from=%2e%2e%2foutside", {202}),
    ("POST", "/v2/y/blobs/uploads/?mount={d1}&from={root_parent}/outside", {202}),
    ("POST", "/v2/y/blobs/uploads/?mount={d1}&from=x%2f..%2f..%2foutside", {202}),
]


@pytest.mark.parametrize("dedupe", [True, False], ids=["dedupe", "no-dedupe"])
def test_path_traversal_in_every_parameter_stays_in_the_root(site: SiteFactory, dedupe: bool) -> None:
    s = site(dedupe=dedupe)
    values = _plant_outside(s)
    values["root_parent"] = str(s.root.parent)
    image = make_image("traversal")
    assert s.push("x", image, "v1").status_code == 201
    manifest = make_image("escape").manifest
    for method, template, statuses in TRAVERSALS:
        path = template.format(**values)
        body = manifest if method == "PUT" and "/manifests/" in path else b""
        headers = {"Content-Type": OCI_MANIFEST} if body else {}
        s.check(s.raw(method, path, body, headers), f"{method} {path}", statuses)
    for digest in (values["d1"], values["d2"]):
        for repo in ("y", "x"):
            s.check(s.client.get(f"/v2/{repo}/blobs/{digest}"), f"{repo} must not hold {digest}", {404})
    assert files_containing(s.root, s.surroundings.secret) == []
    s.assert_pulls("x", image, "v1")
    s.finish()


def test_layout_never_builds_a_path_outside_the_root(tmp_path: Path) -> None:
    """Defence in depth: the store refuses any name, digest or session that is not one of its own."""
    layout = LocalLayout(tmp_path)
    good = Digest("sha256", "a" * 64)
    for name in ("..", "../x", "x/../../y", "/etc", "x//y", "", "X", "x/blobs", "index.json"):
        with pytest.raises(NameInvalid):
            layout.repo(name)
        with pytest.raises(NameInvalid):
            layout.blob(name, good)
        with pytest.raises(NameInvalid):
            layout.index(name)
    for digest in (Digest("sha256", "../../etc/passwd"), Digest("..", "a" * 64), Digest("sha256", "A" * 64),
                   Digest("md5", "a" * 32)):
        with pytest.raises(DigestInvalid):
            layout.blob("x", digest)
        with pytest.raises(DigestInvalid):
            layout.dedupe_blob(digest)
    for session in ("..", "../x", "a" * 31, "/etc/passwd", ".index.lock"):
        with pytest.raises(BlobUploadUnknown):
            layout.upload("x", session)


# 3. Names that overlap another repository's layout ----------------------------------------------


def _overlapping_names(hex_digest: str) -> list[str]:
    return ["x/index.json", "x/oci-layout", "x/blobs", "x/blobs/sha256", f"x/blobs/sha256/{hex_digest}",
            "blobs", "index.json", "oci-layout", "a/blobs/b", "blobs/x", "x/blobs/sha512"]


def _foreign_nested_layout(root: Path) -> None:
    """What an older registry left: a repository `q/blobs` whose own layout sits inside `q/blobs/`."""
    nested = root / "q" / "blobs"
    (nested / "blobs" / "sha256").mkdir(parents=True)
    (nested / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (nested / "index.json").write_text('{"schemaVersion":2,"manifests":[]}')


@pytest.mark.parametrize("dedupe", [True, False], ids=["dedupe", "no-dedupe"])
def test_names_overlapping_a_repository_layout_are_name_invalid(site: SiteFactory, dedupe: bool) -> None:
    s = site(dedupe=dedupe, prepare=_foreign_nested_layout, gc=True, gcDelay="1h", gcInterval="1s")
    image = make_image("overlap")
    assert s.push("x", image, "v1").status_code == 201
    blob = os.urandom(3000)
    for name in _overlapping_names(sha256(image.layers[0])[7:]):
        case = f"repository {name!r}"
        s.check(s.client.post(f"/v2/{name}/blobs/uploads/", params={"digest": sha256(blob)}, content=blob,
                              headers=OCTETS), case, {400}, "NAME_INVALID")
        s.check(s.client.post(f"/v2/{name}/blobs/uploads/"), case, {400}, "NAME_INVALID")
        s.check(s.client.put(f"/v2/{name}/manifests/v1", content=image.manifest,
                             headers={"Content-Type": OCI_MANIFEST}), case, {400}, "NAME_INVALID")
        s.check(s.client.get(f"/v2/{name}/tags/list"), case, {400}, "NAME_INVALID")
        s.check(s.client.post("/v2/z/blobs/uploads/", params={"mount": sha256(image.layers[0]), "from": name}),
                f"mount from {name!r}", {202})
    # `x` is whole and still takes pushes; `q`, beside an old `q/blobs` layout, works too.
    s.assert_pulls("x", image, "v1")
    second = make_image("overlap-2")
    assert s.push("x", second, "v2").status_code == 201
    assert s.push("q", second, "v1").status_code == 201
    s.assert_pulls("q", second, "v1")
    assert s.check(s.client.get("/v2/x/tags/list"), "tags", {200}).json()["tags"] == ["v1", "v2"]
    catalog = s.check(s.client.get("/v2/_catalog"), "catalog", {200}).json()["repositories"]
    assert catalog == ["q", "x", "z"]  # z: the mounts fell back to upload sessions there
    time.sleep(2.5)  # a few garbage collection passes over `q` and `x`
    log = s.registry.log_path.read_text(errors="replace")
    assert "garbage collection failed" not in log, log[-3000:]
    s.assert_pulls("x", image, "v1")
    s.finish()


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
        s.check(s.client.patch(location, content=head, headers={**OCTETS, "Content-Range": f"0-{len(head) - 1}"}),
                "chunk", {202})

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


def _streamed(data: bytes, started: threading.Event, piece: int = 64 << 10) -> Iterator[bytes]:
    """A request body sent slowly, piece by piece: `started` is set once the first piece is out."""
    for i in range(0, len(data), piece):
        yield data[i:i + piece]
        started.set()
        time.sleep(0.05)


def _patch_race_once(s: Site, send: Callable[..., httpx.Response], attempt: int) -> None:
    data, extra = os.urandom(256 << 10), os.urandom(1 << 20)
    location = s.check(s.client.post("/v2/patchrace/blobs/uploads/"), "start", {202}).headers["Location"]
    s.check(s.client.patch(location, content=data, headers={**OCTETS, "Content-Range": f"0-{len(data) - 1}"}),
            "first chunk", {202})
    started = threading.Event()
    results: dict[str, httpx.Response] = {}
    headers = {**OCTETS, "Content-Length": str(len(extra)),
               "Content-Range": f"{len(data)}-{len(data) + len(extra) - 1}"}

    def patch() -> None:
        results["patch"] = send("PATCH", location, content=_streamed(extra, started), headers=headers)

    thread = threading.Thread(target=patch)
    thread.start()
    assert started.wait(30)
    time.sleep(0.2)
    early = s.check(send("PUT", location, params={"digest": sha256(data)}, headers=OCTETS),
                    f"try {attempt}: PUT during PATCH")
    thread.join(60)
    print(f"try {attempt}: PUT during a PATCH {early.status_code}, the PATCH {results['patch'].status_code}")
    s.check(results["patch"], f"try {attempt}: PATCH during PUT", {202, 404, 416})
    if early.status_code == 201:
        # The session closed first: the chunk must not have gone into the blob.
        assert results["patch"].status_code in (404, 416)
        assert s.client.get(f"/v2/patchrace/blobs/{sha256(data)}").content == data
        return
    assert early.status_code in (404, 416), early.text
    s.check(send("PUT", location, params={"digest": sha256(data + extra)}, headers=OCTETS),
            f"try {attempt}: closing PUT after the PATCH", {201})
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
        head = data[:len(data) - len(last)]
        await store.append_upload("s", session, _body(head), 0, len(head))
        return await asyncio.gather(*(store.finish_upload("s", session, digest, _body(last), len(last))
                                      for _ in range(3)), return_exceptions=True)

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
        assert (chunk.value.status, chunk.value.code, chunk.value.headers["Range"]) == (416, "BLOB_UPLOAD_INVALID",
                                                                                       "0-2")
        with pytest.raises(RegistryError) as cancel:
            asyncio.run(store.cancel_upload("held", session))
        assert (cancel.value.status, cancel.value.code) == (409, "BLOB_UPLOAD_INVALID")
        with pytest.raises(BlobUploadUnknown):
            asyncio.run(store.finish_upload("held", session, parse_digest(sha256(b"abc")), _body(), 0))
    assert asyncio.run(store.upload_size("held", session)) == 3
    asyncio.run(store.finish_upload("held", session, parse_digest(sha256(b"abc")), _body(), 0))
    assert store.layout.blob("held", parse_digest(sha256(b"abc"))).read_bytes() == b"abc"


# 5 and 6. Manifests with wrong JSON types, and JSON nested too deep -------------------------------


def _manifest_doc(image: Image) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(image.manifest)
    return document


def _descriptor(image: Image) -> dict[str, Any]:
    return {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": len(image.manifest)}


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change to a manifest: `layers.0.size` = value (a key of "-" deletes it)."""

    def change(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = document
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value == "-":
            del target[int(last) if isinstance(target, list) else last]
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return change


# Changes that make an image manifest invalid per the OCI image spec, each a MANIFEST_INVALID 400.
BAD_IMAGE_MANIFESTS: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("layers [null]", _set("layers", [None])),
    ("layers [5]", _set("layers", [5])),
    ("layers a string", _set("layers", "sha256:00")),
    ("layers an object", _set("layers", {"digest": "x"})),
    ("layers missing", _set("layers", "-")),
    ("layers null", _set("layers", None)),
    ("annotations 5", _set("annotations", 5)),
    ("annotations a list", _set("annotations", ["a"])),
    ("annotation value 5", _set("annotations", {"a": 5})),
    ("annotation value null", _set("annotations", {"a": None})),
    ("config null", _set("config", None)),
    ("config a string", _set("config", "sha256:00")),
    ("config without digest", _set("config.digest", "-")),
    ("config without mediaType", _set("config.mediaType", "-")),
    ("config without size", _set("config.size", "-")),
    ("config size a string", _set("config.size", "12")),
    ("config size negative", _set("config.size", -1)),
    ("config size a float", _set("config.size", 1.5)),
    ("config size true", _set("config.size", True)),
    ("config digest 5", _set("config.digest", 5)),
    ("config mediaType 5", _set("config.mediaType", 5)),
    ("config mediaType empty", _set("config.mediaType", "")),
    ("config annotations a list", _set("config.annotations", [])),
    ("layer digest null", _set("layers.0.digest", None)),
    ("layer digest invalid", _set("layers.0.digest", "sha256:../../etc")),
    ("layer size null", _set("layers.0.size", None)),
    ("layer urls a string", _set("layers.0.urls", "http://x")),
    ("layer urls [5]", _set("layers.0.urls", [5])),
    ("layer annotations 5", _set("layers.0.annotations", 5)),
    ("layer data 5", _set("layers.0.data", 5)),
    ("layer artifactType 5", _set("layers.0.artifactType", 5)),
    ("artifactType 5", _set("artifactType", 5)),
    ("artifactType a list", _set("artifactType", ["a"])),
    ("mediaType 5", _set("mediaType", 5)),
    ("schemaVersion a string", _set("schemaVersion", "2")),
    ("schemaVersion true", _set("schemaVersion", True)),
    ("subject 5", _set("subject", 5)),
    ("subject null", _set("subject", None)),
    ("subject without digest", _set("subject", {"mediaType": OCI_MANIFEST, "size": 10})),
    ("subject digest invalid", _set("subject", {"mediaType": OCI_MANIFEST, "size": 10, "digest": "x"})),
]

BAD_INDEXES: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("manifests [null]", _set("manifests", [None])),
    ("manifests null", _set("manifests", None)),
    ("manifests missing", _set("manifests", "-")),
    ("manifests an object", _set("manifests", {})),
    ("entry without size", _set("manifests.0.size", "-")),
    ("entry platform 5", _set("manifests.0.platform", 5)),
    ("entry platform without os", _set("manifests.0.platform", {"architecture": "amd64"})),
    ("entry platform os 5", _set("manifests.0.platform", {"architecture": "amd64", "os": 5})),
    ("entry platform features 5", _set("manifests.0.platform", {"architecture": "a", "os": "l", "os.features": 5})),
    ("annotations [1]", _set("annotations", [1])),
    ("subject a list", _set("subject", [])),
]


def _deep(depth: int, opening: str = "[", closing: str = "]") -> str:
    return opening * depth + closing * depth


def invalid_manifests(image: Image, subject: Image) -> list[tuple[str, str, bytes]]:
    """(what is wrong, media type, body): each must be refused with MANIFEST_INVALID 400, in any store."""
    index: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {**_descriptor(subject), "platform": {"architecture": "amd64", "os": "linux"}}]}
    cases: list[tuple[str, str, bytes]] = []
    for label, change in BAD_IMAGE_MANIFESTS:
        document = _manifest_doc(image)
        change(document)
        cases.append((label, OCI_MANIFEST, json.dumps(document).encode()))
    for label, change in BAD_INDEXES:
        document = json.loads(json.dumps(index))
        change(document)
        cases.append((label, OCI_INDEX, json.dumps(document).encode()))
    # 6. Nesting deeper than any manifest needs: MANIFEST_INVALID, not a RecursionError.
    deep = _manifest_doc(image)
    cases += [
        ("100,000 nested arrays", OCI_MANIFEST, _deep(100_000).encode()),
        ("100,000 nested objects", OCI_MANIFEST, ('{"a":' * 100_000 + "1" + "}" * 100_000).encode()),
        ("deep annotations", OCI_MANIFEST,
         json.dumps({**deep, "annotations": {}}).replace('"annotations": {}', '"annotations": ' + _deep(100_000))
         .encode()),
        ("deep unknown field", OCI_MANIFEST,
         json.dumps({**deep, "x": 0}).replace('"x": 0', '"x": ' + '{"y":' * 100_000 + "1" + "}" * 100_000)
         .encode()),
    ]
    return cases


@pytest.mark.parametrize("dedupe", [True, False], ids=["dedupe", "no-dedupe"])
def test_manifests_with_wrong_json_types_are_manifest_invalid(site: SiteFactory, dedupe: bool) -> None:
    s = site(dedupe=dedupe)
    subject = make_image("subject")
    assert s.push("m", subject, "v1").status_code == 201
    image = make_image("typed", subject=_descriptor(subject), artifact_type="application/x.typed")
    assert s.push("m", image, "good").status_code == 201  # its blobs are in place; its manifest is valid
    cases = invalid_manifests(image, subject)
    tags_before = s.client.get("/v2/m/tags/list").json()["tags"]
    for label, media_type, body in cases:
        for reference in ("bad", sha256(body)):
            response = s.check(s.client.put(f"/v2/m/manifests/{reference}", content=body,
                                            headers={"Content-Type": media_type}), label, {400}, "MANIFEST_INVALID")
            assert response.status_code == 400
        s.check(s.client.get(f"/v2/m/manifests/{sha256(body)}"), f"{label}: not stored", {404})
    assert s.client.get("/v2/m/tags/list").json()["tags"] == tags_before
    referrers = s.check(s.client.get(f"/v2/m/referrers/{subject.digest}"), "referrers", {200}).json()["manifests"]
    assert [r["digest"] for r in referrers] == [image.digest]
    s.finish()


def test_docker_manifests_and_lists_and_oci_indexes_still_push(site: SiteFactory) -> None:
    s = site()
    image = make_image("docker-shapes")
    assert s.push("d", image, "oci").status_code == 201
    docker = _manifest_doc(image)
    docker["mediaType"] = DOCKER_MANIFEST
    docker["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json"
    for layer in docker["layers"]:
        layer["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    docker_body = json.dumps(docker).encode()
    s.check(s.client.put("/v2/d/manifests/docker", content=docker_body, headers={"Content-Type": DOCKER_MANIFEST}),
            "docker manifest", {201})
    entry = {"mediaType": DOCKER_MANIFEST, "digest": sha256(docker_body), "size": len(docker_body),
             "platform": {"architecture": "arm", "os": "linux", "variant": "v7", "features": ["sse4"]}}
    docker_list = {"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [entry]}
    s.check(s.client.put("/v2/d/manifests/list", content=json.dumps(docker_list).encode(),
                         headers={"Content-Type": DOCKER_LIST}), "docker manifest list", {201})
    oci_index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "annotations": {"a": "b"}, "manifests": [
        {**_descriptor(image), "platform": {"architecture": "amd64", "os": "linux", "os.version": "1",
                                            "os.features": ["x"]}, "annotations": {"k": "v"}}]}
    s.check(s.client.put("/v2/d/manifests/index", content=json.dumps(oci_index).encode(),
                         headers={"Content-Type": OCI_INDEX}), "OCI index", {201})
    # Foreign layers (urls) and an artifact with an empty config, no layers and a subject.
    foreign = _manifest_doc(image)
    foreign["layers"].append({"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar",
                              "digest": sha256(b"elsewhere"), "size": 9, "urls": ["https://example.com/x"]})
    s.check(s.client.put("/v2/d/manifests/foreign", content=json.dumps(foreign).encode(),
                         headers={"Content-Type": OCI_MANIFEST}), "foreign layer", {201})
    empty = b"{}"
    s.check(s.client.post("/v2/d/blobs/uploads/", params={"digest": sha256(empty)}, content=empty), "empty", {201})
    artifact = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/x.sig",
                "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(empty), "size": 2,
                           "data": "e30="},
                "layers": [], "subject": _descriptor(image), "annotations": {"created": "now"}}
    s.check(s.client.put("/v2/d/manifests/sig", content=json.dumps(artifact).encode(),
                         headers={"Content-Type": OCI_MANIFEST}), "artifact", {201})
    tags = s.check(s.client.get("/v2/d/tags/list"), "tags", {200}).json()["tags"]
    assert tags == ["docker", "foreign", "index", "list", "oci", "sig"]
    s.finish()


# 4. zot roots with `"manifests": null`, and damaged index.json files ------------------------------

ZOT_NULL_INDEX = b'{"schemaVersion":2,"manifests":null}'
# index.json contents no registry should have written; each repository is unreadable but nothing 500s.
DAMAGED_INDEXES: dict[str, bytes] = {
    "broken/notjson": b"{not json",
    "broken/list": b"[1, 2]",
    "broken/string": b'"index"',
    "broken/manifests-string": b'{"schemaVersion":2,"manifests":"nope"}',
    "broken/manifests-object": b'{"schemaVersion":2,"manifests":{}}',
    "broken/deep": _deep(100_000).encode(),
    "broken/binary": b"\xff\xfe\x00garbage",
}
# Entries a reader cannot use, beside a good one: the good one is served, the others kept as found.
PARTLY_BROKEN = "broken/entries"


def _zot_repository(root: Path, name: str, index: bytes, blobs: list[bytes]) -> None:
    """A repository folder as zot writes it: oci-layout, index.json and the blobs under their digests."""
    repo = root / name
    (repo / "blobs" / "sha256").mkdir(parents=True)
    (repo / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (repo / "index.json").write_bytes(index)
    for blob in blobs:
        (repo / "blobs/sha256" / sha256(blob)[7:]).write_bytes(blob)


def _zot_roots(root: Path, good: Image) -> None:
    _zot_repository(root, "zot/emptied", ZOT_NULL_INDEX, [])
    _zot_repository(root, "zot/blobsonly", ZOT_NULL_INDEX, [good.config, *good.layers])
    for name, content in DAMAGED_INDEXES.items():
        _zot_repository(root, name, content, [good.config, *good.layers])
    entries = [5, None, "x", {"mediaType": OCI_MANIFEST}, {"digest": 7}, {"digest": "sha256:nothex"},
               {"mediaType": OCI_MANIFEST, "digest": good.digest, "size": len(good.manifest), "annotations": 5},
               {"mediaType": OCI_MANIFEST, "digest": good.digest, "size": len(good.manifest),
                "annotations": {TAG_ANNOTATION: "good"}}]
    _zot_repository(root, PARTLY_BROKEN, json.dumps({"schemaVersion": 2, "manifests": entries}).encode(),
                    [good.config, *good.layers, good.manifest])


def test_zot_roots_with_null_manifests_and_damaged_indexes(site: SiteFactory) -> None:
    good = make_image("zot-root")
    s = site(prepare=lambda root: _zot_roots(root, good))
    for name in ("zot/emptied", "zot/blobsonly"):
        tags = s.check(s.client.get(f"/v2/{name}/tags/list"), f"{name}: tags", {200})
        assert tags.json() == {"name": name, "tags": []}
        s.check(s.client.get(f"/v2/{name}/manifests/latest"), f"{name}: manifest", {404}, "MANIFEST_UNKNOWN")
        s.check(s.client.get(f"/v2/{name}/manifests/{good.digest}"), f"{name}: manifest", {404}, "MANIFEST_UNKNOWN")
        refs = s.check(s.client.get(f"/v2/{name}/referrers/{good.digest}"), f"{name}: referrers", {200})
        assert refs.json()["manifests"] == []
        s.check(s.client.delete(f"/v2/{name}/manifests/{good.digest}"), f"{name}: delete", {404}, "MANIFEST_UNKNOWN")
    blobsonly = "zot/blobsonly"
    assert s.client.get(f"/v2/{blobsonly}/blobs/{sha256(good.layers[0])}").content == good.layers[0]
    s.check(s.client.put(f"/v2/{blobsonly}/manifests/v1", content=good.manifest,
                         headers={"Content-Type": OCI_MANIFEST}), "manifest PUT on a null root", {201})
    assert s.client.get(f"/v2/{blobsonly}/tags/list").json()["tags"] == ["v1"]
    s.assert_pulls(blobsonly, good, "v1")
    assert s.push("zot/emptied", good, "v2").status_code == 201
    assert s.client.get("/v2/zot/emptied/tags/list").json()["tags"] == ["v2"]

    for name, content in DAMAGED_INDEXES.items():
        answers = [
            s.client.get(f"/v2/{name}/tags/list"),
            s.client.get(f"/v2/{name}/manifests/v1"),
            s.client.head(f"/v2/{name}/manifests/{good.digest}"),
            s.client.get(f"/v2/{name}/referrers/{good.digest}"),
            s.client.put(f"/v2/{name}/manifests/v1", content=good.manifest, headers={"Content-Type": OCI_MANIFEST}),
            s.client.delete(f"/v2/{name}/manifests/{good.digest}"),
            s.client.get(f"/v2/{name}/blobs/{sha256(good.layers[0])}"),
        ]
        for answer in answers:
            s.check(answer, f"damaged {name}: {answer.request.method} {answer.request.url.path}")
        assert answers[0].status_code == 404 and "NAME_UNKNOWN" in oci_error_codes(answers[0]), answers[0].text
        assert answers[4].status_code == 404 and "NAME_UNKNOWN" in oci_error_codes(answers[4]), answers[4].text
        assert (s.root / name / "index.json").read_bytes() == content, f"{name}: its index.json was rewritten"

    tags = s.check(s.client.get(f"/v2/{PARTLY_BROKEN}/tags/list"), "partly broken: tags", {200})
    assert tags.json()["tags"] == ["good"]
    s.assert_pulls(PARTLY_BROKEN, good, "good")
    s.check(s.client.get(f"/v2/{PARTLY_BROKEN}/referrers/{good.digest}"), "partly broken: referrers", {200})
    before = json.loads((s.root / PARTLY_BROKEN / "index.json").read_bytes())["manifests"]
    s.check(s.client.put(f"/v2/{PARTLY_BROKEN}/manifests/v2", content=good.manifest,
                         headers={"Content-Type": OCI_MANIFEST}), "partly broken: push", {201})
    after = json.loads((s.root / PARTLY_BROKEN / "index.json").read_bytes())["manifests"]
    assert [e for e in before if not _usable(e)] == [e for e in after if not _usable(e)], "foreign entries lost"
    assert s.client.get(f"/v2/{PARTLY_BROKEN}/tags/list").json()["tags"] == ["good", "v2"]
    catalog = s.check(s.client.get("/v2/_catalog"), "catalog", {200})
    assert {"zot/emptied", "zot/blobsonly"} <= set(catalog.json()["repositories"])

    # The damaged files were the test's: gone, the rest of the root must be whole.
    for name in DAMAGED_INDEXES:
        (s.root / name / "index.json").unlink()
    s.finish()


def _usable(entry: Any) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("digest"), str) and entry["digest"].startswith("sha256:")
            and len(entry["digest"]) == 71 and isinstance(entry.get("annotations", {}), dict))


# 7. A full disk ------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[Path], None]]:
    """Mounts a 2 MiB tmpfs at the root directory a site is about to use; unmounted at the end."""
    mounted: list[Path] = []

    def mount(root: Path) -> None:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root: this test fills a small filesystem")
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(root)], capture_output=True,
                                text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}): this test fills a small filesystem")
        mounted.append(root)

    yield mount
    for root in mounted:
        subprocess.run(["umount", "-l", str(root)], check=False)


@pytest.mark.parametrize("dedupe", [True, False], ids=["dedupe", "no-dedupe"])
def test_a_full_disk_is_507_keeps_reads_and_damages_nothing(site: SiteFactory, small_disk: Callable[[Path], None],
                                                            dedupe: bool) -> None:
    s = site(dedupe=dedupe, before_start=small_disk)
    # An acknowledged chunked session holding space, released at the end to make room again.
    held = os.urandom(400 << 10)
    holder = s.check(s.client.post("/v2/full/held/blobs/uploads/"), "start", {202}).headers["Location"]
    s.check(s.client.patch(holder, content=held, headers={**OCTETS, "Content-Range": f"0-{len(held) - 1}"}),
            "held chunk", {202})
    pushed: list[tuple[str, Image]] = []
    refused: list[httpx.Response] = []
    for i in range(40):
        image = make_image(f"full-{i}", layer_sizes=(96 << 10,))
        repo = f"full/r{i % 3}"
        answers = []
        for blob in [image.config, *image.layers]:
            answers.append(s.check(s.client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(blob)},
                                                 content=blob, headers=OCTETS), f"push {i}", {201, 507}))
        if all(a.status_code == 201 for a in answers):
            answers.append(s.check(s.client.put(f"/v2/{repo}/manifests/t{i}", content=image.manifest,
                                                headers={"Content-Type": OCI_MANIFEST}), f"manifest {i}", {201, 507}))
        refused += [a for a in answers if a.status_code == 507]
        if all(a.status_code == 201 for a in answers):
            pushed.append((repo, image))
        elif len(refused) >= 2:
            break
    assert refused, "the 2 MiB disk never filled"
    assert pushed, "nothing fitted on the disk"
    for answer in refused:
        error = answer.json()["errors"][0]
        assert "storage" in error["message"].lower(), error
    # While full: a chunk, a session close and a manifest are refused cleanly too; reads go on.
    big = os.urandom(1 << 20)
    session = s.check(s.client.post("/v2/full/chunked/blobs/uploads/"), "start while full", {202, 507})
    if session.status_code == 202:
        location = session.headers["Location"]
        s.check(s.client.patch(location, content=big, headers={**OCTETS, "Content-Range": f"0-{len(big) - 1}"}),
                "chunk while full", {507})
        status = s.check(s.client.get(location), "session status after a refused chunk", {204})
        assert status.headers["Range"] == "0-0", "a refused chunk left bytes in the session"
        s.check(s.client.put(location, params={"digest": sha256(big)}, content=big, headers=OCTETS),
                "close while full", {507})
        s.check(s.client.delete(location), "cancel", {204})
    for i, (repo, image) in enumerate(pushed):
        s.assert_pulls(repo, image, _tag_of(pushed, i))
    s.check(s.client.get("/v2/_catalog"), "catalog while full", {200})
    s.check(s.client.get("/v2/full/r0/tags/list"), "tags while full", {200})
    leftovers = [p for p in s.root.rglob("*") if p.name.startswith((".tmp-", ".blob-", ".mount-"))]
    assert leftovers == [], leftovers
    assert_root_intact(s.root)
    # Space comes back: cancelling the held session (and, without dedupe, deleting a blob) frees it.
    s.check(s.client.delete(holder), "cancel the held session", {204})
    if not dedupe:
        repo, image = pushed[-1]
        s.check(s.client.delete(f"/v2/{repo}/manifests/{image.digest}"), "delete a manifest", {202})
        for blob in image.layers:
            s.check(s.client.delete(f"/v2/{repo}/blobs/{sha256(blob)}"), "delete a layer", {202})
        pushed.pop()
    again = make_image("after-full", layer_sizes=(64 << 10,))
    assert s.push("full/again", again, "v1").status_code == 201
    s.assert_pulls("full/again", again, "v1")
    for i, (repo, image) in enumerate(pushed):
        s.assert_pulls(repo, image, _tag_of(pushed, i))
    s.finish()


def _tag_of(pushed: list[tuple[str, Image]], i: int) -> str:
    seed = json.loads(pushed[i][1].config)["seed"]
    return "t" + str(seed).removeprefix("full-")
