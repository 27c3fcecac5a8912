"""`zot-operator render | kubectl apply -f -` against a real API server: what render writes is accepted
whole, with the Secrets the pods mount; and what render refuses (a size that is no quantity, a resource
name that is none) is what the API server would have refused, later, in the StatefulSet."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.control_plane import ControlPlane
from tests.support.kubectl import Namespaces, get
from tests.support.paths import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"


def render(manifest: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zot_operator.cli", "render", "-f", str(manifest) if manifest else "-"],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def apply(cp: ControlPlane, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [cp.binary("kubectl"), "--kubeconfig", str(cp.kubeconfig), "apply", *args, "-f", "-"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )


def example_in(namespace: str, *edits: tuple[str, str]) -> str:
    text = (EXAMPLES / "zotcluster.yaml").read_text().replace("namespace: default", f"namespace: {namespace}")
    for old, new in edits:
        assert old in text
        text = text.replace(old, new)
    return text


def test_the_rendered_example_applies_as_it_is(control_plane: ControlPlane, namespaces: Namespaces) -> None:
    cp = control_plane
    namespace = namespaces.create("render-apply")  # with the demo-htpasswd Secret the README has one create
    rendered = render(stdin=example_in(namespace))
    assert rendered.returncode == 0, rendered.stderr
    done = apply(cp, rendered.stdout)
    assert done.returncode == 0, done.stderr
    for kind, name in (("secret", "demo-hashkey"), ("secret", "demo-tls"), ("secret", "demo-ca"), ("sts", "demo")):
        assert get(cp, "-n", namespace, kind, name) is not None, (kind, name)
    # Every Secret the pods mount exists now: the ones render made, and the user's htpasswd.
    pod = get(cp, "-n", namespace, "sts", "demo")["spec"]["template"]["spec"]
    for volume in pod["volumes"]:
        if "secret" in volume:
            assert get(cp, "-n", namespace, "secret", volume["secret"]["secretName"]) is not None, volume


def test_what_render_refuses_the_api_server_refuses_too(control_plane: ControlPlane, namespaces: Namespaces) -> None:
    namespace = namespaces.create("render-refused", htpasswd=False)
    for edit, said in (
        (("size: 20Gi", "size: 20GB"), 'spec.storage.local.size: "20GB" is not a Kubernetes quantity'),
        (
            ("limits: {memory: 1Gi}", "limits: {memroy: 1Gi}"),
            'spec.resources.limits.memroy: "memroy" is not a resource',
        ),
    ):
        # render says so at once...
        refused = render(stdin=example_in(namespace, edit))
        assert refused.returncode == 2 and said in refused.stderr, refused.stderr
        # ... where the API server would only have refused the StatefulSet made of it, later.
        objects = [o for o in yaml.safe_load_all(render(stdin=example_in(namespace)).stdout) if o]
        statefulset = next(o for o in objects if o["kind"] == "StatefulSet")
        if "size" in edit[0]:
            statefulset["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] = "20GB"
        else:
            statefulset["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] = {"memroy": "1Gi"}
        done = apply(control_plane, yaml.safe_dump(statefulset), "--dry-run=server")
        assert done.returncode != 0, f"the API server took {edit[1]}"
        # (Its words for the size name neither the field nor the value: "quantities must match the regular
        # expression ...", the reason render checks it.)
        assert ("quantities must match" if "size" in edit[0] else '"memroy"') in done.stderr, done.stderr
