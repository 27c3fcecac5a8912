"""The sync extension's upstream client (registry/sync/upstream.py) against real registries on loopback:
distribution 2.8.2 and, when built, 3.x (tests/support/upstreams.py), and ours for the referrers API.

Bearer token auth is not exercised here against a server: no token server is installed (the client's
challenge parsing is checked alone below)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from zot_registry.sync.upstream import (
    CHUNK,
    NotFound,
    Unauthorized,
    Unavailable,
    Upstream,
    UpstreamError,
    UpstreamSettings,
    _origin_of,
    parse_challenges,
)

from tests.support.images import OCI_MANIFEST, make_image, push_image, sha256
from tests.support.ports import free_port
from tests.support.registry import RegistryProcess
from tests.support.upstreams import KINDS, PASSWORD, USER, Kind, UpstreamRegistry, missing, running_upstream

T = TypeVar("T")
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
Mode = str  # "plain", "tls", "mtls", "htpasswd"


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


async def using(settings: UpstreamSettings, call: Callable[[Upstream], Coroutine[Any, Any, T]]) -> tuple[T, int]:
    """`call`'s result with a new client, and the number of requests it sent."""
    async with Upstream(settings) as upstream:
        result = await call(upstream)
        return result, upstream.requests_made


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Callable[[Kind, Mode], UpstreamRegistry]]:
    """One registry per (kind, mode) for the module, started when first asked for."""
    started: dict[tuple[Kind, Mode], UpstreamRegistry] = {}
    with contextlib.ExitStack() as stack:

        def get(kind: Kind, mode: Mode) -> UpstreamRegistry:
            reason = missing(kind)
            if reason:
                print(f"skipped: {reason}")
                pytest.skip(reason)
            if (kind, mode) not in started:
                started[(kind, mode)] = stack.enter_context(
                    running_upstream(kind, tls=mode == "tls", client_certs=mode == "mtls", htpasswd=mode == "htpasswd")
                )
            return started[(kind, mode)]

        yield get


kinds = pytest.mark.parametrize("kind", KINDS)


def settings_for(up: UpstreamRegistry, **overrides: Any) -> UpstreamSettings:
    values: dict[str, Any] = {"urls": (up.url,), "cert_dir": str(up.cert_dir) if up.cert_dir else None}
    if up.credentials:
        values["credentials"] = {up.hostport: up.credentials}
    values.update(overrides)
    return UpstreamSettings(**values)


# Plain HTTP: manifests, blobs, and what was sent -----------------------------------------------------


@kinds
def test_manifest_head_and_blobs_with_request_counts(upstreams: Callable[..., UpstreamRegistry], kind: Kind) -> None:
    up = upstreams(kind, "plain")
    image = make_image(f"plain-{kind}", (1024, 4096))
    digest = up.push("plain/app", image, "v1")
    mark = up.mark()

    async def pull(upstream: Upstream) -> tuple[Any, ...]:
        by_tag = await upstream.get_manifest("plain/app", "v1")
        by_digest = await upstream.get_manifest("plain/app", digest)
        head = await upstream.head_manifest("plain/app", "v1")
        blobs = []
        for blob in [image.config, *image.layers]:
            async with upstream.open_blob("plain/app", sha256(blob)) as opened:
                blobs.append((opened.size, b"".join([chunk async for chunk in opened])))
        return by_tag, by_digest, head, blobs

    (by_tag, by_digest, head, blobs), sent = run(using(settings_for(up), pull))
    assert by_tag.data == image.manifest and by_digest.data == image.manifest
    assert by_tag.digest == by_digest.digest == digest
    assert by_tag.media_type == OCI_MANIFEST and by_tag.url == up.url
    assert head == (digest, OCI_MANIFEST, len(image.manifest))
    assert blobs == [(len(b), b) for b in [image.config, *image.layers]]
    # One probe of /v2/, two manifest GETs, one HEAD, one GET per blob: counted alike on both sides.
    assert sent == 1 + 2 + 1 + 3
    received = up.requests_since(mark)
    assert [(r.method, r.path, r.status) for r in received] == [
        ("GET", "/v2/", 200),
        ("GET", "/v2/plain/app/manifests/v1", 200),
        ("GET", f"/v2/plain/app/manifests/{digest}", 200),
        ("HEAD", "/v2/plain/app/manifests/v1", 200),
        *[("GET", f"/v2/plain/app/blobs/{sha256(b)}", 200) for b in [image.config, *image.layers]],
    ]


@kinds
def test_missing_things_are_not_found(upstreams: Callable[..., UpstreamRegistry], kind: Kind) -> None:
    up = upstreams(kind, "plain")
    up.push_image("present/app", "v1")
    absent_digest = sha256(b"nothing")

    async def attempts(upstream: Upstream) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = []
        calls: list[Callable[[], Coroutine[Any, Any, Any]]] = [
            lambda: upstream.get_manifest("present/app", "nope"),
            lambda: upstream.get_manifest("absent/app", "v1"),
            lambda: upstream.get_manifest("present/app", absent_digest),
            lambda: upstream.head_manifest("present/app", "nope"),
            lambda: upstream.tags("absent/app"),
        ]
        for call in calls:
            try:
                await call()
                outcomes.append(None)
            except UpstreamError as err:
                outcomes.append(err)
        try:
            async with upstream.open_blob("present/app", absent_digest):
                outcomes.append(None)
        except UpstreamError as err:
            outcomes.append(err)
        return outcomes

    outcomes, sent = run(using(settings_for(up), attempts))
    assert all(isinstance(err, NotFound) for err in outcomes), outcomes
    assert all(isinstance(err, NotFound) and err.status == 404 for err in outcomes)
    assert sent == 1 + len(outcomes)  # no retries of a 404


def test_invalid_names_are_refused_before_any_request() -> None:
    async def check(upstream: Upstream) -> None:
        for repo, reference in [("../etc", "v1"), ("Upper", "v1"), ("ok", "bad tag"), ("ok", "sha256:xyz")]:
            with pytest.raises(ValueError):
                await upstream.get_manifest(repo, reference)

    _, sent = run(using(UpstreamSettings(urls=(f"http://127.0.0.1:{free_port()}",)), check))
    assert sent == 0


@kinds
def test_digest_reference_must_match_the_bytes(upstreams: Callable[..., UpstreamRegistry], kind: Kind) -> None:
    """A registry that serves other bytes for a digest (its stored manifest replaced on disk) is caught."""
    up = upstreams(kind, "plain")
    image = make_image(f"tampered-{kind}", (512,))
    digest = up.push("tampered/app", image, "v1")
    stored = up.root / "docker/registry/v2/blobs/sha256" / digest[7:9] / digest[7:] / "data"
    assert stored.read_bytes() == image.manifest
    stored.write_bytes(image.manifest.replace(b'"schemaVersion": 2', b'"schemaVersion":2'))

    async def fetch(upstream: Upstream) -> None:
        await upstream.get_manifest("tampered/app", digest)

    with pytest.raises(UpstreamError, match="hashes to") as caught:
        run(using(settings_for(up), fetch))
    assert not isinstance(caught.value, NotFound | Unavailable | Unauthorized)


# TLS -------------------------------------------------------------------------------------------


@kinds
def test_tls_with_cert_dir_ca(upstreams: Callable[..., UpstreamRegistry], kind: Kind) -> None:
    up = upstreams(kind, "tls")
    digest = up.push_image("tls/app", "v1")
    fetched, _ = run(using(settings_for(up), lambda u: u.get_manifest("tls/app", "v1")))
    assert fetched.digest == digest and fetched.url.startswith("https://")

    # Without the CA, the system trust store does not know the throwaway CA.
    with pytest.raises(Unavailable, match=r"(?i)certificate"):
        run(using(settings_for(up, cert_dir=None), lambda u: u.get_manifest("tls/app", "v1")))


@kinds
def test_tls_verify_false_without_ca(upstreams: Callable[..., UpstreamRegistry], kind: Kind) -> None:
    up = upstreams(kind, "tls")
    digest = up.push_image("noverify/app", "v1")
    settings = settings_for(up, cert_dir=None, tls_verify=False)
    fetched, _ = run(using(settings, lambda u: u.get_manifest("noverify/app", "v1")))
    assert fetched.digest == digest


@kinds
def test_client_certificate_from_cert_dir(
    upstreams: Callable[..., UpstreamRegistry], kind: Kind, tmp_path: Path
) -> None:
    up = upstreams(kind, "mtls")
    assert up.cert_dir is not None
    digest = up.push_image("mtls/app", "v1")
    fetched, _ = run(using(settings_for(up), lambda u: u.get_manifest("mtls/app", "v1")))
    assert fetched.digest == digest

    only_ca = tmp_path / "certs.d"
    only_ca.mkdir()
    (only_ca / "ca.crt").write_bytes((up.cert_dir / "ca.crt").read_bytes())
    with pytest.raises(Unavailable):
        run(using(settings_for(up, cert_dir=str(only_ca)), lambda u: u.get_manifest("mtls/app", "v1")))


# htpasswd Basic --------------------------------------------------------------------------------


@kinds
def test_basic_credentials_by_host_and_port(upstreams: Callable[..., UpstreamRegistry], kind: Kind) -> None:
    up = upstreams(kind, "htpasswd")
    digest = up.push_image("basic/app", "v1")
    mark = up.mark()

    async def pull_concurrently(upstream: Upstream) -> list[str]:
        results = await asyncio.gather(*(upstream.get_manifest("basic/app", "v1") for _ in range(20)))
        return [r.digest for r in results]

    digests, sent = run(using(settings_for(up), pull_concurrently))
    assert digests == [digest] * 20
    # One shared probe learns Basic; every manifest GET then carries the credentials from the start.
    assert sent == 21
    received = [(r.method, r.path, r.status) for r in up.requests_since(mark)]
    assert received.count(("GET", "/v2/", 401)) == 1
    assert received.count(("GET", "/v2/basic/app/manifests/v1", 200)) == 20
    assert len(received) == 21

    # Keyed by the host alone works too.
    by_host = settings_for(up, credentials={"127.0.0.1": (USER, PASSWORD)})
    fetched, _ = run(using(by_host, lambda u: u.get_manifest("basic/app", "v1")))
    assert fetched.digest == digest


@kinds
def test_wrong_or_missing_credentials_are_unauthorized(upstreams: Callable[..., UpstreamRegistry], kind: Kind) -> None:
    up = upstreams(kind, "htpasswd")
    up.push_image("basic/secret", "v1")
    wrong = settings_for(up, credentials={up.hostport: (USER, "not-the-password")}, max_retries=3)
    with pytest.raises(Unauthorized) as caught:
        run(using(wrong, lambda u: u.get_manifest("basic/secret", "v1")))
    assert caught.value.status == 401

    async def refused_requests(upstream: Upstream) -> int:
        with pytest.raises(Unauthorized):
            await upstream.get_manifest("basic/secret", "v1")
        return upstream.requests_made

    # The probe, and one GET with the wrong credentials: not retried (each costs the upstream a bcrypt).
    assert run(_count(wrong, refused_requests)) == 2
    anonymous = settings_for(up, credentials={})
    with pytest.raises(Unauthorized, match="no credentials"):
        run(using(anonymous, lambda u: u.get_manifest("basic/secret", "v1")))


async def _count(settings: UpstreamSettings, call: Callable[[Upstream], Coroutine[Any, Any, int]]) -> int:
    async with Upstream(settings) as upstream:
        return await call(upstream)


# Mirrors and retries -----------------------------------------------------------------------------


@kinds
def test_dead_first_url_then_mirror(upstreams: Callable[..., UpstreamRegistry], kind: Kind) -> None:
    up = upstreams(kind, "plain")
    digest = up.push_image("mirrored/app", "v1")
    dead = f"http://127.0.0.1:{free_port()}"
    settings = UpstreamSettings(urls=(dead, up.url), max_retries=2, retry_delay=0.01)
    fetched, sent = run(using(settings, lambda u: u.get_manifest("mirrored/app", "v1")))
    assert fetched.digest == digest and fetched.url == up.url
    assert sent == 3 + 2  # the dead URL's probe tried 1 + 2 times, then the mirror's probe and GET

    # Nobody there: Unavailable. A URL that answered "not found" wins over one that did not answer.
    with pytest.raises(Unavailable):
        run(using(UpstreamSettings(urls=(dead,)), lambda u: u.get_manifest("mirrored/app", "v1")))
    with pytest.raises(NotFound) as caught:
        run(using(UpstreamSettings(urls=(up.url, dead)), lambda u: u.get_manifest("mirrored/app", "absent")))
    assert any(dead in note for note in caught.value.__notes__)


# Listings ------------------------------------------------------------------------------------------


@kinds
def test_tags_and_catalog_follow_pagination(upstreams: Callable[..., UpstreamRegistry], kind: Kind) -> None:
    up = upstreams(kind, "plain")
    image = make_image(f"paged-{kind}", (256,))
    tags = tuple(f"t{i:02d}" for i in range(7))
    up.push("paged/app", image, tags=tags)
    for i in range(5):
        up.push(f"paged/repo{i}", image, "v1")
    with up.client() as http:
        every_repo = http.get("/v2/_catalog", params={"n": 1000}).json()["repositories"]
    mark = up.mark()

    async def list_all(upstream: Upstream) -> tuple[list[str], list[str]]:
        return await upstream.tags("paged/app", page_size=2), await upstream.catalog(page_size=2)

    (listed_tags, repositories), sent = run(using(UpstreamSettings(urls=(up.url,)), list_all))
    assert sorted(listed_tags) == list(tags)
    assert repositories == every_repo and len(every_repo) >= 6
    received = up.requests_since(mark)
    tag_pages = [r for r in received if r.path == "/v2/paged/app/tags/list"]
    catalog_pages = [r for r in received if r.path == "/v2/_catalog"]
    assert len(catalog_pages) >= len(every_repo) // 2
    # distribution 2.8 ignores `n` for tags (all in one answer); 3.x pages them.
    assert len(tag_pages) == (1 if kind == "distribution2" else 4)
    assert sent == 1 + len(tag_pages) + len(catalog_pages) == len(received)
    assert all("n=2" in r.uri for r in tag_pages + catalog_pages)


# Blobs -------------------------------------------------------------------------------------------


@kinds
def test_open_blob_streams_32_mib(upstreams: Callable[..., UpstreamRegistry], kind: Kind) -> None:
    up = upstreams(kind, "plain")
    image = make_image(f"big-{kind}", (32 << 20,))
    up.push("big/app", image, "v1")
    layer = sha256(image.layers[0])

    async def stream(upstream: Upstream) -> tuple[int, str, int, int]:
        hasher = hashlib.sha256()
        largest = count = 0
        async with upstream.open_blob("big/app", layer) as blob:
            size = blob.size
            async for chunk in blob:
                hasher.update(chunk)
                largest = max(largest, len(chunk))
                count += len(chunk)
        return size, "sha256:" + hasher.hexdigest(), largest, count

    (size, digest, largest, count), _ = run(using(UpstreamSettings(urls=(up.url,)), stream))
    assert size == count == 32 << 20
    assert digest == layer
    assert largest <= CHUNK


# Referrers -------------------------------------------------------------------------------------------


@kinds
def test_referrers_fallback_tag(upstreams: Callable[..., UpstreamRegistry], kind: Kind) -> None:
    """distribution has no referrers API (404): the client reads the tag schema's index."""
    up = upstreams(kind, "plain")
    subject_image = make_image(f"subject-{kind}", (128,))
    subject = up.push("refs/app", subject_image, "v1")
    descriptor = {"mediaType": OCI_MANIFEST, "digest": subject, "size": len(subject_image.manifest)}
    referrer = make_image(f"sbom-{kind}", (64,), subject=descriptor, artifact_type="application/example.sbom")
    referrer_digest = up.push("refs/app", referrer)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": referrer_digest,
                "size": len(referrer.manifest),
                "artifactType": "application/example.sbom",
            }
        ],
    }
    with up.client() as http:
        up.push_manifest(http, "refs/app", f"sha256-{subject[7:]}", json.dumps(index).encode(), OCI_INDEX)

    found, _ = run(using(UpstreamSettings(urls=(up.url,)), lambda u: u.referrers("refs/app", subject)))
    assert [m["digest"] for m in found["manifests"]] == [referrer_digest]

    other = up.push_image("refs/app", "v2")
    with pytest.raises(NotFound):
        run(using(UpstreamSettings(urls=(up.url,)), lambda u: u.referrers("refs/app", other)))


def test_referrers_api_of_ours(start_registry: Callable[..., RegistryProcess]) -> None:
    registry = start_registry(workers=1)
    subject_image = make_image("ours-subject", (128,))
    descriptor = {"mediaType": OCI_MANIFEST, "digest": subject_image.digest, "size": len(subject_image.manifest)}
    referrer = make_image("ours-sbom", (64,), subject=descriptor, artifact_type="application/example.sbom")
    with httpx.Client(base_url=registry.url, timeout=30) as http:
        assert push_image(http, "refs/ours", subject_image, "v1").status_code == 201
        assert push_image(http, "refs/ours", referrer).status_code == 201

    found, sent = run(
        using(UpstreamSettings(urls=(registry.url,)), lambda u: u.referrers("refs/ours", subject_image.digest))
    )
    assert [m["digest"] for m in found["manifests"]] == [referrer.digest]
    assert sent == 2  # the probe and the referrers API, no fallback tag


# Pure parts ------------------------------------------------------------------------------------------


def test_docker_hub_url_is_mapped() -> None:
    assert _origin_of("https://docker.io")[0] == "https://registry-1.docker.io"
    assert _origin_of("https://index.docker.io/")[0] == "https://registry-1.docker.io"
    assert _origin_of("https://ghcr.io")[0] == "https://ghcr.io"
    assert _origin_of("http://127.0.0.1:5000")[0] == "http://127.0.0.1:5000"
    for bad in ("ftp://x", "https://host/prefix", "127.0.0.1:5000"):
        with pytest.raises(ValueError):
            _origin_of(bad)


def test_challenges_are_parsed() -> None:
    [bearer] = parse_challenges(
        ['Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull"']
    )
    assert bearer.scheme == "bearer"
    assert bearer.params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:a/b:pull",
    }
    basic, second = parse_challenges(['Basic realm="x, y", Bearer realm="https://t/token"'])
    assert (basic.scheme, basic.params) == ("basic", {"realm": "x, y"})
    assert (second.scheme, second.params) == ("bearer", {"realm": "https://t/token"})
    assert parse_challenges([""]) == []
    [bare] = parse_challenges(["Negotiate"])
    assert (bare.scheme, bare.params) == ("negotiate", {})
