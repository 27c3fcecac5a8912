"""A failover made in place, on real member processes (tests.support.local_fleet): member 2 dies and
is dropped from the list, real clients go on pushing to its repositories, and it is re-admitted."""

from __future__ import annotations

import base64
import json
import os
from functools import partial
from pathlib import Path

from tests.support.commands import run
from tests.support.images import blob_files, make_image, sha256, write_oci_layout
from tests.support.kubectl import wait_for
from tests.support.local_fleet import PASSWORD, USER, Fleet, kill, names_with
from tests.support.paths import tool
from tests.support.rebalance import Workload


def skopeo_env(fleet: Fleet, folder: Path) -> dict[str, str]:
    """skopeo with the fleet's credentials for every member and its CA as a trusted root."""
    folder.mkdir(parents=True, exist_ok=True)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    auth = {"auths": {member: {"auth": token} for member in fleet.all_members}}
    (folder / "auth.json").write_text(json.dumps(auth))
    return {**os.environ, "REGISTRY_AUTH_FILE": str(folder / "auth.json"), "SSL_CERT_FILE": str(fleet.ca)}


def skopeo(env: dict[str, str], source: str, destination: str) -> None:
    run(tool("skopeo"), "--insecure-policy", "copy", "--preserve-digests", source, destination, env=env)


def test_a_dropped_members_repositories_take_real_pushes_and_go_home_merged(fleet: Fleet, tmp_path: Path) -> None:
    """While member 2 is dropped, what it holds answers 'retry' (503), yet its repositories take pushes:
    skopeo, which asks for each blob (HEAD) before it sends it, pushes a new tag. A push member 2 had
    begun (a blob acknowledged, then it died) is refused with a 400 that names the blob and why it is
    missing, and succeeds when pushed again. Re-admitted, member 2 holds its old tags and the new ones."""
    fleet.start_cluster(3)
    three = fleet.members
    repo = names_with("failover/app", 1, lambda r: fleet.owner(r) == 2, at_least=1)[0]
    assert fleet.owner(repo) == 2, "the hash key gives member 2 no name here"
    workload = Workload(fleet.urls, fleet.ca, (USER, PASSWORD), [repo])
    old, begun = make_image(f"{repo}-v1"), make_image(f"{repo}-begun")
    stranded = begun.layers[0]
    with workload.client() as http:
        assert workload.push(http, repo, "v1", old), workload.stats.failures
        acknowledged = http.post(
            f"{fleet.url(0)}/v2/{repo}/blobs/uploads/", params={"digest": sha256(stranded)}, content=stranded
        )
        assert acknowledged.status_code == 201, acknowledged.text

    kill(fleet.processes[2])
    two = three[:2]
    fleet.epoch += 1
    fleet.control.run_change([fleet.url(0), fleet.url(1)], fleet.epoch, three, two, absent=[three[2]])
    fleet.members = two

    env = skopeo_env(fleet, tmp_path / "skopeo")
    source = tmp_path / "source"
    write_oci_layout(source, "v2", f"{repo}-v2", (200_000, 300_000))
    skopeo(env, f"oci:{source}:v2", f"docker://{fleet.all_members[1]}/{repo}:v2")
    with workload.client() as http:
        held = http.get(f"{fleet.url(0)}/v2/{repo}/manifests/v1")
        assert held.status_code == 503 and held.headers["Retry-After"], held.text
        for blob in [begun.config, *begun.layers[1:]]:
            sent = http.post(f"{fleet.url(0)}/v2/{repo}/blobs/uploads/", params={"digest": sha256(blob)}, content=blob)
            assert sent.status_code == 201, sent.text
        refused = http.put(
            f"{fleet.url(0)}/v2/{repo}/manifests/begun",
            content=begun.manifest,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert refused.status_code == 400, refused.text
        error = refused.json()["errors"][0]
        assert error["code"] == "MANIFEST_BLOB_UNKNOWN" and error["detail"] == {"digest": sha256(stranded)}
        assert three[2] in error["message"] and "push" in error["message"]
        assert workload.push(http, repo, "begun", begun), workload.stats.failures

    # Back: started with the list without it (the config of the moment), then re-admitted.
    fleet.start(2, two)
    fleet.epoch += 1
    fleet.control.run_change([fleet.url(i) for i in range(3)], fleet.epoch, two, three)
    fleet.members = three
    back = tmp_path / "back"
    skopeo(env, f"docker://{fleet.all_members[0]}/{repo}:v2", f"oci:{back}:v2")
    assert blob_files(back) == blob_files(source)
    with workload.client() as http:
        for url in fleet.urls():
            assert workload.pull(http, repo, "v1", old, url), workload.stats.failures
            assert workload.pull(http, repo, "begun", begun, url), workload.stats.failures
    for index in range(3):
        owned = {repo} if index == 2 else set()
        wait_for(f"member {index} holds what it owns", partial(fleet.holds_exactly, index, owned), timeout=15)
