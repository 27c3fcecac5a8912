"""zot's cluster-s3-redis.json as a 3-member cluster: real clients across members, dedupe in the
shared bucket, a member dropped from the middle of the list, and real clients through HAProxy.

test_zot_examples_on_s3.py holds the conformance runs (redis and DynamoDB), the SIGKILL during 20
pushes and the 3 -> 5 -> 2 resize; this module adds what a user of the shared mode does next.
Every server is on loopback; members speak TLS as in zot's example (certificates from tests/support/certs.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import httpx
from zot_registry.cluster.hashing import owner_index

from tests.support.images import (
    MANIFEST,
    Image,
    assert_pullable,
    blob_files,
    make_image,
    push_blob_in_pieces,
    push_image,
    sha256,
    write_oci_layout,
)
from tests.support.paths import tool
from tests.support.peers import Peer
from tests.support.ports import free_port
from tests.support.s3 import blob_objects_not_matching_their_key, list_objects, read_object
from tests.support.shared_cluster import SharedCluster, assert_survivors_serve, haproxy_config, kill_during_pushes


def client_env(folder: Path, ca: Path | None) -> dict[str, str]:
    """An empty docker config (the example has no auth) and, for TLS members, the cluster CA as a root."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"auths": {}}))
    env = {**os.environ, "DOCKER_CONFIG": str(folder), "REGISTRY_AUTH_FILE": str(folder / "config.json")}
    if ca:
        env["SSL_CERT_FILE"] = str(ca)
    return env


def run(env: dict[str, str], *args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(list(args), capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def oras_push_payload(env: dict[str, str], folder: Path, size: int, reference: str, *flags: str) -> bytes:
    """`oras push FLAGS REFERENCE` of folder/payload.bin, `size` random bytes as one octet-stream layer;
    returns those bytes."""
    payload = os.urandom(size)
    (folder / "payload.bin").write_bytes(payload)
    run(env, tool("oras"), "push", *flags, reference, "payload.bin:application/octet-stream", cwd=folder)
    return payload


def owner(cluster: SharedCluster, repo: str) -> int:
    return owner_index(repo, cluster.example["cluster"]["hashKey"].encode(), len(cluster.members))


def test_skopeo_and_oras_push_through_one_member_and_pull_through_the_others(
    s3_redis_cluster: SharedCluster, tmp_path: Path
) -> None:
    cluster = s3_redis_cluster
    env = client_env(tmp_path / "docker", cluster.certs.ca)
    a, b, c = (member.hostport for member in cluster.members)
    # A repository that member A does not own: the push goes through A's proxy to the owner.
    image_repo = next(f"clients/skopeo-{i}" for i in range(100) if owner(cluster, f"clients/skopeo-{i}") != 0)
    artifact_repo = next(f"clients/oras-{i}" for i in range(100) if owner(cluster, f"clients/oras-{i}") != 0)

    source = tmp_path / "source"
    digest = write_oci_layout(source, "v1", "shared-skopeo", (300_000, 3 << 20))
    skopeo = [tool("skopeo"), "--insecure-policy"]
    run(env, *skopeo, "copy", "--preserve-digests", f"oci:{source}:v1", f"docker://{a}/{image_repo}:v1")
    for number, via in enumerate((b, c)):
        back = tmp_path / f"back-{number}"  # no colon: skopeo's oci: reference splits on it
        run(env, *skopeo, "copy", "--preserve-digests", f"docker://{via}/{image_repo}:v1", f"oci:{back}:v1")
        assert blob_files(back) == blob_files(source), f"pulled through {via}"
        inspected = json.loads(run(env, *skopeo, "inspect", f"docker://{via}/{image_repo}:v1"))
        assert inspected["Digest"] == digest

    oras = tool("oras")
    payload = oras_push_payload(env, tmp_path, 2 << 20, f"{a}/{artifact_repo}:v1", "--ca-file", str(cluster.certs.ca))
    for number, via in enumerate((b, c)):
        target = tmp_path / f"oras-{number}"
        run(env, oras, "pull", "--ca-file", str(cluster.certs.ca), "-o", str(target), f"{via}/{artifact_repo}:v1")
        assert (target / "payload.bin").read_bytes() == payload, f"pulled through {via}"


def test_two_repositories_sharing_layers_store_each_layer_once_in_the_bucket(
    s3_redis_cluster: SharedCluster, s3_server: Peer
) -> None:
    cluster = s3_redis_cluster
    # Odd sizes no other object in the bucket has; two images with their own configs share both layers.
    first = make_image("dedupe-shared", (1_048_583, 3_145_759))
    second = with_config(first, json.dumps({"architecture": "arm64", "os": "linux"}).encode())
    repos = ["dedupe/first", "dedupe/second"]
    # Each pushed through a different member; owners may differ, the dedupe index is the shared cache.
    with cluster.client(0) as http:
        assert push_image(http, repos[0], first, "v1").status_code == 201
    with cluster.client(2) as http:
        assert push_image(http, repos[1], second, "v1").status_code == 201
    for index in range(3):
        with cluster.client(index) as http:
            assert_pullable(http, repos[0], first)
            assert_pullable(http, repos[1], second)

    objects = list_objects(s3_server)
    for layer in first.layers:
        same_size = [key for key, size in objects.items() if size == len(layer)]
        assert len(same_size) == 1, f"{len(layer)}-byte layer stored {len(same_size)} times: {same_size}"
        holding = [
            key
            for key, size in objects.items()
            if size == len(layer) and hashlib.sha256(read_object(s3_server, key)).hexdigest() == sha256(layer)[7:]
        ]
        assert len(holding) == 1, f"layer {sha256(layer)} has {len(holding)} objects with its bytes: {holding}"


def with_config(image: Image, config: bytes) -> Image:
    """The same layers under another config (so another manifest)."""
    manifest = json.loads(image.manifest)
    manifest["config"].update({"digest": sha256(config), "size": len(config)})
    return Image(config, image.layers, json.dumps(manifest, indent=1).encode())


def _push(
    http: httpx.Client, repo: str, image: Image, chunked: bool, manifest_sent: set[str], piece: int = 1 << 20
) -> int | str:
    """Pushes `image`; layers in PATCH pieces when `chunked`, else monolithic. The manifest PUT's status;
    `repo` joins `manifest_sent` just before that PUT (its answer may be lost with a killed member)."""
    try:
        for blob in [image.config, *image.layers]:
            if not chunked or blob is image.config:
                response = http.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(blob)}, content=blob)
                if response.status_code != 201:
                    return response.status_code
                continue
            status = push_blob_in_pieces(http, repo, blob, piece)
            if status != 201:
                return status
        manifest_sent.add(repo)
        return http.put(f"/v2/{repo}/manifests/v1", content=image.manifest, headers=MANIFEST).status_code
    except httpx.HTTPError as err:  # the connection went down with the killed member
        return type(err).__name__


def test_middle_member_killed_and_dropped_from_the_list(s3_redis_cluster: SharedCluster, s3_server: Peer) -> None:
    """SIGKILL 127.0.0.2 (the middle of the list) during mixed monolithic and chunked pushes, then rewrite
    the list to 127.0.0.1 and 127.0.0.3 and restart both, as the operator does for an excluded member."""
    cluster = s3_redis_cluster
    before = {f"middle/before-{i}": make_image(f"middle-before-{i}", (512 << 10, 4096)) for i in range(6)}
    with cluster.client(0) as http:
        for repo, image in before.items():
            assert push_image(http, repo, image, "v1").status_code == 201
    during = {f"middle/during-{i}": make_image(f"middle-during-{i}", (6 << 20, 5 << 20)) for i in range(12)}
    outcome: dict[str, int | str] = {}
    manifest_sent: set[str] = set()

    def push(number: int, repo: str, image: Image) -> None:
        with cluster.client(number % 3) as http:
            outcome[repo] = _push(http, repo, image, chunked=number % 2 == 0, manifest_sent=manifest_sent)

    completed, unfinished = kill_during_pushes(cluster, 1, during, push, outcome, completed_first=2)
    print(f"completed {len(completed)}, unfinished {len(unfinished)}: { {r: outcome.get(r) for r in unfinished} }")

    cluster.without(1)
    assert [member.host for member in cluster.members] == ["127.0.0.1", "127.0.0.3"]
    for member in cluster.members:
        assert member.config["cluster"]["members"] == [f"127.0.0.1:{cluster.port}", f"127.0.0.3:{cluster.port}"]
    assert_survivors_serve(
        cluster,
        {**before, **{repo: during[repo] for repo in completed}},
        {repo: during[repo] for repo in unfinished},
        manifest_sent,
    )
    assert blob_objects_not_matching_their_key(s3_server) == []
    # The survivors take new pushes under the new list.
    with cluster.client(1) as http:
        image = make_image("middle-after", (1 << 20,))
        assert push_image(http, "middle/after", image, "v1").status_code == 201
    with cluster.client(0) as http:
        assert_pullable(http, "middle/after", image)


def test_skopeo_and_oras_through_haproxy_sticky_entry(s3_redis_cluster: SharedCluster, tmp_path: Path) -> None:
    """examples/haproxy-sticky.cfg rendered to loopback in front of the 3 TLS members.

    The members keep TLS as in zot's example; HAProxy in `mode http` must read the requests to set and
    follow the cookie, so it terminates nothing on the client side (plain HTTP entry) and speaks TLS to
    the members with `ssl verify required ca-file` (the example's server lines) instead of the members
    dropping TLS for this test.
    """
    cluster, port = s3_redis_cluster, free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(haproxy_config(cluster, port))
    check = subprocess.run([tool("haproxy"), "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    log = tmp_path / "haproxy.log"
    with log.open("wb") as out:
        haproxy = subprocess.Popen([tool("haproxy"), "-f", str(config), "-db"], stdout=out, stderr=subprocess.STDOUT)
    try:
        entry = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        ready = False
        while time.monotonic() < deadline and not ready:
            try:
                ready = httpx.get(f"http://{entry}/v2/", timeout=2).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.1)
        assert ready, log.read_text(errors="replace")
        with httpx.Client(base_url=f"http://{entry}", timeout=30) as http:
            first = http.get("/v2/")
            assert first.cookies.get("SERVER") in {"zot-server1", "zot-server2", "zot-server3"}, first.headers

        env = client_env(tmp_path / "docker", None)
        skopeo = [tool("skopeo"), "--insecure-policy"]
        source = tmp_path / "source"
        digest = write_oci_layout(source, "v1", "through-haproxy", (400_000, 2 << 20))
        run(
            env,
            *skopeo,
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            f"oci:{source}:v1",
            f"docker://{entry}/lb/skopeo:v1",
        )
        back = tmp_path / "back"
        run(
            env,
            *skopeo,
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            f"docker://{entry}/lb/skopeo:v1",
            f"oci:{back}:v1",
        )
        assert blob_files(back) == blob_files(source)
        # Whichever member HAProxy picks for a later request, the image is there (shared storage).
        for index in range(3):
            with cluster.client(index) as http:
                assert (
                    http.head(
                        f"/v2/lb/skopeo/manifests/{digest}", headers={"Accept": MANIFEST["Content-Type"]}
                    ).status_code
                    == 200
                )

        oras = tool("oras")
        payload = oras_push_payload(env, tmp_path, 1 << 20, f"{entry}/lb/oras:v1", "--plain-http")
        run(env, oras, "pull", "--plain-http", "-o", str(tmp_path / "pulled"), f"{entry}/lb/oras:v1")
        assert (tmp_path / "pulled" / "payload.bin").read_bytes() == payload
    finally:
        haproxy.terminate()
        haproxy.wait(timeout=10)
