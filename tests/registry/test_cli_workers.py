"""`zot-registry serve` as a process tree: one registry per port, workers that follow their parent,
stop signals, workers that die or cannot start, bad worker settings."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest
from zot_registry.supervisor import WORKER_NAME

from tests.support.checks import assert_no_traceback
from tests.support.cli import base_config, cli, error_lines, nothing_listens, write_config
from tests.support.kubectl import wait_for
from tests.support.ports import free_port
from tests.support.registry import RegistryProcess, registry_config

# ---------------------------------------------------------------------------------------------
# One port, one registry
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_second_registry_on_a_port_in_use_is_refused(
    tmp_path: Path, start_registry: Callable[..., RegistryProcess], workers: int
) -> None:
    first = start_registry(workers=2)
    config = registry_config(tmp_path / "other-root", first.port, first.host)
    result = cli("serve", str(write_config(tmp_path, config)), "--workers", str(workers), timeout=30)
    assert result.returncode == 1, result
    assert error_lines(result) == [
        f"error: {first.host}:{first.port} is already in use (another registry or "
        "program listens there); stop it or set another http.port"
    ]
    # Every connection still reaches the first one (no second listener took a share of them).
    with httpx.Client(base_url=first.url, timeout=5) as client:
        for _ in range(20):
            assert client.get("/livez").status_code == 200
    assert not (tmp_path / "other-root").exists()


def process_tree(registry: RegistryProcess) -> list[psutil.Process]:
    assert registry.process is not None
    parent = psutil.Process(registry.process.pid)
    return [parent, *parent.children(recursive=True)]


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_exit_when_the_parent_is_killed(start_registry: Callable[..., RegistryProcess], workers: int) -> None:
    registry = start_registry(workers=workers)
    parent, *children = process_tree(registry)
    assert len([c for c in children if c.name() == WORKER_NAME.decode()]) == workers
    parent.kill()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], [p.cmdline() for p in alive]
    assert nothing_listens(registry.host, registry.port)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signals_are_a_clean_exit(start_registry: Callable[..., RegistryProcess], signum: int) -> None:
    registry = start_registry(workers=2)
    assert registry.process is not None
    _, *children = process_tree(registry)
    # Ctrl-C reaches the whole process group; SIGTERM (kubelet, systemd) only the parent.
    if signum == signal.SIGINT:
        os.killpg(registry.process.pid, signum)
    else:
        registry.process.send_signal(signum)
    assert registry.process.wait(timeout=60) == 0
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    assert_no_traceback(registry.log_path.read_text(), "serve output")


def test_a_worker_that_dies_stops_the_registry_with_an_error(
    start_registry: Callable[..., RegistryProcess], tmp_path: Path
) -> None:
    config = registry_config(tmp_path / "root", free_port())
    config["log"] = {"level": "info"}  # for the line that says every worker has started
    registry = start_registry(workers=2, config=config)
    assert registry.process is not None
    # A worker killed before every worker has started is a failed start ("cannot start"), another test.
    wait_for("every worker started", lambda: "all workers started" in registry.log_path.read_text(), interval=0.1)
    _, *children = process_tree(registry)
    worker = next(c for c in children if c.name() == WORKER_NAME.decode())
    worker.kill()
    assert registry.process.wait(timeout=60) == 1
    log = registry.log_path.read_text()
    assert f"error: worker {worker.pid} stopped unexpectedly (signal SIGKILL); stopping the registry" in log
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []


def test_workers_that_cannot_start_make_serve_fail_with_one_line(tmp_path: Path) -> None:
    # /proc passes the directory checks (it exists, and root may write), yet nothing can be created
    # in it: the failure happens in the workers, after preflight.
    root = "/proc/zot-registry-test/root"
    try:
        os.makedirs(root)
    except OSError:
        pass
    else:
        pytest.skip("this machine lets /proc be written")
    config = registry_config(Path(root), free_port())
    result = cli("serve", str(write_config(tmp_path, config)), "--workers", "2", timeout=60)
    assert result.returncode == 1, result
    assert error_lines(result) == ["error: cannot start: /proc/zot-registry-test: No such file or directory"]
    assert nothing_listens("127.0.0.1", int(config["http"]["port"]))


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--workers", "0"], {}, "argument --workers: must be a number of processes, at least 1; got '0'"),
        (["--workers", "many"], {}, "argument --workers: must be a number of processes, at least 1; got 'many'"),
        ([], {"ZOT_REGISTRY_WORKERS": "many"}, "error: ZOT_REGISTRY_WORKERS must be a number of worker processes"),
        ([], {"ZOT_REGISTRY_WORKER_CLASS": "trio"}, "error: ZOT_REGISTRY_WORKER_CLASS must be uvloop or asyncio"),
    ],
)
def test_bad_worker_settings(tmp_path: Path, args: list[str], env: dict[str, str], expected: str) -> None:
    result = cli("serve", str(write_config(tmp_path, base_config(tmp_path))), *args, env=env, timeout=30)
    assert result.returncode in (1, 2) and result.returncode != 0
    assert expected in result.stderr
