"""Periodic sync against a real upstream on loopback (distribution 2.8.2, and 3.x when it was
built): the catalog filtered by content prefixes, tags by regex, excludeRegex and semver, local
names by destination and stripPrefix; and the same against another zot-registry as the upstream."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.images import make_image, push_image
from tests.support.ports import free_port
from tests.support.registry import RegistryProcess, registry_config
from tests.support.upstreams import KINDS, Kind, UpstreamRegistry, missing, running_upstream

WAIT = 60.0


def content_rules() -> list[dict[str, Any]]:
    return [
        # team/*: under their own names, tags 1.x that are semver.
        {"prefix": "team/*", "tags": {"regex": r"^v?1\.", "semver": True}},
        # tools/**: under mirror/, without "tools/", release candidates left out.
        {"prefix": "tools/**", "destination": "/mirror", "stripPrefix": True, "tags": {"excludeRegex": "-rc"}},
    ]


def populate(upstream: UpstreamRegistry) -> None:
    for repo, tags in {
        "team/app": ("1.0.0", "v1.2.3", "1.x", "2.0.0", "latest"),
        "team/lib": ("1.5", "0.9.0"),
        "tools/cli": ("2.0", "2.1-rc1"),
        "tools/deep/gen": ("3",),
        "other/skipped": ("1.0.0",),
    }.items():
        for tag in tags:
            upstream.push(repo, make_image(f"{repo}:{tag}", (512,)), tag)


EXPECTED = {
    "team/app": ["1.0.0", "v1.2.3"],
    "team/lib": ["1.5"],
    "mirror/cli": ["2.0"],
    "mirror/deep/gen": ["3"],
}


def local_tags(http: httpx.Client) -> dict[str, list[str]]:
    found = {}
    for repo in http.get("/v2/_catalog").json()["repositories"]:
        answer = http.get(f"/v2/{repo}/tags/list")
        if answer.status_code == 200 and answer.json().get("tags"):
            found[repo] = sorted(answer.json()["tags"])
    return found


def wait_for_tags(http: httpx.Client, expected: dict[str, list[str]]) -> dict[str, list[str]]:
    deadline = time.monotonic() + WAIT
    found: dict[str, list[str]] = {}
    while time.monotonic() < deadline:
        found = local_tags(http)
        if found == expected:
            return found
        time.sleep(0.25)
    return found


def log_lines(registry: RegistryProcess) -> list[dict[str, Any]]:
    lines = []
    for text in registry.log_path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            lines.append(json.loads(text))
    return [line for line in lines if isinstance(line, dict)]


def periodic_stanza(upstream: UpstreamRegistry) -> dict[str, Any]:
    registry: dict[str, Any] = {"urls": [upstream.url], "pollInterval": "1s", "content": content_rules()}
    if upstream.cert_dir is not None:
        registry["certDir"] = str(upstream.cert_dir)
    return {"registries": [registry]}


@pytest.fixture(params=KINDS)
def upstream(request: pytest.FixtureRequest) -> Iterator[UpstreamRegistry]:
    kind: Kind = request.param
    reason = missing(kind)
    if reason:
        pytest.skip(reason)
    with running_upstream(kind, tls=True) as started:
        yield started


def test_periodic_sync_takes_what_the_content_rules_select_under_their_local_names(
    upstream: UpstreamRegistry, tmp_path: Path
) -> None:
    populate(upstream)
    config = registry_config(tmp_path / "root", free_port())
    config["log"] = {"level": "info"}  # the line per image synced
    config["extensions"] = {"sync": periodic_stanza(upstream)}
    with RegistryProcess(tmp_path / "config.json", config, tmp_path / "registry.log", workers=2).start() as cache:
        with httpx.Client(base_url=cache.url, timeout=30) as http:
            assert wait_for_tags(http, EXPECTED) == EXPECTED, cache.log_path.read_text()[-3000:]
            # The same bytes as upstream, under the local name.
            with upstream.client() as up:
                mine = http.get(
                    "/v2/mirror/cli/manifests/2.0", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}
                )
                theirs = up.get(
                    "/v2/tools/cli/manifests/2.0", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}
                )
                assert mine.content == theirs.content
            # A tag pushed upstream later arrives at a later pass; one the rules leave out does not.
            upstream.push("team/app", make_image("team/app:1.9.0", (512,)), "1.9.0")
            upstream.push("team/app", make_image("team/app:3.0.0", (512,)), "3.0.0")
            later = {**EXPECTED, "team/app": ["1.0.0", "1.9.0", "v1.2.3"]}
            assert wait_for_tags(http, later) == later
        # Each image was copied once (later passes found it up to date), periodically.
        synced = [line for line in log_lines(cache) if line.get("message") == "sync: image synced"]
        copies = sorted((line["repository"], line["reference"]) for line in synced)
        assert copies == sorted([(repo, tag) for repo, tags in later.items() for tag in tags])
        assert {line["trigger"] for line in synced} == {"periodically"}


def test_another_zot_registry_is_an_upstream_too(tmp_path: Path) -> None:
    upstream_config = registry_config(tmp_path / "up-root", free_port())
    source = RegistryProcess(tmp_path / "up.json", upstream_config, tmp_path / "up.log", workers=1).start()
    with source, httpx.Client(base_url=source.url, timeout=30) as up:
        image = make_image("zot-upstream", (4096,))
        assert push_image(up, "team/app", image, "1.0.0").status_code == 201
        config = registry_config(tmp_path / "root", free_port())
        config["extensions"] = {
            "sync": {
                "registries": [
                    {"urls": [source.url], "onDemand": True, "pollInterval": "1s", "content": [{"prefix": "team/**"}]}
                ]
            }
        }
        cache = RegistryProcess(tmp_path / "config.json", config, tmp_path / "registry.log", workers=1).start()
        with cache, httpx.Client(base_url=cache.url, timeout=30) as http:
            assert wait_for_tags(http, {"team/app": ["1.0.0"]}) == {"team/app": ["1.0.0"]}
            answer = http.get(
                "/v2/team/app/manifests/1.0.0", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}
            )
            assert answer.content == image.manifest
