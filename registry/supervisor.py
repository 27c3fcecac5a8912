"""The serving processes: listening sockets bound here, hypercorn workers, and their end together.

This replaces hypercorn.run, for what it got wrong for us:

- With more than one worker it bound with SO_REUSEPORT, so a second registry on the same port
  started without complaint and the kernel split the connections between the two. The sockets are
  bound here without it, and listen before any worker starts; the workers share them (inherited
  at fork), so a port in use is one clear line and a non-zero exit.
- With one worker, the same mistake was an OSError traceback.
- Workers that failed to start (a traceback each) left run() returning 0. Here each worker reports
  "ready" or why it could not start; the first failure stops the rest, is printed once, and the
  exit code is 1. A worker that dies later stops the registry with 1 too (hypercorn did the same,
  with exit code 0 when the others had not exited yet).
- A parent killed with SIGKILL left its workers serving. Each worker asks the kernel for SIGTERM
  when its parent dies (prctl PR_SET_PDEATHSIG), and exits at once if the parent is already gone.

Workers are forked from a parent that has imported the app's modules (as gunicorn's preload_app):
the imports, about a second of CPU, are paid once per registry rather than once per worker, and
each worker only builds its app from the config. Nothing in the parent runs a thread or an event
loop before the forks.

SIGINT (Ctrl-C), SIGTERM and SIGHUP stop gracefully (hypercorn's graceful_timeout), exit code 0; a
second signal stops at once. Workers ignore SIGINT: Ctrl-C reaches the whole process group, and
only the parent decides.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import importlib
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as EventType
from types import FrameType
from typing import Any

from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets

from .allocator import tune_malloc

log = logging.getLogger("zot_registry")
_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
WORKER_NAME = b"zot-worker"  # the worker's name in ps and top (forked, its command line is the parent's)
_POLL = 0.5  # seconds between looks at the stop flag while waiting on workers
_KILL_GRACE = 5.0  # after graceful_timeout, before SIGKILL


class StartError(Exception):
    """The registry cannot start; str(err) is the one line for the user."""


# --------------------------------------------------------------------------------------------
# Listening sockets
# --------------------------------------------------------------------------------------------


def _split_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    return host.strip("[]"), int(port)


def _shown(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bind_error(host: str, port: int, err: Exception) -> str:
    where = _shown(host, port)
    if not isinstance(err, OSError):  # an address Python cannot even encode (IDNA, say)
        return f"cannot listen on {where}: {err}; check http.address"
    if isinstance(err, socket.gaierror):
        return f"cannot listen on {where}: {host!r} does not resolve ({err.strerror}); check http.address"
    if err.errno == errno.EADDRINUSE:
        return (
            f"{where} is already in use (another registry or program listens there); stop it or set another http.port"
        )
    if err.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: the address is not one of this machine's; check http.address"
    if err.errno == errno.EACCES:
        return f"cannot listen on {where}: permission denied (ports below 1024 need privileges)"
    return f"cannot listen on {where}: {err.strerror or err}"


def bind_sockets(config: HypercornConfig) -> Sockets:
    """Bind and listen on every address of config.bind, or raise StartError (nothing left open)."""
    bound: list[socket.socket] = []
    for bind in config.bind:
        host, port = _split_bind(bind)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # SO_REUSEADDR lets a restart bind while old connections linger in TIME_WAIT; on Linux it
            # never lets two sockets listen on one port. SO_REUSEPORT would, so it is not set.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            # Listening now, not when a worker gets to it, closes the window in which a second
            # registry could bind the same port too; early clients wait in the backlog.
            sock.listen(config.backlog)
        except (OSError, ValueError) as err:  # UnicodeError is a ValueError
            sock.close()
            for other in bound:
                other.close()
            raise StartError(_bind_error(host, port, err)) from None
        sock.setblocking(False)
        sock.set_inheritable(True)
        bound.append(sock)
    if config.ssl_enabled:
        return Sockets(secure_sockets=bound, insecure_sockets=[], quic_sockets=[])
    return Sockets(secure_sockets=[], insecure_sockets=bound, quic_sockets=[])


# --------------------------------------------------------------------------------------------
# In each worker
# --------------------------------------------------------------------------------------------


def _die_with_parent(parent: int) -> None:
    """Make the kernel end this worker when the parent dies, whatever killed it."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            armed = ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="parent-watch").start()
    if os.getppid() != parent:
        os._exit(1)  # the parent died before the request took effect


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def describe(err: BaseException) -> list[str]:
    """An exception as lines for the user, without a traceback."""
    messages = getattr(err, "messages", None)  # ConfigError: already one line per problem
    if isinstance(messages, list) and messages:
        return [str(message) for message in messages]
    if isinstance(err, OSError) and err.strerror:
        return [f"{err.filename}: {err.strerror}" if err.filename else err.strerror]
    return [f"{type(err).__name__}: {err}"]


def _hypercorn_worker(worker_class: str) -> Callable[..., None]:
    if worker_class == "uvloop":
        from hypercorn.asyncio.run import uvloop_worker

        return uvloop_worker
    from hypercorn.asyncio.run import asyncio_worker

    return asyncio_worker


def preload(modules: tuple[str, ...]) -> None:
    """Import, in the parent, the modules the workers' app is made of (not the application module
    itself: it builds the app, which opens caches and clients that belong to one process)."""
    for name in modules:
        importlib.import_module(name)


def worker_main(
    config: HypercornConfig, sockets: Sockets, shutdown_event: EventType, report: Connection, parent: int, debug: bool
) -> None:
    """A worker process: load the app, say whether that worked, then serve until told to stop."""
    # Forked with the parent's handlers: a SIGTERM (the parent's death, say) ends this worker only.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    _die_with_parent(parent)
    if sys.platform.startswith("linux"):
        # A name for people looking at processes; nothing depends on it.
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(_PR_SET_NAME, ctypes.c_char_p(WORKER_NAME), 0, 0, 0)
    tune_malloc()
    from hypercorn.utils import load_application

    try:
        # hypercorn's worker loads it again, from the module cache.
        load_application(config.application_path, config.wsgi_max_body_size)
    except Exception as err:
        if debug:
            traceback.print_exc()
        report.send(describe(err))
        sys.exit(1)
    report.send([])
    report.close()
    try:
        _hypercorn_worker(config.worker_class)(config=config, sockets=sockets, shutdown_event=shutdown_event)
    except Exception as err:
        if debug:
            traceback.print_exc()
        hint = "" if debug else " (log.level debug shows where)"
        print(f"error: worker {os.getpid()} stopped: {describe(err)[0]}{hint}", file=sys.stderr, flush=True)
        sys.exit(1)


# --------------------------------------------------------------------------------------------
# In the parent
# --------------------------------------------------------------------------------------------


@dataclass
class _Worker:
    process: BaseProcess
    report: Connection
    ready: bool = False


def _exit_status(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class Supervisor:
    def __init__(
        self,
        config: HypercornConfig,
        sockets: Sockets,
        workers: int,
        debug: bool = False,
        preloaded: tuple[str, ...] = (),
    ) -> None:
        self.config, self.sockets, self.count, self.debug = config, sockets, workers, debug
        self.preloaded = ("hypercorn.asyncio.run", "hypercorn.utils", *preloaded)
        self.context = get_context("fork")
        self.shutdown = self.context.Event()
        self.signals = 0
        self.workers: list[_Worker] = []

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals += 1
        self.shutdown.set()

    def run(self) -> int:
        """Serve until a signal (0) or a failure (1)."""
        try:
            preload(self.preloaded)
        except Exception as err:
            if self.debug:
                traceback.print_exc()
            for line in dict.fromkeys(describe(err)):
                print(f"error: cannot start: {line}", file=sys.stderr, flush=True)
            return 1
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        # Ignored while spawning, so that the workers inherit SIG_IGN for it.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for _ in range(self.count):
                self._spawn()
        finally:
            signal.signal(signal.SIGINT, self._on_signal)
        failures = self._wait_ready()
        if failures:
            for line in dict.fromkeys(failures):  # the same reason from every worker: once
                print(f"error: cannot start: {line}", file=sys.stderr, flush=True)
            self._stop()
            return 1
        if self.signals:
            return self._stop()
        # From here a worker's end is a failure, not a failed start: the line says when that begins.
        log.info("all workers started", extra={"workers": self.count})
        died = self._watch()
        if died is not None:
            print(
                f"error: worker {died.process.pid} stopped unexpectedly ({_exit_status(died.process.exitcode)}); "
                "stopping the registry",
                file=sys.stderr,
                flush=True,
            )
            self._stop()
            return 1
        return self._stop()

    def _spawn(self) -> None:
        receive, send = self.context.Pipe(duplex=False)
        kwargs: dict[str, Any] = {
            "config": self.config,
            "sockets": self.sockets,
            "shutdown_event": self.shutdown,
            "report": send,
            "parent": os.getpid(),
            "debug": self.debug,
        }
        process = self.context.Process(target=worker_main, kwargs=kwargs, name="zot-registry-worker")
        process.start()
        send.close()
        self.workers.append(_Worker(process, receive))

    def _wait_ready(self) -> list[str]:
        """Until every worker has loaded the app; the reasons of those that could not."""
        failures: list[str] = []
        pending = {worker.report: worker for worker in self.workers}
        while pending and not failures and not self.signals:
            for ready in wait(list(pending), timeout=_POLL):
                worker = pending.pop(ready)  # type: ignore[call-overload]
                try:
                    lines: list[str] = worker.report.recv()
                except (EOFError, OSError):
                    worker.process.join(1.0)
                    lines = [f"a worker exited while starting ({_exit_status(worker.process.exitcode)})"]
                worker.report.close()
                worker.ready = not lines
                failures.extend(lines)
        return failures

    def _watch(self) -> _Worker | None:
        """Until a signal (None) or a worker's unexpected end (that worker)."""
        by_sentinel = {worker.process.sentinel: worker for worker in self.workers}
        while not self.signals:
            ended = wait(list(by_sentinel), timeout=_POLL)
            if ended and not self.signals:  # after a signal, workers end because they were told to
                worker = by_sentinel[ended[0]]  # type: ignore[index]
                worker.process.join(1.0)  # sets exitcode
                return worker
        return None

    def _stop(self) -> int:
        """Stop every worker: gracefully, then, past the grace period or on a second signal, by force."""
        self.shutdown.set()
        signals = self.signals
        deadline = time.monotonic() + self.config.graceful_timeout + _KILL_GRACE
        for worker in self.workers:
            while worker.process.is_alive() and time.monotonic() < deadline and self.signals <= max(signals, 1):
                worker.process.join(_POLL)
        forced = False
        for worker in self.workers:
            if worker.process.is_alive():
                forced = True
                worker.process.kill()
                worker.process.join()
        failed = [w for w in self.workers if w.ready and w.process.exitcode not in (0, None) and not forced]
        for worker in failed:
            print(
                f"error: worker {worker.process.pid} ended with {_exit_status(worker.process.exitcode)} while stopping",
                file=sys.stderr,
                flush=True,
            )
        return 1 if failed else 0
