"""The ASGI application in front of Quart: requests under /v2/ are answered here, the rest by Quart.

A manifest GET through Quart ran two tasks per request (the handler and a body reader, then
asyncio.wait and cancellation), pushed an app and a request context, matched werkzeug URL rules
and built werkzeug headers for the request: a quarter of its CPU. The /v2/ API has one dispatcher
(app.py) and its own routing table (routing.py), so none of that is needed here. The body reader
runs only when the request has a body; the response is Quart's Response object, sent as Quart would,
in one body message when its data is at hand.

Quart keeps the lifespan (before/after serving), the probes, metrics and the cluster's control API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast
from urllib.parse import urlsplit

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope
from quart import Quart, Response
from quart.wrappers.response import DataBody

from ..streaming import (
    FlowControlledBody,
    has_body,
    keep_receiving,
    pump_body,
    refused_framing,
)
from .failures import unexpected_response
from .requests import RegistryRequest, done_serving, serving

Dispatch = Callable[[str], Awaitable[Response]]
PREFIX = "/v2/"


class Front:
    def __init__(self, app: Quart, dispatch: Dispatch) -> None:
        self.app = app
        self.dispatch = dispatch

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] == "http" and _target_path(scope["path"]).startswith(PREFIX):
            await self._serve(cast(dict[str, Any], scope), receive, send)
        else:
            await self.app(scope, receive, send)

    async def _serve(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if await refused_framing(scope["headers"], receive, send):
            return
        body = FlowControlledBody(None, None)
        request = RegistryRequest(scope, body)
        task = asyncio.current_task()
        assert task is not None
        state = _Answering(task, body, receive)
        if has_body(scope["headers"]):
            state.watch()
        else:
            # Nothing to read: hypercorn's queue holds one empty message and, later, the disconnect.
            # A watcher costs two tasks per request; it starts only if the answer is streamed.
            body.set_complete()
        token = serving(request)
        try:
            try:
                response = await self.dispatch(request.path[len(PREFIX) :])
            except Exception as err:  # a bug of ours: logged whole, an OCI 500, never a traceback
                response = unexpected_response(err)
            body.answered()
            await _send(send, response, state)
        except asyncio.CancelledError:
            if not state.disconnected:
                raise  # the server is stopping
            task.uncancel()
        finally:
            state.answered = True
            done_serving(token)
            state.stop_watching()
            if not state.disconnected and not body.complete:
                # The client may still be sending a body nobody reads (streaming.keep_receiving).
                keep_receiving(receive)


class _Answering:
    """Where the answer to one request stands, and the watcher that feeds its body and notices the
    client going away."""

    __slots__ = ("answered", "body", "disconnected", "reader", "receive", "task")

    def __init__(self, task: asyncio.Task[Any], body: FlowControlledBody, receive: Any) -> None:
        self.task = task
        self.body = body
        self.receive = receive
        self.reader: asyncio.Task[None] | None = None
        self.answered = False
        self.disconnected = False

    def watch(self) -> None:
        if self.reader is None:
            self.reader = asyncio.get_running_loop().create_task(pump_body(self.body, self.receive, self._gone))

    def stop_watching(self) -> None:
        if self.reader is not None:
            self.reader.cancel()

    def _gone(self) -> None:
        # The client went away: stop answering it (a blob being streamed, a proxied request), as
        # Quart cancelled its handler task. Once answered there is nothing to stop.
        self.disconnected = True
        if not self.answered:
            self.task.cancel()


def _target_path(path: str) -> str:
    # Absolute form (`GET http://host/v2/...`): routed by its path, as Quart does.
    return path if path.startswith("/") else urlsplit(path).path


async def _send(send: Any, response: Response, state: _Answering) -> None:
    # As Quart's ASGIHTTPConnection sends a response, with data at hand in one body message.
    headers = [(key.lower().encode(), value.encode()) for key, value in response.headers.items()]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    body = response.response
    if isinstance(body, DataBody):
        data = body.data if body.begin == 0 and body.end == len(body.data) else body.data[body.begin : body.end]
        await send({"type": "http.response.body", "body": data, "more_body": False})
        return
    # A streamed answer (a blob, a proxied one) may take long: stop it if the client goes away.
    state.watch()
    async with body as chunks:
        async for data in chunks:
            chunk = data.encode() if isinstance(data, str) else data
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
