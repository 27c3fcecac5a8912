"""`zot-registry verify` and `serve` as real processes: refusals, file checks, ports, signals, timeouts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.support.certs import make_certs
from tests.support.checks import assert_no_traceback
from tests.support.config_cases import RESTRICTIVE
from tests.support.images import sha256
from tests.support.ports import free_port
from tests.support.registry import RegistryProcess, registry_config, write_htpasswd


def cli(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "zot_registry.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert_no_traceback(result.stdout + result.stderr, f"zot-registry {' '.join(args)}")
    return result


def write_config(folder: Path, config: dict[str, Any], name: str = "config.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(config, indent=2))
    return path


def base_config(tmp_path: Path, port: int | None = None, **http: Any) -> dict[str, Any]:
    return registry_config(tmp_path / "root", port or free_port(), **http)


def nothing_listens(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return True
    return False


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


# ---------------------------------------------------------------------------------------------
# Settings that restrict access, which we do not enforce: refused by verify and by serve
# ---------------------------------------------------------------------------------------------


def restrictive_config(tmp_path: Path, doc: dict[str, Any]) -> dict[str, Any]:
    config = base_config(tmp_path)
    for section, values in doc.items():
        config[section] = {**config.get(section, {}), **values}
    return config


@pytest.mark.parametrize(("key", "doc"), RESTRICTIVE, ids=[f"{key}-{i}" for i, (key, _) in enumerate(RESTRICTIVE)])
def test_verify_refuses_restrictive_settings(tmp_path: Path, key: str, doc: dict[str, Any]) -> None:
    path = write_config(tmp_path, restrictive_config(tmp_path, doc))
    result = cli("verify", str(path))
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert any(f": {key}: " in line and line.endswith("; remove it or run zot") for line in error_lines(result)), (
        result.stderr
    )


@pytest.mark.parametrize(("key", "doc"), RESTRICTIVE, ids=[f"{key}-{i}" for i, (key, _) in enumerate(RESTRICTIVE)])
def test_serve_refuses_to_start_with_restrictive_settings(tmp_path: Path, key: str, doc: dict[str, Any]) -> None:
    config = restrictive_config(tmp_path, doc)
    result = cli("serve", str(write_config(tmp_path, config)), "--workers", "1", timeout=30)
    assert result.returncode == 1, result
    assert any(f": {key}: " in line for line in error_lines(result)), result.stderr
    assert nothing_listens("127.0.0.1", int(config["http"]["port"]))


# ---------------------------------------------------------------------------------------------
# Files the config names
# ---------------------------------------------------------------------------------------------


def both_refuse(path: Path, expected: str) -> None:
    """verify and serve: exit code 1 and exactly one error line, containing `expected`."""
    for command in (["verify", str(path)], ["serve", str(path), "--workers", "1"]):
        result = cli(*command, timeout=30)
        assert result.returncode == 1, result
        lines = error_lines(result)
        assert len(lines) == 1 and expected in lines[0], result.stderr


def test_missing_htpasswd_file(tmp_path: Path) -> None:
    config = base_config(tmp_path, auth={"htpasswd": {"path": str(tmp_path / "missing.htpasswd")}})
    path = write_config(tmp_path, config)
    both_refuse(path, f"http.auth.htpasswd.path: {tmp_path / 'missing.htpasswd'}: no such file")
    assert nothing_listens("127.0.0.1", int(config["http"]["port"]))


def test_htpasswd_that_is_a_directory(tmp_path: Path) -> None:
    path = write_config(tmp_path, base_config(tmp_path, auth={"htpasswd": {"path": str(tmp_path)}}))
    both_refuse(path, "is a directory, not a file")


@pytest.mark.parametrize("missing", ["cert", "key"])
def test_missing_tls_file(tmp_path: Path, missing: str) -> None:
    certs = make_certs(tmp_path / "tls", ["127.0.0.1"])
    tls = {"cert": str(certs.cert), "key": str(certs.key), missing: str(tmp_path / "nope.pem")}
    path = write_config(tmp_path, base_config(tmp_path, tls=tls))
    both_refuse(path, f"http.tls.{missing}: {tmp_path / 'nope.pem'}: no such file")


def test_certificate_and_key_that_do_not_match(tmp_path: Path) -> None:
    one, other = make_certs(tmp_path / "one", ["127.0.0.1"]), make_certs(tmp_path / "other", ["127.0.0.1"])
    path = write_config(tmp_path, base_config(tmp_path, tls={"cert": str(one.cert), "key": str(other.key)}))
    both_refuse(path, f"http.tls.key: {other.key}: does not belong to the certificate {one.cert}")


def test_key_given_as_certificate_and_garbage_certificate(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "tls", ["127.0.0.1"])
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    path = write_config(tmp_path, base_config(tmp_path, tls={"cert": str(garbage), "key": str(certs.cert)}))
    result = cli("verify", str(path))
    assert result.returncode == 1
    lines = error_lines(result)
    assert len(lines) == 2
    assert lines[0].endswith(f"http.tls.cert: {garbage}: not a PEM certificate")
    assert lines[1].endswith(f"http.tls.key: {certs.cert}: not a PEM private key")


def test_cluster_tls_files_are_checked(tmp_path: Path) -> None:
    config = base_config(tmp_path)
    config["cluster"] = {
        "members": ["127.0.0.1:1", "127.0.0.2:1"],
        "hashKey": "loremipsumdolors",
        "tls": {"cacert": str(tmp_path / "ca.crt")},
    }
    both_refuse(write_config(tmp_path, config), f"cluster.tls.cacert: {tmp_path / 'ca.crt'}: no such file")


def test_log_output_in_a_missing_directory(tmp_path: Path) -> None:
    config = base_config(tmp_path)
    config["log"]["output"] = str(tmp_path / "no" / "such" / "registry.log")
    both_refuse(write_config(tmp_path, config), f"the directory {tmp_path / 'no' / 'such'} does not exist")


def test_every_file_problem_is_reported_at_once(tmp_path: Path) -> None:
    config = base_config(
        tmp_path,
        tls={"cert": str(tmp_path / "c.pem"), "key": str(tmp_path / "k.pem")},
        auth={"htpasswd": {"path": str(tmp_path / "h")}},
    )
    result = cli("verify", str(write_config(tmp_path, config)))
    assert result.returncode == 1
    assert [line.split(": ")[2] for line in error_lines(result)] == [
        "http.tls.cert",
        "http.tls.key",
        "http.auth.htpasswd.path",
    ]


def test_verify_ok_with_real_files(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "tls", ["127.0.0.1"])
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"admin": "secret"})
    config = base_config(
        tmp_path, tls={"cert": str(certs.cert), "key": str(certs.key)}, auth={"htpasswd": {"path": str(htpasswd)}}
    )
    config["log"]["output"] = str(tmp_path / "registry.log")
    path = write_config(tmp_path, config)
    result = cli("verify", str(path))
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{path}: ok\n", "")


def test_htpasswd_entries_that_cannot_log_in_are_warned_about(tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("# users\nold:$apr1$abcdefgh$0123456789abcdefghij/.\n")
    path = write_config(tmp_path, base_config(tmp_path, auth={"htpasswd": {"path": str(htpasswd)}}))
    result = cli("verify", str(path))
    assert result.returncode == 0, result
    assert f"{htpasswd}:2: the password of 'old' is not a bcrypt hash (create it with htpasswd -B)" in result.stderr
    htpasswd.write_text("")
    result = cli("verify", str(path))
    assert result.returncode == 0 and "has no user:password lines; nobody can log in" in result.stderr


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


def wait_for_log(registry: RegistryProcess, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in registry.log_path.read_text():
        assert time.monotonic() < deadline, f"{text!r} never appeared in {registry.log_path}"
        time.sleep(0.1)


def process_tree(registry: RegistryProcess) -> list[psutil.Process]:
    assert registry.process is not None
    parent = psutil.Process(registry.process.pid)
    return [parent, *parent.children(recursive=True)]


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_exit_when_the_parent_is_killed(start_registry: Callable[..., RegistryProcess], workers: int) -> None:
    registry = start_registry(workers=workers)
    parent, *children = process_tree(registry)
    assert len([c for c in children if "spawn_main" in " ".join(c.cmdline())]) == workers
    parent.kill()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], [p.cmdline() for p in alive]
    assert nothing_listens(registry.host, registry.port)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signals_are_a_clean_exit(start_registry: Callable[..., RegistryProcess], signum: int) -> None:
    registry = start_registry(workers=2)
    assert registry.process is not None
    # A worker killed before every worker has started is a failed start ("cannot start"), another test.
    wait_for_log(registry, "all workers started")
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
    wait_for_log(registry, "all workers started")
    _, *children = process_tree(registry)
    worker = next(c for c in children if "spawn_main" in " ".join(c.cmdline()))
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


# ---------------------------------------------------------------------------------------------
# http.readTimeout and http.writeTimeout: progress bounds, not deadlines (see registry/hypercorn_patches.py)
# ---------------------------------------------------------------------------------------------

BIG = 16 << 20  # more than the socket buffers of both ends hold, so the server must wait for the client


def serve_with(tmp_path: Path, name: str, **http: Any) -> Iterator[RegistryProcess]:
    folder = tmp_path / name
    folder.mkdir()
    registry = RegistryProcess(
        folder / "config.json",
        registry_config(folder / "root", free_port(), **http),
        folder / "registry.log",
        workers=1,
    )
    registry.start()
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture
def read_bounded(tmp_path: Path) -> Iterator[RegistryProcess]:
    yield from serve_with(tmp_path, "read", readTimeout="1s")


@pytest.fixture
def write_bounded(tmp_path: Path) -> Iterator[RegistryProcess]:
    yield from serve_with(tmp_path, "write", writeTimeout="1s")


def connect(registry: RegistryProcess, receive_buffer: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(15)
    sock.connect((registry.host, registry.port))
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def upload_head(blob: bytes) -> bytes:
    return (
        f"POST /v2/slow/blobs/uploads/?digest={sha256(blob)} HTTP/1.1\r\nHost: registry\r\n"
        f"Content-Length: {len(blob)}\r\nConnection: close\r\n\r\n"
    ).encode()


def push_big_blob(registry: RegistryProcess) -> bytes:
    blob = os.urandom(BIG)
    with httpx.Client(base_url=registry.url, timeout=60) as client:
        response = client.post("/v2/big/blobs/uploads/", params={"digest": sha256(blob)}, content=blob)
        assert response.status_code == 201, response.text
    return blob


def test_read_timeout_cuts_a_stalled_upload(read_bounded: RegistryProcess) -> None:
    blob = os.urandom(1000)
    with connect(read_bounded) as sock:
        sock.sendall(upload_head(blob) + blob[:10])
        started = time.monotonic()
        read_all(sock)  # the server closes the connection
        assert time.monotonic() - started < 8
    with httpx.Client(base_url=read_bounded.url) as client:
        assert client.head(f"/v2/slow/blobs/{sha256(blob)}").status_code == 404


def test_read_timeout_lets_a_slow_but_steady_upload_through(read_bounded: RegistryProcess) -> None:
    blob = os.urandom(1000)
    with connect(read_bounded) as sock:
        sock.sendall(upload_head(blob))
        for offset in range(0, len(blob), 100):  # 3 s in all, longer than readTimeout, never idle for it
            time.sleep(0.3)
            sock.sendall(blob[offset : offset + 100])
        assert read_all(sock).startswith(b"HTTP/1.1 201")


def test_read_timeout_does_not_cut_a_long_download(read_bounded: RegistryProcess) -> None:
    # The client sends nothing while it downloads; hypercorn's own read_timeout closed the
    # connection after that long, in the middle of the answer.
    blob = push_big_blob(read_bounded)
    with connect(read_bounded, receive_buffer=64 << 10) as sock:
        sock.sendall(f"GET /v2/big/blobs/{sha256(blob)} HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n".encode())
        time.sleep(2.5)
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer.endswith(blob)


def test_write_timeout_cuts_a_client_that_stops_reading(write_bounded: RegistryProcess) -> None:
    blob = push_big_blob(write_bounded)
    with connect(write_bounded, receive_buffer=64 << 10) as sock:
        sock.sendall(f"GET /v2/big/blobs/{sha256(blob)} HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n".encode())
        time.sleep(4)
        try:
            answer = read_all(sock)
        except ConnectionResetError:
            answer = b""
    assert len(answer) < len(blob)
    with httpx.Client(base_url=write_bounded.url, timeout=60) as client:  # a reading client gets it all
        assert client.get(f"/v2/big/blobs/{sha256(blob)}").content == blob
