"""An in-place membership change on shared storage (zot's S3 + redis example): every member sees every
repository, so nothing is copied, no write waits, and no member restarts."""

from __future__ import annotations

from pathlib import Path

from tests.support.images import make_image
from tests.support.rebalance import ControlClient, Workload
from tests.support.registry import RegistryProcess, stop_all
from tests.support.s3 import S3_ENV
from tests.support.shared_cluster import SharedCluster, address


def _member_list(cluster: SharedCluster, count: int) -> list[str]:
    return [f"{address(i)}:{cluster.port}" for i in range(count)]


def test_a_resize_in_place_moves_nothing_and_refuses_nothing(s3_redis_cluster: SharedCluster) -> None:
    cluster = s3_redis_cluster
    control = ControlClient(cluster.certs.ca, cluster.certs.cert, cluster.certs.key)
    current = {"members": _member_list(cluster, 3)}
    repositories = [f"shared/app-{i}" for i in range(12)]
    workload = Workload(lambda: [f"https://{m}" for m in current["members"]], cluster.certs.ca, None, repositories)
    with workload.client() as http:
        for repo in repositories:
            assert workload.push(http, repo, "v1", make_image(repo)), workload.stats.failures
    pids = [member.process.pid for member in cluster.members if member.process]
    added: list[RegistryProcess] = []
    workload.start(pushers=2, pullers=2)
    try:
        # 3 -> 5: the new members start with the current list, as new pods start with the ConfigMap.
        for index in (3, 4):
            folder = cluster.folder / f"member-{index}"
            folder.mkdir(parents=True, exist_ok=True)
            config = cluster.member_config(index, 3)
            env = {**S3_ENV, "SSL_CERT_FILE": str(cluster.certs.ca)}
            added.append(RegistryProcess(folder / "config.json", config, folder / "registry.log", workers=1, env=env))
            added[-1].start()
        urls = [f"https://{address(i)}:{cluster.port}" for i in range(5)]
        five = _member_list(cluster, 5)
        control.run_change(urls, 1, current["members"], five)
        current["members"] = five
        # 5 -> 2: the leaving members stop after the switch.
        two = _member_list(cluster, 2)
        control.run_change(urls, 2, five, two)
        current["members"] = two
    finally:
        workload.stop()
        control.close()
        stop_all(added)
    stats = workload.stats
    print(f"\n{stats.pushes} pushes, {stats.pulls} pulls, {stats.refused_writes} refused writes")
    assert stats.failures == [], "\n".join(stats.failures[:20])
    assert stats.refused_writes == 0  # nothing moves: no write ever waits
    assert workload.check_everything_pulls([f"https://{m}" for m in two]) == []
    # The original members were never restarted.
    assert [member.process.pid for member in cluster.members[:3] if member.process] == pids
    assert all(Path(m.config["storage"]["rootDirectory"]).is_dir() for m in cluster.members)
