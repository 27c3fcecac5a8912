"""Request bodies with back-pressure.

Quart's receive loop copies every chunk the client sends into the request body buffer as fast as
the socket delivers it. When the handler drains the body more slowly (a proxied upload waiting on
its peer, a disk that is busy), the buffer would grow to the size of the upload. This body tells
the receive loop to wait while more than HIGH_WATER bytes are buffered, so hypercorn stops reading
the socket and TCP slows the client down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

from quart import Request
from quart.asgi import ASGIHTTPConnection
from quart.wrappers.request import Body

HIGH_WATER = 4 << 20


class FlowControlledBody(Body):
    def __init__(self, expected_content_length: int | None, max_content_length: int | None) -> None:
        super().__init__(expected_content_length, max_content_length)
        self._room = asyncio.Event()
        self._room.set()
        self._whole = False

    async def __anext__(self) -> bytes:
        try:
            return await super().__anext__()
        finally:
            self._room.set()

    def __await__(self) -> Generator[Any, None, Any]:
        # Someone wants the whole body at once: buffering it all is the only way to give it.
        self._whole = True
        self._room.set()
        return super().__await__()

    def append(self, data: bytes) -> None:
        super().append(data)
        if len(self._data) >= HIGH_WATER and not self._whole:
            self._room.clear()

    def set_complete(self) -> None:
        super().set_complete()
        self._room.set()

    async def wait_for_room(self) -> None:
        await self._room.wait()


class FlowControlledRequest(Request):
    body_class = FlowControlledBody


class FlowControlledConnection(ASGIHTTPConnection):
    async def handle_messages(self, request: Request, receive: Any) -> None:
        body = request.body
        while True:
            if isinstance(body, FlowControlledBody):
                await body.wait_for_room()
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    body.set_complete()
            elif message["type"] == "http.disconnect":
                return
