"""Patches to hypercorn's HTTP/1.1 server (hypercorn 0.18, its asyncio TCPServer and H11Protocol),
installed in each worker by install(): how connections close, what h11's refusals answer, and
zot's read and write timeouts.

A bounded close for TLS connections. Closing a TLS connection sends close_notify and waits for the
peer's answer. An idle keep-alive client (a pooled connection of another member's proxy, say) never
reads it, so every such connection held graceful shutdown for asyncio's 30 s SSL shutdown timeout:
stopping a member took half a minute per peer. Here the wait is bounded and the transport is
aborted after it, which is what Go's http.Server.Shutdown does with idle connections too.

A lingering close. An answer given before the request body was read (a 413 for a 5 MiB manifest,
a 404 for a PATCH to an unknown session, a 408 for a stalled body) is followed by closing the
connection; the kernel answers the body bytes still arriving with a reset, and a client still
sending (http.client, aiohttp, most clients) gets "connection reset" or "broken pipe" instead of
the answer, often before reading it. So when the client is still sending, the connection lingers:
TCP is half-closed (TLS cannot be), and what arrives is read and dropped for up to LINGER_SECONDS
and LINGER_BYTES (env ZOT_HTTP_LINGER_SECONDS, ZOT_HTTP_LINGER_BYTES), or until the client closes;
Apache's lingering_close and Go's closeWriteAndWait do the same. (hypercorn keeps reading a body
the app no longer wants; streaming.py keeps hypercorn's queue toward the app from filling up.)

OCI error bodies for what h11 refuses. h11 refuses a malformed request line or header, a
malformed or conflicting Content-Length, any Transfer-Encoding but a single `chunked`; hypercorn
then answered with an empty body, and 501 for a transfer coding it does not know. Here the answer is
an OCI error (400 UNSUPPORTED with h11's reason; 431 when the headers are too large), like any other
bad request.

One write per small answer. hypercorn writes a response's head, each body chunk and its end as
separate writes, each a send(2) and, with TCP_NODELAY, a packet of its own: a manifest GET took
three. Here the head is held until the first body chunk (or the end) and leaves with it, and an
end that frames nothing (a Content-Length body's) writes nothing; the bytes, and h11's view of the
connection, are the same. Only chunks up to COALESCE_BYTES join the head: a large one is not copied.

zot's http.readTimeout and http.writeTimeout. What they bound here, and how that differs from zot
(Go's http.Server, zot 2.1.17 and later):

- readTimeout, here: how long a client may pause while it sends a request, between two reads of
  its header or body bytes, and before the first request on a new connection. Time the registry
  spends on a fully received request, and time it spends sending the answer, do not count; a
  stalled upload is cut, a steady one never is.
  zot: one deadline for reading the whole request, headers and body, counted from the start of
  the request; a 1 GiB push over a slow link fails when it runs out, however steadily it goes.
- writeTimeout, here: how long one write of the answer may wait for the client to take the bytes,
  that is how long a client may stop reading. A steady download of any size is never cut.
  zot: one deadline from the end of the request's headers to the end of the answer, handler
  time included; a long download fails when it runs out.
- Not set: no such bound (zot then uses 60 s deadlines); 0 or negative: none, as in zot.

Between requests hypercorn's keep_alive_timeout bounds an idle connection (a timer: idle_timer.py),
and with it the total time a client may take to send its request headers (the idle timer stops
only once they are in).

hypercorn has read_timeout, but as a bound on every read of a connection, whatever its state: it
cut downloads and slow handlers as soon as the client had been silent that long, which a client
waiting for its answer always is. It has no write timeout at all. So both reads and writes of its
asyncio TCPServer are wrapped here. HTTP/2 connections (h2c only: TLS offers http/1.1) keep no
read timeout, since their streams' states are not visible from the connection.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import weakref
from collections.abc import Coroutine
from ssl import SSLError
from typing import Any

import h11
from hypercorn.asyncio.tcp_server import MAX_RECV, TCPServer
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Closed, Event, RawData
from hypercorn.protocol.h11 import H11Protocol

from . import idle_timer
from .errors import HeadersTooLarge, RegistryError, RequestInvalid
from .tuning import env_int, env_seconds

CLOSE_WAIT = 2.0
LINGER_SECONDS = env_seconds("ZOT_HTTP_LINGER_SECONDS", 5.0)
LINGER_BYTES = env_int("ZOT_HTTP_LINGER_BYTES", 64 << 20)


# --------------------------------------------------------------------------------------------
# Closing connections: a bounded TLS close, a lingering close
# --------------------------------------------------------------------------------------------

_original_initiate_close = TCPServer._initiate_server_close
_original_close = TCPServer._close


async def _bounded_initiate_close(self: TCPServer) -> None:
    await _original_initiate_close(self)
    transport = self.writer.transport
    # The transport finishes closing when the peer answers close_notify; abort it if it never does.
    asyncio.get_running_loop().call_later(CLOSE_WAIT, transport.abort)


_original_h11_handle = H11Protocol.handle
# Protocols whose connection went down (hypercorn handed them Closed): nothing to linger for.
_DOWN: weakref.WeakSet[H11Protocol] = weakref.WeakSet()
# Connections that linger.
_LINGERING: weakref.WeakSet[TCPServer] = weakref.WeakSet()


async def _h11_handle(self: H11Protocol, event: Event) -> None:
    if isinstance(event, Closed):
        _DOWN.add(self)
    await _original_h11_handle(self, event)


class _Discard:
    """Stands in for the connection's protocol while it lingers: whatever the reading loop (hypercorn's,
    or _read_data below) hands over is counted and dropped."""

    def __init__(self, transport: asyncio.WriteTransport, budget: int) -> None:
        self.transport = transport
        self.budget = budget

    async def handle(self, event: Event) -> None:
        if isinstance(event, RawData):
            self.budget -= len(event.data)
            if self.budget < 0:
                self.transport.abort()


_TASKS: set[asyncio.Task[None]] = set()


def _spawn(coroutine: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(coroutine)
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


def _client_still_sending(server: TCPServer) -> bool:
    """The client is in the middle of a request we answered (or refused) without reading it whole."""
    if LINGER_SECONDS <= 0 or server.reader.at_eof() or server.writer.transport.is_closing():
        return False
    inner = getattr(getattr(server, "protocol", None), "protocol", None)
    if not isinstance(inner, H11Protocol) or not isinstance(inner.connection, h11.Connection) or inner in _DOWN:
        return False
    return inner.connection.their_state in (h11.SEND_BODY, h11.ERROR)


async def _lingering_close(self: TCPServer) -> None:
    loop = asyncio.get_running_loop()
    if self in _LINGERING:
        # The linger is over (the client closed, sent too much, or took too long), and a client that
        # lingered may not answer close_notify either.
        loop.call_later(CLOSE_WAIT, self.writer.transport.abort)
    elif _client_still_sending(self):
        # Answered, and the client still sends: read and drop instead of closing, for a while.
        _LINGERING.add(self)
        protocol, self.protocol = self.protocol, _Discard(self.writer.transport, LINGER_BYTES)  # type: ignore[assignment]
        # The request is over for the app too (h11 refused the rest of a body it was reading): hand
        # it the disconnect the reading loop will no longer deliver. A task: this may run in that loop.
        _spawn(protocol.handle(Closed()))
        try:
            if self.writer.can_write_eof():
                self.writer.write_eof()
        except (NotImplementedError, OSError, RuntimeError):
            pass
        # The reading loop then sees the end of the connection and closes it (here again).
        loop.call_later(LINGER_SECONDS, self.writer.transport.abort)
        return
    await _original_close(self)


# --------------------------------------------------------------------------------------------
# OCI error bodies for what h11 refuses
# --------------------------------------------------------------------------------------------


def _protocol_error(status_code: int) -> RegistryError:
    handled = sys.exc_info()[1]  # hypercorn calls this while handling h11's RemoteProtocolError
    reason = str(handled)[:200] if isinstance(handled, h11.RemoteProtocolError) else ""
    if status_code == 431:
        return HeadersTooLarge(f"request header fields too large{': ' + reason if reason else ''}")
    if status_code == 501:  # an unknown transfer coding: a bad request to us, not a missing feature
        return RequestInvalid(f"unsupported Transfer-Encoding ({reason or 'only chunked is accepted'})")
    return RequestInvalid(f"malformed HTTP request{': ' + reason if reason else ''}")


async def _send_error_response(self: H11Protocol, status_code: int) -> None:
    err = _protocol_error(status_code)
    body = err.body()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        (b"docker-distribution-api-version", b"registry/2.0"),
        *self.config.response_headers("h11"),
    ]
    await self._send_h11_event(h11.Response(status_code=err.status, headers=headers))
    await self._send_h11_event(h11.Data(data=body))
    await self._send_h11_event(h11.EndOfMessage())


# --------------------------------------------------------------------------------------------
# zot's read and write timeouts
# --------------------------------------------------------------------------------------------


class TimeoutConfig(HypercornConfig):
    """hypercorn's Config with the write timeout it lacks (seconds; None: none)."""

    write_timeout: float | None = None


# Larger reads of request bodies. hypercorn reads at most 64 KiB at a time: a 1 GiB push went through
# h11, hypercorn's stream, its queue to the app and the body as 16,000 pieces, each a trip through all
# four. READ_BYTES takes what the socket has buffered in fewer, larger pieces. Larger still was no
# better: beyond a few hundred KiB the copies each piece goes through stop fitting in the CPU's caches.
READ_BYTES = 256 << 10

_original_protocol_send = TCPServer.protocol_send


def _h11_connection(server: TCPServer) -> tuple[H11Protocol, h11.Connection] | None:
    """The connection's HTTP/1.1 protocol and h11 state; None for HTTP/2, a websocket, or before either."""
    inner = getattr(getattr(server, "protocol", None), "protocol", None)
    if isinstance(inner, H11Protocol) and isinstance(inner.connection, h11.Connection):
        return inner, inner.connection
    return None


def _awaiting_request_bytes(h11_state: tuple[H11Protocol, h11.Connection] | None) -> bool:
    """Whether the connection is in the middle of receiving a request (or has not had one yet)."""
    if h11_state is None:
        return False
    inner, connection = h11_state
    if connection.their_state is h11.SEND_BODY:
        return True
    if connection.their_state is h11.IDLE:
        # Part of the next request's headers arrived, or none yet on a brand new connection. An idle
        # keep-alive connection between requests is keep_alive_timeout's business.
        return bool(connection.trailing_data[0]) or inner.keep_alive_requests == 0
    return False  # the request is in; the registry is answering


def _receiving_body(h11_state: tuple[H11Protocol, h11.Connection] | None) -> bool:
    return h11_state is not None and h11_state[1].their_state is h11.SEND_BODY


async def _read_data(self: TCPServer) -> None:
    # hypercorn's loop, with the timeout applied only while the client owes request bytes, and
    # larger reads (see READ_BYTES).
    reader = self.reader
    while not reader.at_eof():
        h11_state = _h11_connection(self)
        timeout = self.config.read_timeout if _awaiting_request_bytes(h11_state) else None
        # Large reads for body bytes only: h11 bounds a request's headers (h11_max_incomplete_size)
        # only while they are incomplete, so they must keep arriving in hypercorn's smaller reads.
        size = READ_BYTES if _receiving_body(h11_state) else MAX_RECV
        try:
            if timeout is None:
                data = await reader.read(size)
            else:
                async with asyncio.timeout(timeout):
                    data = await reader.read(size)
        except (ConnectionError, OSError, TimeoutError, SSLError):
            break
        else:
            await self.protocol.handle(RawData(data))
    await self.protocol.handle(Closed())


async def _protocol_send(self: TCPServer, event: Event) -> None:
    timeout = getattr(self.config, "write_timeout", None)
    if not timeout or not isinstance(event, RawData):
        await _original_protocol_send(self, event)
        return
    async with self.send_lock:
        try:
            self.writer.write(event.data)
            await asyncio.wait_for(self.writer.drain(), timeout)
        except TimeoutError:
            # The client stopped reading: drop the connection, as hypercorn does with a broken one.
            self.writer.transport.abort()
            await self.protocol.handle(Closed())
        except (ConnectionError, RuntimeError):
            await self.protocol.handle(Closed())


# --------------------------------------------------------------------------------------------
# One write per small answer
# --------------------------------------------------------------------------------------------

COALESCE_BYTES = 64 << 10
# The serialized head of the response each protocol is answering with, not written yet.
_HELD_HEAD: weakref.WeakKeyDictionary[H11Protocol, bytes] = weakref.WeakKeyDictionary()


async def _coalescing_send_h11_event(self: H11Protocol, event: Any) -> None:
    # hypercorn's _send_h11_event, with the head held back as the module's docstring says.
    try:
        data = self.connection.send(event) or b""
    except h11.LocalProtocolError:
        if self.connection.their_state != h11.ERROR:
            raise
        return
    head = _HELD_HEAD.pop(self, b"")
    if isinstance(event, h11.Response):
        _HELD_HEAD[self] = head + data
        return
    if head and len(data) > COALESCE_BYTES:
        await self.send(RawData(data=head))
        head = b""
    if head or data:
        await self.send(RawData(data=head + data))


# The DER certificate the client of this connection presented (verified by the TLS handshake against
# the trust store), or None. Set per connection task; the request tasks it spawns inherit it.
PEER_CERTIFICATE: contextvars.ContextVar[bytes | None] = contextvars.ContextVar("peer_certificate", default=None)
_original_run = TCPServer.run


async def _run_with_peer_certificate(self: TCPServer) -> None:
    ssl_object = self.writer.get_extra_info("ssl_object")
    PEER_CERTIFICATE.set(ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None)
    await _original_run(self)


def peer_certificate() -> bytes | None:
    """The client certificate of the current request's connection (DER), if it presented one."""
    return PEER_CERTIFICATE.get()


def install() -> None:
    """Patch hypercorn (in each worker, before it serves): TCPServer's close, reading loop and writes,
    H11Protocol's events and error answers. Lingering works with either reading loop, hypercorn's or
    _read_data."""
    if TCPServer._read_data is not _read_data:
        TCPServer._initiate_server_close = _bounded_initiate_close  # type: ignore[method-assign]
        TCPServer._close = _lingering_close  # type: ignore[method-assign]
        TCPServer._read_data = _read_data  # type: ignore[method-assign]
        TCPServer.protocol_send = _protocol_send  # type: ignore[method-assign]
        H11Protocol.handle = _h11_handle  # type: ignore[method-assign]
        H11Protocol._send_error_response = _send_error_response  # type: ignore[method-assign]
        H11Protocol._send_h11_event = _coalescing_send_h11_event  # type: ignore[method-assign]
        TCPServer.run = _run_with_peer_certificate  # type: ignore[method-assign]
    idle_timer.install()
