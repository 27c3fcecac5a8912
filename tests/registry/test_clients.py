"""Real clients against `zot-registry serve`: skopeo, oras and crane."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support.commands import run
from tests.support.images import blob_files, write_oci_layout
from tests.support.paths import tool
from tests.support.ports import free_port
from tests.support.registry import RegistryProcess, registry_config


def skopeo(*args: str) -> str:
    return run(tool("skopeo"), "--insecure-policy", *args)


def test_skopeo_copies_multilayer_image_in_and_out_byte_identically(
    start_registry: Callable[..., RegistryProcess], tmp_path: Path
) -> None:
    registry = start_registry()
    source = tmp_path / "source"
    digest = write_oci_layout(source, "v1", "skopeo", (300_000, 2_000_000, 17))
    skopeo(
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        f"oci:{source}:v1",
        f"docker://{registry.hostport}/skopeo/app:v1",
    )
    back = tmp_path / "back"
    skopeo(
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        f"docker://{registry.hostport}/skopeo/app:v1",
        f"oci:{back}:v1",
    )
    assert blob_files(back) == blob_files(source)
    inspected = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{registry.hostport}/skopeo/app:v1"))
    assert inspected["Digest"] == digest
    assert len(inspected["Layers"]) == 3


def test_layout_written_by_skopeo_is_served_as_is(
    start_registry: Callable[..., RegistryProcess], tmp_path: Path
) -> None:
    source = tmp_path / "source"
    digest = write_oci_layout(source, "v1", "served", (1000, 2000))
    root = tmp_path / "root"
    (root / "prebuilt").mkdir(parents=True)
    skopeo("copy", "--preserve-digests", f"oci:{source}:v1", f"oci:{root}/prebuilt/app:v1")
    port = free_port()
    registry = start_registry(config=registry_config(root, port))
    with httpx.Client(base_url=registry.url) as client:
        assert client.get("/v2/_catalog").json() == {"repositories": ["prebuilt/app"]}
        assert client.get("/v2/prebuilt/app/tags/list").json()["tags"] == ["v1"]
        got = client.get("/v2/prebuilt/app/manifests/v1")
        assert got.status_code == 200 and got.headers["Docker-Content-Digest"] == digest
    assert run(tool("crane"), "digest", "--insecure", f"{registry.hostport}/prebuilt/app:v1").strip() == digest


def test_oras_push_attach_discover(start_registry: Callable[..., RegistryProcess], tmp_path: Path) -> None:
    registry = start_registry()
    oras = tool("oras")
    (tmp_path / "artifact.txt").write_text("hello from oras\n")
    (tmp_path / "signature.txt").write_text("signed\n")
    ref = f"{registry.hostport}/oras/artifact:v1"
    run(
        oras,
        "push",
        "--plain-http",
        "--artifact-type",
        "application/vnd.example.thing",
        ref,
        "artifact.txt:text/plain",
        cwd=tmp_path,
    )
    run(
        oras,
        "attach",
        "--plain-http",
        "--artifact-type",
        "application/vnd.example.signature",
        ref,
        "signature.txt:text/plain",
        cwd=tmp_path,
    )
    discovered = json.loads(run(oras, "discover", "--plain-http", "--format", "json", ref))
    referrers = discovered.get("referrers") or discovered.get("manifests") or []
    assert [r["artifactType"] for r in referrers] == ["application/vnd.example.signature"]
    pulled = tmp_path / "pulled"
    run(oras, "pull", "--plain-http", "-o", str(pulled), ref)
    assert (pulled / "artifact.txt").read_text() == "hello from oras\n"


def test_crane_lists_tags_and_copies(start_registry: Callable[..., RegistryProcess], tmp_path: Path) -> None:
    registry = start_registry()
    source = tmp_path / "source"
    digest = write_oci_layout(source, "v1", "crane", (5000, 6000))
    skopeo(
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        f"oci:{source}:v1",
        f"docker://{registry.hostport}/crane/src:v1",
    )
    skopeo(
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        f"oci:{source}:v1",
        f"docker://{registry.hostport}/crane/src:v2",
    )
    crane = tool("crane")
    assert run(crane, "ls", "--insecure", f"{registry.hostport}/crane/src").split() == ["v1", "v2"]
    run(crane, "copy", "--insecure", f"{registry.hostport}/crane/src:v1", f"{registry.hostport}/crane/dst:copied")
    assert run(crane, "digest", "--insecure", f"{registry.hostport}/crane/dst:copied").strip() == digest
