"""The conformance suites against every member, and real clients through a member that owns nothing they touch."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.cluster import ClusterUnderTest
from tests.support.conformance import run_conformance, run_current_suite
from tests.support.images import blob_files, write_oci_layout
from tests.support.paths import tool


@pytest.mark.parametrize("member", [0, 1, 2])
def test_conformance_against_each_member(cluster3: ClusterUnderTest, member: int, tmp_path: Path) -> None:
    # Namespaces owned by the other members, so the suite runs through this member's proxy.
    namespace = cluster3.repo_not_owned_by(member, f"conformance/legacy-{member}")
    crossmount = cluster3.repo_not_owned_by(member, f"conformance/legacy-mount-{member}")
    run_conformance(
        cluster3.members[member],
        tmp_path / "legacy",
        auth=cluster3.auth,
        ca=cluster3.ca,
        namespace=namespace,
        crossmount=crossmount,
    )
    repos = (
        cluster3.repo_not_owned_by(member, f"conformance/current-{member}"),
        cluster3.repo_not_owned_by(member, f"conformance/current-two-{member}"),
    )
    run_current_suite(cluster3.members[member], tmp_path / "results", auth=cluster3.auth, ca=cluster3.ca, repos=repos)


def client_env(cluster: ClusterUnderTest, folder: Path) -> dict[str, str]:
    """Credentials for every member in a docker config, the cluster CA as a trusted root."""
    assert cluster.auth is not None and cluster.ca is not None
    token = base64.b64encode(":".join(cluster.auth).encode()).decode()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"auths": {m.hostport: {"auth": token} for m in cluster.members}}))
    return {
        **os.environ,
        "DOCKER_CONFIG": str(folder),
        "REGISTRY_AUTH_FILE": str(folder / "config.json"),
        "SSL_CERT_FILE": str(cluster.ca),
    }


def run(env: dict[str, str], *args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(list(args), capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_clients_through_a_member_that_owns_nothing_they_touch(cluster3: ClusterUnderTest, tmp_path: Path) -> None:
    env = client_env(cluster3, tmp_path / "docker")
    via = cluster3.members[0]
    repos = {
        kind: cluster3.repo_not_owned_by(0, f"clients/{kind}") for kind in ("skopeo", "oras", "crane-src", "crane-dst")
    }
    before = {p for p in via.root.rglob("index.json")}

    source = tmp_path / "source"
    digest = write_oci_layout(source, "v1", "cluster-skopeo", (200_000, 1_500_000))
    skopeo = [tool("skopeo"), "--insecure-policy"]
    run(env, *skopeo, "copy", "--preserve-digests", f"oci:{source}:v1", f"docker://{via.hostport}/{repos['skopeo']}:v1")
    back = tmp_path / "back"
    run(env, *skopeo, "copy", "--preserve-digests", f"docker://{via.hostport}/{repos['skopeo']}:v1", f"oci:{back}:v1")
    assert blob_files(back) == blob_files(source)

    oras = tool("oras")
    (tmp_path / "note.txt").write_text("through a proxy\n")
    ref = f"{via.hostport}/{repos['oras']}:v1"
    run(env, oras, "push", "--ca-file", str(cluster3.ca), ref, "note.txt:text/plain", cwd=tmp_path)
    run(
        env,
        oras,
        "attach",
        "--ca-file",
        str(cluster3.ca),
        "--artifact-type",
        "application/vnd.example.sig",
        ref,
        "note.txt:text/plain",
        cwd=tmp_path,
    )
    discovered = json.loads(run(env, oras, "discover", "--ca-file", str(cluster3.ca), "--format", "json", ref))
    referrers = discovered.get("referrers") or discovered.get("manifests") or []
    assert [r["artifactType"] for r in referrers] == ["application/vnd.example.sig"]
    run(env, oras, "pull", "--ca-file", str(cluster3.ca), "-o", str(tmp_path / "pulled"), ref)
    assert (tmp_path / "pulled" / "note.txt").read_text() == "through a proxy\n"

    crane = tool("crane")
    run(
        env,
        *skopeo,
        "copy",
        "--preserve-digests",
        f"oci:{source}:v1",
        f"docker://{via.hostport}/{repos['crane-src']}:v1",
    )
    assert run(env, crane, "ls", f"{via.hostport}/{repos['crane-src']}").split() == ["v1"]
    run(env, crane, "copy", f"{via.hostport}/{repos['crane-src']}:v1", f"{via.hostport}/{repos['crane-dst']}:copy")
    assert run(env, crane, "digest", f"{via.hostport}/{repos['crane-dst']}:copy").strip() == digest

    # The member the clients talked to stored none of it.
    assert {p for p in via.root.rglob("index.json")} == before
    for repo in repos.values():
        owner = cluster3.members[cluster3.owner(repo)]
        assert (owner.root / repo / "index.json").is_file()
