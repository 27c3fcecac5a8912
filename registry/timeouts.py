"""zot's http.readTimeout and http.writeTimeout, on hypercorn's asyncio server.

What they bound here, and how that differs from zot (Go's http.Server, zot 2.1.17 and later):

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

Between requests hypercorn's keep_alive_timeout bounds an idle connection, and with it the total
time a client may take to send its request headers (the idle timer stops only once they are in).

hypercorn has read_timeout, but as a bound on every read of a connection, whatever its state: it
cut downloads and slow handlers as soon as the client had been silent that long, which a client
waiting for its answer always is. It has no write timeout at all. So both reads and writes of its
asyncio TCPServer are wrapped here. HTTP/2 connections (h2c only: TLS offers http/1.1) keep no
read timeout, since their streams' states are not visible from the connection.
"""

from __future__ import annotations

import asyncio
from ssl import SSLError

import h11
from hypercorn.asyncio.tcp_server import MAX_RECV, TCPServer
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Closed, Event, RawData
from hypercorn.protocol.h11 import H11Protocol


class TimeoutConfig(HypercornConfig):
    """hypercorn's Config with the write timeout it lacks (seconds; None: none)."""

    write_timeout: float | None = None


_original_protocol_send = TCPServer.protocol_send


def _awaiting_request_bytes(server: TCPServer) -> bool:
    """Whether the connection is in the middle of receiving a request (or has not had one yet)."""
    inner = getattr(getattr(server, "protocol", None), "protocol", None)
    if not isinstance(inner, H11Protocol) or not isinstance(inner.connection, h11.Connection):
        return False  # HTTP/2 or a websocket
    connection = inner.connection
    if connection.their_state is h11.SEND_BODY:
        return True
    if connection.their_state is h11.IDLE:
        # Part of the next request's headers arrived, or none yet on a brand new connection. An idle
        # keep-alive connection between requests is keep_alive_timeout's business.
        return bool(connection.trailing_data[0]) or inner.keep_alive_requests == 0
    return False  # the request is in; the registry is answering


async def _read_data(self: TCPServer) -> None:
    # hypercorn's loop, with the timeout applied only while the client owes request bytes.
    while not self.reader.at_eof():
        timeout = self.config.read_timeout if _awaiting_request_bytes(self) else None
        try:
            data = await asyncio.wait_for(self.reader.read(MAX_RECV), timeout)
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


def install() -> None:
    """Patch hypercorn's asyncio TCPServer (in each worker, before it serves)."""
    if TCPServer._read_data is not _read_data:
        TCPServer._read_data = _read_data  # type: ignore[method-assign]
        TCPServer.protocol_send = _protocol_send  # type: ignore[method-assign]
