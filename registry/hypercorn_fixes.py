"""A bounded close for TLS connections in hypercorn.

Closing a TLS connection sends close_notify and waits for the peer's answer. An idle keep-alive
client (a pooled connection of another member's proxy, say) never reads it, so every such
connection held graceful shutdown for asyncio's 30 s SSL shutdown timeout: stopping a member took
half a minute per peer. Here the wait is bounded and the transport is aborted after it, which is
what Go's http.Server.Shutdown does with idle connections too.
"""

from __future__ import annotations

import asyncio

from hypercorn.asyncio.tcp_server import TCPServer

CLOSE_WAIT = 2.0
_original_initiate_close = TCPServer._initiate_server_close


async def _bounded_initiate_close(self: TCPServer) -> None:
    await _original_initiate_close(self)
    transport = self.writer.transport
    # The transport finishes closing when the peer answers close_notify; abort it if it never does.
    asyncio.get_running_loop().call_later(CLOSE_WAIT, transport.abort)


def install() -> None:
    if TCPServer._initiate_server_close is not _bounded_initiate_close:
        TCPServer._initiate_server_close = _bounded_initiate_close  # type: ignore[method-assign]
