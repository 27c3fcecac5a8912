"""The Dockerfile agrees with what the operator gives member pods. The image itself is built (without
Docker, hack/build-image.sh) and run in tests/image."""

from __future__ import annotations

import json

from tests.support.dockerfile import instructions


def test_dockerfile_runs_as_non_root_with_the_args_the_operator_gives_members() -> None:
    from zot_operator.names import ClusterRef
    from zot_operator.statefulset import RUN_AS, stateful_set

    steps = instructions()
    assert sum(1 for op, _ in steps if op == "FROM") >= 2, "multi-stage: no build tools in the final image"
    user = [arg for op, arg in steps if op == "USER"][-1]
    assert user.split(":")[0] == str(RUN_AS) != "0"
    entrypoint = json.loads([arg for op, arg in steps if op == "ENTRYPOINT"][-1])
    cmd = json.loads([arg for op, arg in steps if op == "CMD"][-1])
    container = stateful_set(ClusterRef("demo", "default"), "checksum", [])["spec"]["template"]["spec"]["containers"][0]
    # The operator sets only args, as for zot's own image: the entrypoint must be the registry.
    assert "command" not in container and entrypoint == ["zot-registry"] and cmd == container["args"]
