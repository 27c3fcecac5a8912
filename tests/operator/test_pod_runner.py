"""tests.support.pod_runner against a real API server and the operator: member processes that follow
the pods as the StatefulSet creates, deletes and replaces them; and the test resolver's member pattern."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from zot_registry.cluster.hashing import owner_index

from tests.support.control_plane import ControlPlane
from tests.support.hosts import MEMBER_HOST_PATTERN, operator_hosts_env
from tests.support.images import assert_pullable, make_image, push_image
from tests.support.kubectl import Namespaces, get
from tests.support.pod_runner import PodRunner, local_path, remap_paths
from tests.support.ports import port_free_on_all
from tests.support.zotclusters import apply_cluster

RESOLVE = """
import asyncio, json, socket, sys

def address(info):
    return info[0][4][0]

async def through_the_loop(host):
    return address(await asyncio.get_running_loop().getaddrinfo(host, 5000, type=socket.SOCK_STREAM))

hosts = json.loads(sys.argv[1])
found = {host: address(socket.getaddrinfo(host, 5000, type=socket.SOCK_STREAM)) for host in hosts}
found["loop:" + hosts[0]] = asyncio.run(through_the_loop(hosts[0]))
print(json.dumps(found))
"""


def test_the_member_pattern_resolves_any_clusters_members_to_loopback() -> None:
    """What `operator_with_hosts` gives the operator: member names of namespaces made later resolve,
    in socket.getaddrinfo and in the stdlib asyncio loop; a fixed table entry wins; others as usual."""
    pinned = "demo-0.demo-members.pinned.svc.cluster.local"
    env = {**os.environ, **operator_hosts_env(), "ZOT_TEST_HOSTS": json.dumps({pinned: "127.0.0.9"})}
    hosts = [
        "demo-2.demo-members.later.svc.cluster.local",
        "web-12.web-members.team-b.svc.cluster.local",
        pinned,
        "localhost",
    ]
    result = subprocess.run(
        [sys.executable, "-c", RESOLVE, json.dumps(hosts)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        hosts[0]: "127.0.0.3",
        hosts[1]: "127.0.0.13",
        pinned: "127.0.0.9",
        "localhost": "127.0.0.1",
        f"loop:{hosts[0]}": "127.0.0.3",
    }
    # Another Service's names are not members: the headless Service is named after the cluster.
    assert re.fullmatch(MEMBER_HOST_PATTERN, "demo-1.other-members.ns.svc.cluster.local") is None


def test_in_pod_paths_become_the_files_the_runner_made(tmp_path: Path) -> None:
    mounts = {
        "/etc/zot/config.json": tmp_path / "config" / "config.json",  # a subPath mount: one file
        "/etc/zot/tls": tmp_path / "tls",
        "/etc/zot/tls/extra": tmp_path / "extra",
        "/var/lib/zot": tmp_path / "data",
    }
    config = {
        "storage": {"rootDirectory": "/var/lib/zot", "storageDriver": {"rootdirectory": "/zot"}},
        "http": {"tls": {"cert": "/etc/zot/tls/tls.crt", "key": "/etc/zot/tls/tls.key"}, "port": "5000"},
        "cluster": {"tls": {"cacert": "/etc/zot/tls/ca.crt", "cert": "/etc/zot/tls/extra/c.crt"}, "members": ["/x"]},
    }
    assert remap_paths(config, mounts) == {
        "storage": {"rootDirectory": str(tmp_path / "data"), "storageDriver": {"rootdirectory": "/zot"}},
        "http": {"tls": {"cert": str(tmp_path / "tls/tls.crt"), "key": str(tmp_path / "tls/tls.key")}, "port": "5000"},
        "cluster": {
            "tls": {"cacert": str(tmp_path / "tls/ca.crt"), "cert": str(tmp_path / "extra/c.crt")},
            "members": ["/x"],
        },
    }
    assert local_path("/etc/zot/config.json", mounts) == tmp_path / "config" / "config.json"
    assert local_path("/etc/zot/tlsx", mounts) is None  # a prefix of the name is not a folder


@pytest.mark.usefixtures("volumes")
def test_member_processes_follow_the_pods(
    control_plane: ControlPlane, operator: subprocess.Popen[str], namespaces: Namespaces, tmp_path: Path
) -> None:
    cp, ns = control_plane, namespaces.create("zot-pods")
    port = port_free_on_all(3)
    apply_cluster(cp, ns, port=port)
    with PodRunner(cp, ns, workdir=tmp_path, port=port, ordinals=3) as runner, contextlib.ExitStack() as stack:
        pids = runner.wait_running([0, 1, 2])
        for i in range(3):
            runner.wait_ready(i)
        clients = [stack.enter_context(runner.client(i)) for i in range(3)]
        roots = [runner.member(i).root for i in range(3)]
        assert roots == [tmp_path / "data" / f"member-{i}" for i in range(3)]
        key = runner.member(0).config["cluster"]["hashKey"].encode()
        names = [f"pods/app-{i}" for i in range(100)]
        at_1, at_2 = (next(n for n in names if owner_index(n, key, 3) == owner) for owner in (1, 2))
        images = {repo: make_image(repo) for repo in (at_1, at_2)}
        for repo, image in images.items():
            assert push_image(clients[0], repo, image, tag="v1").status_code == 201
        assert_pullable(clients[1], at_2, images[at_2])  # member 1 -> member 2, by its DNS name
        assert (roots[2] / at_2 / "index.json").is_file() and not (roots[0] / at_2).exists()

        # A crash: the pod stays, and the runner starts the member again for the same pod.
        pod_0 = runner.pod_uid(0)
        runner.kill(0)
        pids[0] = runner.wait_running([0], exclude_pids=[pids[0]])[0]
        assert runner.pod_uid(0) == pod_0 and runner.starts(0) == 2
        # Held, a killed member stays down until it is released.
        runner.hold(2)
        runner.kill(2)
        time.sleep(runner.restart_delay + 3 * runner.interval)  # time for a restart that must not come
        assert runner.pid(2) is None
        runner.release(2)
        pids[2] = runner.wait_running([2], exclude_pids=[pids[2]])[2]
        runner.wait_ready(2)
        assert_pullable(clients[1], at_2, images[at_2])  # member 1's connections to member 2 were cut

        # A deleted pod comes back from the StatefulSet with a new uid: a new process, the same data.
        old_uid = get(cp, "-n", ns, "pod", "demo-1")["metadata"]["uid"]
        # Without waiting: KWOK removes the pod at once and the StatefulSet makes the next one under
        # the same name, which kubectl's wait for the deletion does not notice (it ran into its timeout).
        cp.kubectl("-n", ns, "delete", "pod", "demo-1", "--wait=false")
        restarted = runner.wait_running([1], exclude_pids=[pids[1]])
        assert runner.pod_uid(1) not in (None, old_uid)
        assert runner.member(1).root == roots[1] and runner.pid(0) == pids[0] and runner.pid(2) == pids[2]
        runner.wait_ready(1)
        with runner.client(1) as fresh:  # the old client's connection went with the old process
            assert_pullable(fresh, at_1, images[at_1])
        assert_pullable(clients[0], at_1, images[at_1])  # and member 0 reaches the new process

        # A membership change: the operator replaces every pod, and member 2's pod goes for good.
        cp.kubectl("-n", ns, "scale", "zc", "demo", "--replicas", "2")
        runner.wait_stopped([2])
        runner.wait_running([0, 1], exclude_pids=[pids[0], restarted[1]])
        for i in (0, 1):
            assert len(runner.member(i).config["cluster"]["members"]) == 2
            runner.wait_ready(i)
        assert runner.pid(2) is None and runner.running() == {0, 1}
        assert (roots[2] / at_2 / "index.json").is_file()  # its data stays, like a Retained claim
