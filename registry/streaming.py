"""Request bodies with back-pressure.

Quart's receive loop copies every chunk the client sends into the request body buffer as fast as
the socket delivers it. When the handler drains the body more slowly (a proxied upload waiting on
its peer, a disk that is busy), the buffer would grow to the size of the upload. This body tells
the receive loop to wait while more than HIGH_WATER bytes are buffered, so hypercorn stops reading
the socket and TCP slows the client down.

A body that sends nothing for IDLE_TIMEOUT seconds (env ZOT_HTTP_BODY_IDLE_TIMEOUT) fails with 408:
a stalled client must not hold a handler, a file or a pooled connection to a peer forever.

The connection class also guards framing before any route runs: a request with both
Transfer-Encoding and Content-Length (h11 takes the chunked body and hands both headers on) is
refused with 400 and the connection closed, on every member alike (RFC 9112 6.1), so such a request
is never routed, never proxied, and no member reads its body differently from another.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Iterable
from typing import Any, cast

from quart import Request
from quart.asgi import ASGIHTTPConnection
from quart.wrappers.request import Body
from werkzeug.exceptions import RequestEntityTooLarge

from .errors import BodyTimeout, RegistryError, RequestInvalid
from .tuning import env_seconds

HIGH_WATER = 4 << 20
IDLE_TIMEOUT = env_seconds("ZOT_HTTP_BODY_IDLE_TIMEOUT", 60.0)  # 0: no limit
# After the app returned, how long to keep taking hypercorn's messages until its disconnect.
_DISCARD_SECONDS = 60.0


class FlowControlledBody(Body):
    """Quart's Body, with back-pressure (HIGH_WATER), the idle timeout, abandon(), and pieces kept as
    they came. Quart copies each piece into one bytearray and that into bytes for the reader: two
    copies of every byte pushed. Here the reader gets the piece itself when one is waiting, and one
    join of what waits otherwise."""

    def __init__(self, expected_content_length: int | None, max_content_length: int | None) -> None:
        super().__init__(expected_content_length, max_content_length)
        self._pieces: list[bytes] = []
        self._buffered = 0
        self._room = asyncio.Event()
        self._room.set()
        self._whole = False
        self._abandoned = False
        self.stalled = False

    @property
    def complete(self) -> bool:
        """Whether the client has sent its whole body (read or not)."""
        return self._complete.is_set()

    async def __anext__(self) -> bytes:
        try:
            if self.stalled:
                raise BodyTimeout(f"the request body sent nothing for {IDLE_TIMEOUT:g} s")
            if IDLE_TIMEOUT and not self._complete.is_set() and not self._has_data.is_set():
                try:
                    async with asyncio.timeout(IDLE_TIMEOUT):
                        await self._has_data.wait()
                except TimeoutError:
                    self.stalled = True
                    raise BodyTimeout(f"the request body sent nothing for {IDLE_TIMEOUT:g} s") from None
            if self._must_raise is not None:
                raise self._must_raise
            if not self._complete.is_set():
                await self._has_data.wait()
            if not self._pieces:  # complete, and everything read
                raise StopAsyncIteration()
            pieces = self._pieces
            data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            self._pieces = []
            self._buffered = 0
            self._has_data.clear()
            return data
        finally:
            self._room.set()

    def __await__(self) -> Generator[Any, None, Any]:
        # Someone wants the whole body at once: buffering it all is the only way to give it.
        self._whole = True
        self._room.set()
        if self._must_raise is not None:
            raise self._must_raise
        yield from self._complete.wait().__await__()
        if self._must_raise is not None:
            raise self._must_raise
        return b"".join(self._pieces)

    def append(self, data: bytes) -> None:
        if self._abandoned or not data or self._must_raise is not None:
            return
        self._pieces.append(data)
        self._buffered += len(data)
        self._has_data.set()
        if self._max_content_length is not None and self._buffered > self._max_content_length:
            self._must_raise = RequestEntityTooLarge()
            self.set_complete()
        if self._buffered >= HIGH_WATER and not self._whole:
            self._room.clear()

    def abandon(self) -> None:
        """The handler answered without the rest of the body: drop what is buffered and what still
        arrives, and never hold the receive loop back again. Holding back now would block the answer
        itself: when its last part is sent, hypercorn hands the app its disconnect through the same
        queue the body arrives by, which nobody empties while the body is full (a deadlock: the
        member stopped reading, and a client still sending hung for good)."""
        self._abandoned = True
        self._pieces = []
        self._buffered = 0
        self._room.set()

    def answered(self) -> None:
        """The handler has its answer: a body the client has not finished sending is abandoned. (A
        complete one is left whole: a proxied upload may still be reading it on its way to the owner.)"""
        if not self.complete:
            self.abandon()

    def set_complete(self) -> None:
        super().set_complete()
        self._room.set()

    async def wait_for_room(self) -> None:
        await self._room.wait()


class FlowControlledRequest(Request):
    body_class = FlowControlledBody


class FlowControlledConnection(ASGIHTTPConnection):
    """Quart's connection for what Quart serves (front.py answers /v2/), with this body."""

    async def __call__(self, receive: Any, send: Any) -> None:
        self._disconnected = False
        self._body: FlowControlledBody | None = None
        if await refused_framing(self.scope["headers"], receive, send):
            return
        try:
            await super().__call__(receive, send)
        finally:
            if not self._disconnected:
                keep_receiving(receive)

    async def handle_messages(self, request: Request, receive: Any) -> None:
        self._body = cast(FlowControlledBody, request.body)
        await pump_body(self._body, receive, self._mark_disconnected)

    async def _send_response(self, send: Any, response: Any) -> None:
        if self._body is not None:
            self._body.answered()
        await super()._send_response(send, response)

    def _mark_disconnected(self) -> None:
        self._disconnected = True


async def pump_body(body: FlowControlledBody, receive: Any, on_disconnect: Callable[[], None]) -> None:
    """hypercorn's messages into `body`, waiting while it holds HIGH_WATER bytes; `on_disconnect` is
    called when the connection goes away (the stream is over: nothing more to read)."""
    while True:
        await body.wait_for_room()
        message = await receive()
        if message["type"] == "http.request":
            body.append(message.get("body", b""))
            if not message.get("more_body", False):
                body.set_complete()
        elif message["type"] == "http.disconnect":
            on_disconnect()
            return


def framing_problem(headers: Iterable[tuple[bytes, bytes]]) -> RegistryError | None:
    """Why a request's framing is refused, or None. h11 already refuses the rest: conflicting or
    malformed Content-Length, any Transfer-Encoding but one `chunked`; it folds obs-fold lines and
    merges equal Content-Length headers into one."""
    names = {name.lower() for name, _ in headers}
    if b"transfer-encoding" in names and b"content-length" in names:
        return RequestInvalid(
            "Transfer-Encoding and Content-Length together are ambiguous (RFC 9112 6.1): send one of them"
        )
    return None


async def refused_framing(headers: Iterable[tuple[bytes, bytes]], receive: Any, send: Any) -> bool:
    """Refuse a request whose framing is a problem (framing_problem) with 400 and close; True when
    refused. What arrives is taken before the answer: hypercorn hands over its disconnect through the
    queue the body arrives by once the answer is out, and a queue left full would block the answer."""
    problem = framing_problem(headers)
    if problem is None:
        return False
    keep_receiving(receive)
    await send_error(send, problem, close=True)
    return True


def has_body(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether the request's framing announces a body (RFC 9112 6.3): Transfer-Encoding, or a
    Content-Length other than 0 (h11 has already refused a malformed one)."""
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"transfer-encoding" or (lowered == b"content-length" and value.strip() not in (b"0", b"")):
            return True
    return False


async def send_error(send: Any, err: RegistryError, close: bool = False) -> None:
    """An OCI error straight through ASGI, for answers given before Quart sees the request."""
    body = err.body()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"docker-distribution-api-version", b"registry/2.0"),
    ]
    headers += [(key.lower().encode("latin-1"), value.encode("latin-1")) for key, value in err.headers.items()]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


_RECEIVING: set[asyncio.Task[None]] = set()


def keep_receiving(receive: Any) -> None:
    """hypercorn hands request data to the app through a queue of 10 messages. Once the app has
    returned nobody reads it: a client still sending its body would fill it, and hypercorn, which
    puts the final disconnect in the same queue, would block for good with the connection. So the
    rest is taken and dropped until that disconnect (hypercorn sends it as soon as the app returns,
    then lingers on the socket by itself; see hypercorn_patches)."""
    task = asyncio.get_running_loop().create_task(_discard(receive))
    _RECEIVING.add(task)
    task.add_done_callback(_RECEIVING.discard)


async def _discard(receive: Any) -> None:
    try:
        async with asyncio.timeout(_DISCARD_SECONDS):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        pass
