"""`zot-operator render` run as a user runs it: its errors (as good as `zot-registry verify`'s), its input
from a file or standard input, and output that `kubectl apply -f -` can take alone."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from zot_operator.local.sample_image import TAG, write_sample_image

from tests.support.checks import assert_no_traceback
from tests.support.paths import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "zotcluster.yaml"


def zot_operator(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "zot_operator.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )
    assert_no_traceback(done.stdout + done.stderr, f"zot-operator {' '.join(args)}")
    return done


def example_with(tmp_path: Path, lines: str) -> Path:
    """The example's first lines (apiVersion .. spec:) followed by `lines`, as a user edits it."""
    head = EXAMPLE.read_text().split("spec:\n", 1)[0]
    path = tmp_path / "zc.yaml"
    path.write_text(f"{head}spec:\n{lines}")
    return path


BAD = """\
  replicas: 3
  storge:
    mode: local
  rebalance: {mode: InPlace}
  storage:
    local:
      size: 20GB
  resources:
    limits: {memroy: 1Gi}
    requets: {cpu: 100m}
  tolerations:
    - {key: dedicated, operater: Exists}
  logLevel: verbose
"""


def test_every_problem_is_named_at_its_line_with_a_suggestion(tmp_path: Path) -> None:
    path = example_with(tmp_path, BAD)
    at = EXAMPLE.read_text().split("spec:\n", 1)[0].count("\n") + 2  # the line of `replicas: 3`
    done = zot_operator("render", "-f", str(path))
    assert done.returncode == 2 and done.stdout == ""
    # All at once, in the order of the file, as `zot-registry verify` reports a config.
    assert done.stderr.splitlines() == [
        f"error: {path}:{at + 1}:3: spec.storge: unknown key, a ZotCluster has no such field in spec; "
        'did you mean "storage"?',
        f'error: {path}:{at + 6}:7: spec.storage.local.size: "20GB" is not a Kubernetes quantity such as 20Gi, '
        "500Mi, 250m or 2 (binary suffixes Ki, Mi, Gi, Ti, Pi, Ei); "
        "write 20Gi (powers of 1024) or 20G (powers of 1000)",
        f'error: {path}:{at + 8}:14: spec.resources.limits.memroy: "memroy" is not a resource a container can ask '
        "for: cpu, memory, ephemeral-storage, hugepages-<size>, or an extended resource with a domain "
        '(example.com/gpu); did you mean "memory"?',
        f"error: {path}:{at + 9}:5: spec.resources.requets: unknown key: resources has limits, requests and claims; "
        'did you mean "requests"?',
        f"error: {path}:{at + 11}:24: spec.tolerations[0].operater: unknown key: a toleration has key, operator, "
        'value, effect, tolerationSeconds; did you mean "operator"?',
        f'error: {path}:{at + 12}:3: spec.logLevel: must be "debug", "info", "warn" or "error", got "verbose"',
    ]


def test_render_and_local_up_refuse_a_bad_spec_alike_and_read_standard_input(tmp_path: Path) -> None:
    path = example_with(tmp_path, "  replicas: 3\n  storage:\n    local: {size: 20GB}\n")
    rendered = zot_operator("render", "-f", str(path))
    up = zot_operator("local", "up", "-f", str(path), "--dir", str(tmp_path / "state"), cwd=tmp_path)
    assert rendered.returncode == up.returncode == 2
    assert rendered.stderr == up.stderr
    assert not (tmp_path / "state").exists()  # refused before anything was written
    piped = zot_operator("render", "-f", "-", stdin=path.read_text())
    assert piped.returncode == 2
    assert piped.stderr == rendered.stderr.replace(str(path), "<stdin>")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("  replicas: 3\n  replicas: 4\n", "spec.replicas: written twice in the same mapping"),
        ("  replicas: 0\n", "spec.replicas: must be at least 1, got 0"),
        ("  replicas: 300\n", "spec.replicas: must be at most 256, got 300"),
        ("  storage: {local: {size: '0'}}\n", 'spec.storage.local.size: "0" must be greater than zero'),
        ("  storage: {local: {size: 20}}\n", "spec.storage.local.size: must be a string, got 20"),
        ("  storage: {local: {size: 10K}}\n", 'spec.storage.local.size: "10K" is not a Kubernetes quantity'),
        (
            "  resources: {requests: {cpu: 2}, limits: {cpu: 1}}\n",
            "requests.cpu: must be less than or equal to the limit",
        ),
        ("  resources: {limits: {memory: -1Gi}}\n", 'limits.memory: "-1Gi" must not be negative'),
        ("  tolerations: [{operator: Equal, value: x}]\n", "tolerations[0].operator: must be Exists when key is empty"),
        (
            "  tolerations: [{key: a, operator: Exists, value: x}]\n",
            "tolerations[0].value: must be empty when operator is Exists",
        ),
        (
            "  tolerations: [{key: a, effect: NoSchedule, tolerationSeconds: 5}]\n",
            "must be NoExecute when tolerationSeconds is set",
        ),
        ("  tolerations: [{key: a, effect: NoSchedul}]\n", 'did you mean "NoSchedule"?'),
        ("  sync: {registries: [{urlz: [https://r.example]}]}\n", 'did you mean "urls"?'),
        ("  storage: {mode: s3}\n", "spec: storage mode s3 needs storage.s3 (bucket, region, ...)"),
        ("  - a list\n", "spec: must be a mapping"),
    ],
)
def test_what_kubernetes_or_the_members_would_refuse_is_refused(tmp_path: Path, lines: str, message: str) -> None:
    done = zot_operator("render", "-f", str(example_with(tmp_path, lines)))
    assert done.returncode == 2, done.stdout
    assert message in done.stderr
    if "urlz" in lines:  # the misspelled key explains the missing one: no second line about `urls`
        assert "required" not in done.stderr


def test_a_hash_key_verify_would_refuse_is_refused() -> None:
    done = zot_operator("render", "-f", str(EXAMPLE), "--hash-key", "short")
    assert done.returncode == 2
    assert "--hash-key: must be exactly 16 bytes" in done.stderr and "got 5" in done.stderr


def test_missing_and_unreadable_files_are_one_line(tmp_path: Path) -> None:
    for path, message in ((tmp_path / "none.yaml", "No such file or directory"), (tmp_path, "Is a directory")):
        done = zot_operator("render", "-f", str(path))
        assert done.returncode == 2 and done.stderr == f"error: {path}: {message}\n"
    (tmp_path / "broken.yaml").write_text("spec: [\n")
    done = zot_operator("render", "-f", str(tmp_path / "broken.yaml"))
    assert done.returncode == 2 and done.stderr.startswith(f"error: {tmp_path / 'broken.yaml'}:2:1: not valid YAML")


def _documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def _header(text: str) -> str:
    """The comments before the first object, unwrapped."""
    return " ".join(" ".join(line[1:].split()) for line in text.splitlines() if line.startswith("#"))


def test_output_holds_what_the_pods_mount_and_says_what_it_needs() -> None:
    done = zot_operator("render", "-f", str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    objects = {(o["kind"], o["metadata"]["name"]) for o in _documents(done.stdout)}
    assert {("Secret", "demo-hashkey"), ("Secret", "demo-ca"), ("Secret", "demo-tls")} <= objects
    header = _header(done.stdout)
    assert "Needs Secret demo-htpasswd in namespace default (keys htpasswd), which is not rendered" in header
    assert "new on every render" in header
    by_name = {o["metadata"]["name"]: o for o in _documents(done.stdout)}
    config = json.loads(by_name["demo-config"]["data"]["config.json"])
    assert config["cluster"]["hashKey"] == by_name["demo-hashkey"]["stringData"]["hashKey"]
    statefulset = next(o for o in _documents(done.stdout) if o["kind"] == "StatefulSet")
    pod = statefulset["spec"]["template"]["spec"]
    mounted = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert mounted <= {name for kind, name in objects if kind == "Secret"} | {"demo-htpasswd"}


def test_secrets_given_in_the_manifest_are_used_and_named(tmp_path: Path) -> None:
    manifest = tmp_path / "zc.yaml"
    spec = yaml.safe_load(EXAMPLE.read_text())
    spec["spec"]["hashKeySecret"] = "demo-key"
    secrets = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "demo-key"}, "stringData": {"hashKey": "k" * 16}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "demo-htpasswd"}, "stringData": {"htpasswd": ""}},
    ]
    manifest.write_text(yaml.safe_dump_all([spec, *secrets]))
    done = zot_operator("render", "-f", str(manifest))
    assert done.returncode == 0, done.stderr
    documents = _documents(done.stdout)
    config = json.loads(next(d for d in documents if d["kind"] == "ConfigMap")["data"]["config.json"])
    assert config["cluster"]["hashKey"] == "k" * 16
    assert "demo-hashkey" not in done.stdout  # the user's hashKeySecret, not the operator's
    needed = "Needs Secret demo-htpasswd in namespace default (keys htpasswd), which is not rendered: it is in the "
    assert f"{needed}manifest: apply that too" in _header(done.stdout)


def test_the_sample_image_is_an_image_layout_whose_digests_hold(tmp_path: Path) -> None:
    root = write_sample_image(tmp_path)
    assert json.loads((root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    (entry,) = json.loads((root / "index.json").read_text())["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == TAG

    def blob(digest: str) -> bytes:
        data = (root / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
        assert f"sha256:{hashlib.sha256(data).hexdigest()}" == digest
        return data

    manifest = json.loads(blob(entry["digest"]))
    for descriptor in [manifest["config"], *manifest["layers"]]:
        assert len(blob(descriptor["digest"])) == descriptor["size"]
    again = write_sample_image(tmp_path / "again")  # the same bytes every time
    assert (again / "index.json").read_bytes() == (root / "index.json").read_bytes()
