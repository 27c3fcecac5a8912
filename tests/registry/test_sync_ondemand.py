"""On-demand sync (a pull-through cache) against real upstream registries on loopback: Debian's
distribution 2.8.2 with TLS and htpasswd (the CA in a zot certDir, the password in a zot
credentials file), pulled through `zot-registry serve` by skopeo, crane and oras."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.commands import run
from tests.support.images import blob_files, make_image, sha256
from tests.support.paths import tool
from tests.support.ports import free_port
from tests.support.process_groups import die_with_parent
from tests.support.registry import RegistryProcess, registry_config
from tests.support.upstreams import BINARIES, ENV, KINDS, Kind, UpstreamRegistry, missing, running_upstream

ACCEPT = {
    "Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json"
}


def sync_stanza(upstream: UpstreamRegistry, folder: Path, **registry: Any) -> dict[str, Any]:
    """extensions.sync for one upstream, on demand, with its CA as certDir and its password in a file."""
    stanza: dict[str, Any] = {
        "enable": True,
        "registries": [
            {"urls": [upstream.url], "onDemand": True, "tlsVerify": True, "certDir": str(upstream.cert_dir), **registry}
        ],
    }
    if upstream.credentials:
        folder.mkdir(parents=True, exist_ok=True)
        credentials = folder / "credentials.json"
        user, password = upstream.credentials
        credentials.write_text(json.dumps({upstream.hostport: {"username": user, "password": password}}))
        stanza["credentialsFile"] = str(credentials)
    return stanza


def start_cache(folder: Path, stanza: dict[str, Any], workers: int = 2) -> RegistryProcess:
    folder.mkdir(parents=True, exist_ok=True)
    config = registry_config(folder / "root", free_port())
    config["extensions"] = {"sync": stanza}
    return RegistryProcess(folder / "config.json", config, folder / "registry.log", workers=workers).start()


@pytest.fixture(scope="module", params=KINDS)
def upstream(request: pytest.FixtureRequest) -> Iterator[UpstreamRegistry]:
    """Each distribution version in turn, with TLS (its CA as certDir) and htpasswd."""
    kind: Kind = request.param
    reason = missing(kind)
    if reason:
        pytest.skip(reason)
    with running_upstream(kind, tls=True, htpasswd=True) as started:
        yield started


@pytest.fixture(scope="module")
def cache(upstream: UpstreamRegistry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    folder = tmp_path_factory.mktemp("cache")
    with start_cache(folder, sync_stanza(upstream, folder)) as started:
        yield started


def wait_stored(cache: RegistryProcess, repo: str, digest: str, timeout: float = 60) -> None:
    """Until the cache has stored the manifest `digest` (stored last, after every blob it names): a
    pull is answered while the image is still being copied."""
    path = cache.root / repo / "blobs" / "sha256" / digest.removeprefix("sha256:")
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{repo}@{digest} was not stored in {timeout}s"
        time.sleep(0.02)


def skopeo(*args: str) -> str:
    return run(tool("skopeo"), "--insecure-policy", *args)


def upstream_digest(upstream: UpstreamRegistry, repo: str, tag: str) -> str:
    with upstream.client() as http:
        answer = http.get(f"/v2/{repo}/manifests/{tag}", headers=ACCEPT)
        assert answer.status_code == 200, answer.text
        return str(answer.headers["Docker-Content-Digest"])


def test_skopeo_crane_and_oras_pull_through_the_cache_byte_identically(
    upstream: UpstreamRegistry, cache: RegistryProcess, tmp_path: Path
) -> None:
    image = make_image("pull-through", (300_000, 2_000_000, 17))
    digest = upstream.push("library/app", image, "1.0")
    # Nothing is stored before the first pull.
    with httpx.Client(base_url=cache.url) as http:
        assert http.get("/v2/_catalog").json()["repositories"] == []
    pulled = tmp_path / "pulled"
    skopeo(
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        f"docker://{cache.hostport}/library/app:1.0",
        f"oci:{pulled}:1.0",
    )
    blobs = blob_files(pulled)
    for blob in [image.config, *image.layers]:
        assert blobs[sha256(blob).removeprefix("sha256:")] == blob
    assert blobs[digest.removeprefix("sha256:")] == image.manifest
    assert run(tool("crane"), "digest", "--insecure", f"{cache.hostport}/library/app:1.0").strip() == digest
    fetched = run(tool("oras"), "manifest", "fetch", "--plain-http", f"{cache.hostport}/library/app:1.0")
    assert fetched.encode() == image.manifest or json.loads(fetched) == json.loads(image.manifest)
    # Stored here now, under the same digest, and listed.
    with httpx.Client(base_url=cache.url) as http:
        assert "library/app" in http.get("/v2/_catalog").json()["repositories"]
        assert http.get("/v2/library/app/tags/list").json()["tags"] == ["1.0"]
        assert http.get(f"/v2/library/app/manifests/{digest}").content == image.manifest
        # What was synced shows in the metrics: per upstream, and when the repository last synced.
        metrics = http.get("/metrics").text
        assert f'zot_sync_images_total{{registry="{upstream.url}"}}' in metrics
        assert 'zot_sync_last_success_timestamp_seconds{repository="library/app"}' in metrics


def test_a_multi_platform_index_is_synced_with_every_child(
    upstream: UpstreamRegistry, cache: RegistryProcess, tmp_path: Path
) -> None:
    children = [make_image(f"platform-{arch}", (4096,)) for arch in ("amd64", "arm64")]
    with upstream.client() as http:
        for child in children:
            upstream.push("multi/app", child)
        index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": child.digest,
                        "size": len(child.manifest),
                        "platform": {"architecture": arch, "os": "linux"},
                    }
                    for child, arch in zip(children, ("amd64", "arm64"), strict=True)
                ],
            }
        ).encode()
        upstream.push_manifest(http, "multi/app", "v2", index, "application/vnd.oci.image.index.v1+json")
    with httpx.Client(base_url=cache.url, timeout=60) as http:
        got = http.get("/v2/multi/app/manifests/v2", headers=ACCEPT)
        assert got.status_code == 200, got.text
        assert got.content == index
        for child in children:
            assert http.get(f"/v2/multi/app/manifests/{child.digest}", headers=ACCEPT).content == child.manifest
            blob = http.get(f"/v2/multi/app/blobs/{sha256(child.layers[0])}")
            assert blob.content == child.layers[0]


def test_twenty_concurrent_pulls_of_an_uncached_image_make_one_upstream_fetch(
    upstream: UpstreamRegistry, cache: RegistryProcess
) -> None:
    image = make_image("concurrent", (1 << 20, 3 << 20))
    digest = upstream.push("team/busy", image, "v1")
    mark = upstream.mark()
    barrier = threading.Barrier(20)

    def pull(_: int) -> tuple[int, str]:
        with httpx.Client(base_url=cache.url, timeout=60) as http:
            barrier.wait(timeout=30)
            answer = http.get("/v2/team/busy/manifests/v1", headers=ACCEPT)
            return answer.status_code, answer.headers.get("Docker-Content-Digest", answer.text)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(pull, range(20)))
    assert answers == [(200, digest)] * 20
    wait_stored(cache, "team/busy", digest)
    seen = [r for r in upstream.requests_since(mark) if r.path.startswith("/v2/team/busy/") and r.status < 400]
    manifest_gets = [r for r in seen if r.method == "GET" and "/manifests/" in r.path]
    blob_gets = sorted(r.path for r in seen if r.method == "GET" and "/blobs/" in r.path)
    assert len(manifest_gets) == 1, seen
    assert blob_gets == sorted(f"/v2/team/busy/blobs/{sha256(b)}" for b in [image.config, *image.layers]), seen


def test_a_stored_digest_is_served_without_asking_the_upstream(
    upstream: UpstreamRegistry, cache: RegistryProcess
) -> None:
    image = make_image("by-digest", (2048,))
    digest = upstream.push("team/pinned", image, "v1")
    with httpx.Client(base_url=cache.url, timeout=60) as http:
        assert http.get(f"/v2/team/pinned/manifests/{digest}", headers=ACCEPT).status_code == 200
        wait_stored(cache, "team/pinned", digest)
        mark = upstream.mark()
        assert http.get(f"/v2/team/pinned/manifests/{digest}", headers=ACCEPT).status_code == 200
        assert http.head(f"/v2/team/pinned/manifests/{digest}", headers=ACCEPT).status_code == 200
    assert [r for r in upstream.requests_since(mark) if "/team/pinned/" in r.path] == []


def test_a_tag_moved_upstream_is_synced_again(upstream: UpstreamRegistry, cache: RegistryProcess) -> None:
    first, second = make_image("moving-1", (1000,)), make_image("moving-2", (1000,))
    upstream.push("team/moving", first, "stable")
    with httpx.Client(base_url=cache.url, timeout=60) as http:
        assert http.get("/v2/team/moving/manifests/stable", headers=ACCEPT).content == first.manifest
        wait_stored(cache, "team/moving", first.digest)
        upstream.push("team/moving", second, "stable")
        assert http.get("/v2/team/moving/manifests/stable", headers=ACCEPT).content == second.manifest


def test_names_no_upstream_has_are_not_found(cache: RegistryProcess) -> None:
    with httpx.Client(base_url=cache.url, timeout=60) as http:
        answer = http.get("/v2/nobody/has-this/manifests/v1", headers=ACCEPT)
        assert answer.status_code == 404
        assert answer.json()["errors"][0]["code"] in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN")


def _restart(upstream: UpstreamRegistry) -> subprocess.Popen[bytes]:
    """The same distribution again, on the same port, folder and data (the fixture's config file)."""
    with upstream.access_log.open("ab") as out, upstream.log.open("ab") as err:
        return subprocess.Popen(
            [str(BINARIES[upstream.kind]), "serve", str(upstream.folder / "config.yml")],
            cwd=upstream.folder,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env={**os.environ, **ENV},
            start_new_session=True,
            preexec_fn=die_with_parent,
        )


def _wait_answers(url: str, ca: Path, deadline: float) -> None:
    trust = ssl.create_default_context(cafile=str(ca))
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/v2/", verify=trust, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not come back")


def _wait_spooling(cache: RegistryProcess, at_least: int = 1 << 20, timeout: float = 60) -> None:
    """Until a blob being synced has more than `at_least` bytes in the cache's spool."""
    spool = cache.root / ".sync" / "spool"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            if any(p.stat().st_size > at_least for p in spool.glob("*.part")):
                return
        time.sleep(0.002)
    raise AssertionError("no blob started to arrive")


def _read_some(chunks: Iterator[bytes], wanted: int) -> bytes:
    got = b""
    for chunk in chunks:
        got += chunk
        if len(got) >= wanted:
            break
    return got


def test_a_pull_streams_before_the_image_is_stored(tmp_path: Path) -> None:
    """The upstream frozen (SIGSTOP) with the big layer part copied: the manifest has been answered and
    the layer's first bytes reach the client, though the image cannot be whole yet; then it completes."""
    with running_upstream("distribution2", tls=True, htpasswd=True, folder=tmp_path / "upstream") as upstream:
        image = make_image("streamed", (4096, 96 << 20))
        digest = upstream.push("big/stream", image, "v1")
        layer = sha256(image.layers[1])
        cache = start_cache(tmp_path / "cache", sync_stanza(upstream, tmp_path / "cache"))
        with cache, httpx.Client(base_url=cache.url, timeout=60) as http:
            answer = http.get("/v2/big/stream/manifests/v1", headers=ACCEPT)
            assert answer.status_code == 200 and answer.content == image.manifest
            with http.stream("GET", f"/v2/big/stream/blobs/{layer}") as blob:
                assert blob.status_code == 200
                assert int(blob.headers["Content-Length"]) == len(image.layers[1])
                chunks = blob.iter_raw(1 << 16)
                _wait_spooling(cache)
                os.killpg(upstream.process.pid, signal.SIGSTOP)
                try:
                    first = _read_some(chunks, 1 << 20)
                    assert first == image.layers[1][: len(first)]
                    # The upstream is frozen mid-layer: the image is not stored, so not listed.
                    tags = http.get("/v2/big/stream/tags/list")
                    assert tags.status_code == 404 or "v1" not in (tags.json().get("tags") or [])
                finally:
                    os.killpg(upstream.process.pid, signal.SIGCONT)
                rest = b"".join(chunks)
                assert sha256(first + rest) == layer
            wait_stored(cache, "big/stream", digest)
            assert http.get("/v2/big/stream/tags/list").json()["tags"] == ["v1"]


def test_upstream_killed_mid_sync_shows_no_partial_image_and_is_retried_later(tmp_path: Path) -> None:
    with running_upstream("distribution2", tls=True, htpasswd=True, folder=tmp_path / "upstream") as upstream:
        image = make_image("killed", (4096, 96 << 20))
        digest = upstream.push("big/app", image, "v1")
        layer = sha256(image.layers[1])
        cache = start_cache(tmp_path / "cache", sync_stanza(upstream, tmp_path / "cache"))
        with cache, httpx.Client(base_url=cache.url, timeout=120) as http:
            assert http.get("/v2/big/app/manifests/v1", headers=ACCEPT).status_code == 200
            with http.stream("GET", f"/v2/big/app/blobs/{layer}") as blob:
                _wait_spooling(cache)
                os.killpg(upstream.process.pid, signal.SIGKILL)
                upstream.process.wait(10)
                # The client gets a short body (the connection is broken off), never other bytes.
                got = b""
                with contextlib.suppress(httpx.HTTPError):
                    for chunk in blob.iter_raw(1 << 20):
                        got += chunk
                assert len(got) < len(image.layers[1])
                assert got == image.layers[1][: len(got)]
            deadline = time.monotonic() + 30
            while "sync: no upstream could be synced" not in cache.log_path.read_text():
                assert time.monotonic() < deadline, cache.log_path.read_text()[-3000:]
                time.sleep(0.05)
            # Nothing of it visible: no tag, no manifest, no layer.
            assert http.get("/v2/big/app/manifests/v1", headers=ACCEPT).status_code == 404
            tags = http.get("/v2/big/app/tags/list")
            assert tags.status_code == 404 or tags.json().get("tags") in (None, [])
            assert http.head(f"/v2/big/app/blobs/{layer}").status_code == 404
            # The upstream back: the next pull syncs it whole.
            again = _restart(upstream)
            try:
                assert upstream.ca is not None
                _wait_answers(upstream.url, upstream.ca, time.monotonic() + 30)
                answer = http.get("/v2/big/app/manifests/v1", headers=ACCEPT)
                assert answer.status_code == 200, answer.text
                assert answer.headers["Docker-Content-Digest"] == digest
                wait_stored(cache, "big/app", digest)
                assert sha256(http.get(f"/v2/big/app/blobs/{layer}").content) == layer
            finally:
                os.killpg(again.pid, signal.SIGKILL)
                again.wait(10)


def test_with_the_upstream_gone_what_is_stored_is_still_served(tmp_path: Path) -> None:
    with running_upstream("distribution2", tls=True, htpasswd=True) as upstream:
        image = make_image("outage", (1000, 2000))
        digest = upstream.push("team/outage", image, "v1")
        cache = start_cache(tmp_path / "cache", sync_stanza(upstream, tmp_path / "cache"))
        with cache, httpx.Client(base_url=cache.url, timeout=60) as http:
            assert http.get("/v2/team/outage/manifests/v1", headers=ACCEPT).status_code == 200
            wait_stored(cache, "team/outage", digest)
            upstream.stop()
            for method in ("GET", "HEAD"):
                answer = http.request(method, "/v2/team/outage/manifests/v1", headers=ACCEPT)
                assert answer.status_code == 200, answer.text
                assert answer.headers["Docker-Content-Digest"] == digest
            assert http.get(f"/v2/team/outage/blobs/{sha256(image.layers[0])}").content == image.layers[0]
            # What was never synced is not found: never a 5xx for an upstream that is down.
            assert http.get("/v2/team/outage/manifests/v2", headers=ACCEPT).status_code == 404
            assert "no upstream could be synced" in cache.log_path.read_text()


def test_oras_artifacts_and_their_referrers_come_through_the_cache(
    upstream: UpstreamRegistry, cache: RegistryProcess, tmp_path: Path
) -> None:
    """oras pushes an artifact and attaches a signature upstream (distribution has no referrers API,
    so oras writes the fallback tag); `oras pull` and `oras discover` through the cache find both."""
    assert upstream.ca is not None and upstream.credentials is not None
    oras = tool("oras")
    login = ["--ca-file", str(upstream.ca), "-u", upstream.credentials[0], "-p", upstream.credentials[1]]
    (tmp_path / "artifact.txt").write_text("hello through the cache\n")
    (tmp_path / "signature.txt").write_text("signed\n")
    source = f"{upstream.hostport}/oras/artifact:v1"
    run(
        oras,
        "push",
        *login,
        "--artifact-type",
        "application/vnd.example.thing",
        source,
        "artifact.txt:text/plain",
        cwd=tmp_path,
    )
    attach = ["--artifact-type", "application/vnd.example.signature", source, "signature.txt:text/plain"]
    run(oras, "attach", *login, "--distribution-spec", "v1.1-referrers-tag", *attach, cwd=tmp_path)
    cached = f"{cache.hostport}/oras/artifact:v1"
    pulled = tmp_path / "pulled"
    run(oras, "pull", "--plain-http", "-o", str(pulled), cached)
    assert (pulled / "artifact.txt").read_text() == "hello through the cache\n"
    discovered = json.loads(run(oras, "discover", "--plain-http", "--format", "json", cached))
    referrers = discovered.get("referrers") or discovered.get("manifests") or []
    assert [r["artifactType"] for r in referrers] == ["application/vnd.example.signature"]
