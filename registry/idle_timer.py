"""hypercorn's keep-alive timeout as a timer instead of a task per request.

hypercorn (0.18, asyncio) bounds an idle keep-alive connection with a task: when a response ends it
starts one that waits, through asyncio.wait_for, on the worker's "terminated" event for
keep_alive_timeout; when the next request arrives it cancels that task and waits for it to finish.
Each request so paid for two tasks (the idle task and wait_for's inner one), their cancellation and
two locks: about a tenth of a manifest GET's CPU. Here the same bound is a loop timer, cancelled
and re-armed per request, and one task per worker closes the idle connections when the worker is
told to stop, as hypercorn's idle tasks did.

Installed by hypercorn_patches.install(), with hypercorn's other patches.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.typing import TaskGroup, WorkerContext

# Per worker context: the connections idle now, and the task that closes them when it terminates.
_IDLE: weakref.WeakKeyDictionary[WorkerContext, weakref.WeakSet[IdleTimer]] = weakref.WeakKeyDictionary()
_WATCHERS: set[asyncio.Task[None]] = set()


class IdleTimer:
    """Stands in for TCPServer.idle_task (hypercorn's SingleTask): restart() arms the timer, stop()
    disarms it; when it fires, the connection is closed as hypercorn's _idle_timeout closes it."""

    __slots__ = ("__weakref__", "_handle", "_server")

    def __init__(self, server: TCPServer) -> None:
        self._server = server
        self._handle: asyncio.TimerHandle | None = None

    async def restart(self, task_group: TaskGroup, action: Callable[[], Any]) -> None:
        # `action` is hypercorn's _idle_timeout; its bound (keep_alive_timeout) is kept, its task is not.
        self._disarm()
        server = self._server
        if server.context.terminated.is_set():
            self._expire()  # stopping: an idle connection closes now
            return
        self._handle = asyncio.get_running_loop().call_later(server.config.keep_alive_timeout, self._expire)
        _idle_in(server.context).add(self)

    async def stop(self) -> None:
        self._disarm()

    def _disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
            _idle_in(self._server.context).discard(self)

    def _expire(self) -> None:
        self._disarm()
        task = asyncio.get_running_loop().create_task(self._server._initiate_server_close())
        _WATCHERS.add(task)
        task.add_done_callback(_WATCHERS.discard)


def _idle_in(context: WorkerContext) -> weakref.WeakSet[IdleTimer]:
    idle = _IDLE.get(context)
    if idle is None:
        idle = _IDLE[context] = weakref.WeakSet()
        task = asyncio.get_running_loop().create_task(_close_idle_when_terminated(context, idle))
        _WATCHERS.add(task)
        task.add_done_callback(_WATCHERS.discard)
    return idle


async def _close_idle_when_terminated(context: WorkerContext, idle: weakref.WeakSet[IdleTimer]) -> None:
    await context.terminated.wait()
    for timer in list(idle):
        timer._expire()


_original_init = TCPServer.__init__


def _init_with_idle_timer(self: TCPServer, *args: Any, **kwargs: Any) -> None:
    _original_init(self, *args, **kwargs)
    self.idle_task = IdleTimer(self)  # type: ignore[assignment]


def install() -> None:
    if TCPServer.__init__ is not _init_with_idle_timer:
        TCPServer.__init__ = _init_with_idle_timer  # type: ignore[method-assign]
