"""Adversarial storage corpus: a full disk answers 507, keeps reads working and damages nothing."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.bad_manifests import (
    OCI_MANIFEST,
)
from tests.support.checks import (
    assert_root_intact,
)
from tests.support.images import Image, make_image, sha256
from tests.support.sites import OCTETS, SiteFactory

# 7. A full disk ------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[Path], None]]:
    """Mounts a 2 MiB tmpfs at the root directory a site is about to use; unmounted at the end."""
    mounted: list[Path] = []

    def mount(root: Path) -> None:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root: this test fills a small filesystem")
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(root)], capture_output=True, text=True
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}): this test fills a small filesystem")
        mounted.append(root)

    yield mount
    for root in mounted:
        subprocess.run(["umount", "-l", str(root)], check=False)


@pytest.mark.parametrize("dedupe", [True, False], ids=["dedupe", "no-dedupe"])
def test_a_full_disk_is_507_keeps_reads_and_damages_nothing(
    site: SiteFactory, small_disk: Callable[[Path], None], dedupe: bool
) -> None:
    s = site(dedupe=dedupe, before_start=small_disk)
    # An acknowledged chunked session holding space, released at the end to make room again.
    held = os.urandom(400 << 10)
    holder = s.check(s.client.post("/v2/full/held/blobs/uploads/"), "start", {202}).headers["Location"]
    s.check(
        s.client.patch(holder, content=held, headers={**OCTETS, "Content-Range": f"0-{len(held) - 1}"}),
        "held chunk",
        {202},
    )
    pushed: list[tuple[str, Image]] = []
    refused: list[httpx.Response] = []
    for i in range(40):
        image = make_image(f"full-{i}", layer_sizes=(96 << 10,))
        repo = f"full/r{i % 3}"
        answers = []
        for blob in [image.config, *image.layers]:
            answers.append(
                s.check(
                    s.client.post(
                        f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(blob)}, content=blob, headers=OCTETS
                    ),
                    f"push {i}",
                    {201, 507},
                )
            )
        if all(a.status_code == 201 for a in answers):
            answers.append(
                s.check(
                    s.client.put(
                        f"/v2/{repo}/manifests/t{i}", content=image.manifest, headers={"Content-Type": OCI_MANIFEST}
                    ),
                    f"manifest {i}",
                    {201, 507},
                )
            )
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
        s.check(
            s.client.patch(location, content=big, headers={**OCTETS, "Content-Range": f"0-{len(big) - 1}"}),
            "chunk while full",
            {507},
        )
        status = s.check(s.client.get(location), "session status after a refused chunk", {204})
        assert status.headers["Range"] == "0-0", "a refused chunk left bytes in the session"
        s.check(
            s.client.put(location, params={"digest": sha256(big)}, content=big, headers=OCTETS),
            "close while full",
            {507},
        )
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
