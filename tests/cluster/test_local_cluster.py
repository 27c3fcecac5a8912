"""`zot-registry local-cluster`: a whole cluster on one machine, stopped cleanly by Ctrl-C or a closed terminal."""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support.images import make_image, push_image
from tests.support.ports import port_free_on_all


@contextlib.contextmanager
def local_cluster(folder: Path) -> Iterator[tuple[subprocess.Popen[str], list[str], ssl.SSLContext]]:
    """`zot-registry local-cluster --members 3` in `folder`, once every member is ready: the process, the
    members' URLs and a context trusting its CA. Its process group is killed when the block ends."""
    port = port_free_on_all(3)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zot_registry.cli",
            "local-cluster",
            "--members",
            "3",
            "--port",
            str(port),
            "--dir",
            str(folder),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )  # its own group, so that a failed test leaves no member
    try:
        urls = [f"https://127.0.0.{i}:{port}" for i in (1, 2, 3)]
        yield process, urls, wait_ready(folder, urls)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_ready(folder: Path, urls: list[str]) -> ssl.SSLContext:
    deadline = time.monotonic() + 60
    while not (folder / "ca.crt").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    context = ssl.create_default_context(cafile=str(folder / "ca.crt"))
    while time.monotonic() < deadline:
        try:
            if all(httpx.get(f"{url}/readyz", verify=context).status_code == 200 for url in urls):
                return context
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("local cluster did not become ready in 60 s")


def assert_stopped(urls: list[str], context: ssl.SSLContext, within: float = 45.0) -> None:
    deadline = time.monotonic() + within
    running = list(urls)
    while running and time.monotonic() < deadline:
        for url in list(running):
            try:
                httpx.get(f"{url}/livez", verify=context, timeout=1)
            except httpx.ConnectError:
                running.remove(url)
            except (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError):
                # A stopping member on a loaded machine (slow to answer, or closing the connection it
                # had just accepted): not gone yet, ask again.
                pass
        time.sleep(0.2)
    assert not running, f"still answering after the supervisor was told to stop: {running}"


def test_local_cluster_stops_its_members_when_its_terminal_is_gone(tmp_path: Path) -> None:
    """stdout is a pipe that nobody reads any more, then SIGHUP (a closed terminal): printing fails,
    and every member must stop all the same."""
    with local_cluster(tmp_path / "local") as (process, urls, context):
        assert process.stdout is not None
        process.stdout.close()
        process.send_signal(signal.SIGHUP)
        assert_stopped(urls, context)
        process.wait(timeout=30)


def test_local_cluster_runs_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    with local_cluster(tmp_path / "local") as (process, urls, context):
        image = make_image("local")
        with (
            httpx.Client(base_url=urls[0], verify=context) as first,
            httpx.Client(base_url=urls[2], verify=context) as last,
        ):
            assert push_image(first, "local/demo", image, tag="v1").status_code == 201
            assert last.get("/v2/local/demo/manifests/v1").content == image.manifest
            assert "local/demo" in last.get("/v2/_catalog").json()["repositories"]
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
        assert process.returncode == 0, output
        assert "all members stopped" in output
        for url in urls:
            try:
                httpx.get(f"{url}/livez", verify=context, timeout=1)
                raise AssertionError(f"{url} still answers after Ctrl-C")
            except httpx.ConnectError:
                pass
