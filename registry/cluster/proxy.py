"""Forwarding a request to the member that owns its repository, streaming both ways.

One pooled keep-alive aiohttp session per worker (aiohttp's C parser moves blobs several times
faster than a pure-Python client and adds about a millisecond less per request). Method, path,
query, headers (Authorization included) and body go through unchanged but for hop-by-hop headers;
the owner sees `X-Zot-Cluster-Hop-Count: 1`, and the identity of a client certificate as the
member vouches for it (authn/current.py). Failures to reach the peer become OCI errors at once:
503 when it refuses or fails TLS verification, 504 when it does not answer, or stops taking the
body, in time (ZOT_CLUSTER_READ_TIMEOUT), 502 when it breaks the exchange.

The body's framing is ours, never the client's: Content-Length is sent as the number we parsed
(the body h11 read for us has exactly that length), a chunked body goes on chunked, and a request
with both never gets here (streaming.framing_problem refuses it on every member).

Capacity: the pool has no per-host limit, so a request never waits for a pooled connection that
stalled uploads hold (upstream connections are bounded by our clients' own connections). Uploads,
which a slow or stalled client can hold open, are bounded instead: at most UPLOADS_PER_CLIENT in
flight per client address (429 TOOMANYREQUESTS with Retry-After beyond) and UPLOADS_PER_PEER per
owner (503 with Retry-After), per worker; env ZOT_CLUSTER_PROXY_UPLOADS_PER_CLIENT and
ZOT_CLUSTER_PROXY_UPLOADS_PER_PEER, 0 for no limit. A body that stalls fails with 408 here as
anywhere (streaming.IDLE_TIMEOUT), and its upstream connection is closed.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import select
import ssl
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import aiohttp.payload
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_writer import StreamWriter
from multidict import CIMultiDict
from quart import Response

from .. import metrics
from ..api.http import parse_content_length
from ..api.requests import RegistryRequest
from ..authn.current import IDENTITY_HEADER, vouching_headers
from ..errors import PeerBadGateway, PeerBusy, PeerTimeout, PeerUnavailable, RegistryError, TooManyRequests
from ..streaming import FlowControlledBody
from ..tuning import env_int
from .control_models import EPOCH_HEADER

log = logging.getLogger("zot_registry.cluster")

HOP_HEADER = "X-Zot-Cluster-Hop-Count"
RETRY_LATER = {"Retry-After": "5"}
# Hop-by-hop headers (RFC 9110 7.6.1), those the client library sets itself, and Quart's own.
# Content-Length is set from our own reading of it; Expect was answered by this member already.
_NOT_FORWARDED = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "remote-addr",
    "content-length",
    "expect",
    # Never a client's: the member adds its own for a certificate identity (authn/current.py).
    IDENTITY_HEADER.lower(),
}
# Read up to this much from a peer before the client takes it: fewer, larger pieces per loop turn.
READ_BUFFER = 1 << 20
_NOT_RETURNED = _NOT_FORWARDED | {"date", "server"}
# A pooled connection the peer had just closed surfaces as one of these before any response.
_STALE_CONNECTION = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
UPLOADS_PER_CLIENT = env_int("ZOT_CLUSTER_PROXY_UPLOADS_PER_CLIENT", 32)
UPLOADS_PER_PEER = env_int("ZOT_CLUSTER_PROXY_UPLOADS_PER_PEER", 128)
RETRY_AFTER = "1"


def peer_ssl_context(cacert: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    """The system trust store plus the cluster CA, and our client certificate when configured (zot's rule)."""
    context = ssl.create_default_context()
    if cacert:
        context.load_verify_locations(cacert)
    if cert and key:
        context.load_cert_chain(cert, key)
    return context


class UploadSlots:
    """Uploads in flight through this worker's proxy, per client address and per owner."""

    def __init__(self, per_client: int, per_peer: int) -> None:
        self.per_client = per_client
        self.per_peer = per_peer
        self._clients: collections.Counter[str] = collections.Counter()
        self._peers: collections.Counter[str] = collections.Counter()

    def acquire(self, peer: str, client: str) -> None:
        if self.per_client and self._clients[client] >= self.per_client:
            raise TooManyRequests(
                f"too many uploads in flight from {client} through this member "
                f"({self.per_client}); retry when one has finished",
                headers={"Retry-After": RETRY_AFTER},
            )
        if self.per_peer and self._peers[peer] >= self.per_peer:
            raise PeerBusy(
                f"too many uploads in flight to member {peer} ({self.per_peer}); retry shortly",
                headers={"Retry-After": RETRY_AFTER},
            )
        self._clients[client] += 1
        self._peers[peer] += 1

    def release(self, peer: str, client: str) -> None:
        for counter, key in ((self._clients, client), (self._peers, peer)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]


class _RequestBody:
    """The client's body on its way to the owner: counted, and its own failure (a stalled client)
    kept apart from the peer's, which aiohttp reports alike."""

    def __init__(self, peer: str, body: FlowControlledBody) -> None:
        self.peer = peer
        self.body = body
        self.failure: RegistryError | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        sent = 0
        try:
            async for chunk in self.body:
                sent += len(chunk)
                yield chunk
        except RegistryError as err:
            self.failure = err
            raise
        finally:
            metrics.PROXIED_BYTES.labels(self.peer, "sent").inc(sent)

    @property
    def complete(self) -> bool:
        """Whether the client sent its whole body (else our answer closes the connection after it)."""
        return self.body.complete


class _BodyPayload(aiohttp.payload.AsyncIterablePayload):
    """The request body as aiohttp writes it, looking for the owner's answer before each chunk.

    An owner may answer before it has read the body (413, 404) and close the connection. Our
    members linger after such an answer (hypercorn_patches), but one that does not (an older member)
    resets the connection we are writing into, and a write that fails makes the event loop close it
    at once, dropping what was still unread: the answer, and the client got a 502 "broken pipe"
    instead. So while the owner has sent something we have not read yet, the event loop reads it
    before we write more; an answer read by then is the one aiohttp returns, whatever happens to
    the rest of the body. (Best effort: an answer and a reset arriving between that look and the
    write still lose the answer; it took an owner that does not linger from 1 in 9 to about 1 in 50.)"""

    def __init__(self, body: _RequestBody, stall_timeout: float | None) -> None:
        super().__init__(body)
        self.stall_timeout = stall_timeout

    async def write_with_length(self, writer: AbstractStreamWriter, content_length: int | None) -> None:
        if self._iter is None:
            return
        self._consumed = True
        transport = writer.transport if isinstance(writer, StreamWriter) else None
        try:
            while True:
                chunk = await anext(self._iter)
                await _answer_first(transport)
                # aiohttp's read timeout starts once the body is sent: an owner that stopped reading
                # it (frozen, overloaded) held the upload, and its client, for good. The same bound
                # applies to each write; aiohttp hands the TimeoutError to the request (a 504).
                async with asyncio.timeout(self.stall_timeout):
                    await writer.write(chunk)  # our Content-Length is what h11 read: never more than it says
        except StopAsyncIteration:
            self._iter = None


async def _answer_first(transport: asyncio.Transport | None) -> None:
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return
    for _ in range(8):
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):  # closed meanwhile
            return
        if not readable:
            return
        await asyncio.sleep(0)  # the event loop reads it (or finds the connection closed)


class PeerProxy:
    def __init__(
        self,
        scheme: str,
        ssl_context: ssl.SSLContext | None,
        connect_timeout: float = 3.0,
        read_timeout: float = 60.0,
        uploads_per_client: int = UPLOADS_PER_CLIENT,
        uploads_per_peer: int = UPLOADS_PER_PEER,
    ) -> None:
        self.scheme = scheme
        self._ssl = ssl_context
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._session: aiohttp.ClientSession | None = None
        self.uploads = UploadSlots(uploads_per_client, uploads_per_peer)

    def session(self) -> aiohttp.ClientSession:
        # Created lazily: it belongs to the event loop of the worker that uses it.
        if self._session is None or self._session.closed:
            # No limits: a pool limit made every request to an owner wait (then fail with 504) once
            # stalled uploads held its connections; uploads are bounded by UploadSlots instead.
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=0, keepalive_timeout=60, ssl=self._ssl if self._ssl is not None else False
            )
            # No Content-Type of aiohttp's either: the owner must see what the client sent, or nothing.
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                auto_decompress=False,
                read_bufsize=READ_BUFFER,
                skip_auto_headers={"User-Agent", "Accept-Encoding", "Accept", "Content-Type"},
            )
        return self._session

    def url(self, peer: str, target: str) -> str:
        return f"{self.scheme}://{peer}{target}"

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self, peer: str, method: str, target: str, headers: CIMultiDict[str], data: Any = None
    ) -> aiohttp.ClientResponse:
        """Send one request to a peer; OCI errors for a peer that cannot be reached."""
        url = self.url(peer, target)
        try:
            try:
                return await self.session().request(method, url, headers=headers, data=data, allow_redirects=False)
            except _STALE_CONNECTION:
                if data is not None:
                    raise
                # Retry once on a fresh connection, as Go's transport does, when no body was sent.
                return await self.session().request(method, url, headers=headers, allow_redirects=False)
        except aiohttp.ClientConnectorCertificateError as err:
            metrics.PEER_ERRORS.labels(peer, "unavailable").inc()
            raise PeerUnavailable(
                f"member {peer} is unavailable: its certificate was refused ({_reason(err.certificate_error)})"
            ) from None
        except aiohttp.ClientConnectorError as err:
            metrics.PEER_ERRORS.labels(peer, "unavailable").inc()
            # A member that is down (restarting, or dropped soon by failover): worth a retry, said so.
            raise PeerUnavailable(
                f"member {peer} is unavailable: {_reason(err.os_error)}", headers=RETRY_LATER
            ) from None
        except TimeoutError:
            metrics.PEER_ERRORS.labels(peer, "timeout").inc()
            raise PeerTimeout(f"member {peer} did not answer in time", headers=RETRY_LATER) from None
        except aiohttp.ClientError as err:
            metrics.PEER_ERRORS.labels(peer, "protocol").inc()
            raise PeerBadGateway(f"member {peer} failed: {_reason(err)}", headers=RETRY_LATER) from None

    async def forward(
        self, request: RegistryRequest, peer: str, route_kind: str, hops: int = 1, epoch: int = 0
    ) -> Response:
        """Send `request` to `peer` and stream its answer back to our client; the owner sees the hop count
        and the epoch of the member list we routed by (cluster/decision.py)."""
        headers: CIMultiDict[str] = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED
        )
        headers[HOP_HEADER] = str(hops)
        headers[EPOCH_HEADER] = str(epoch)
        headers.update(vouching_headers())
        target = request.scope.get("raw_path", request.path.encode()).decode("latin-1")
        if not target.startswith("/"):
            # Absolute form (`GET http://host/v2/...`): the authority is the client's business, the
            # owner gets the origin form (RFC 9112 3.2.2), as the route was matched on.
            target = urlsplit(target).path or "/"
        if request.query_string:
            target += "?" + request.query_string.decode("latin-1")
        body: _RequestBody | None = None
        if request.method in ("POST", "PUT", "PATCH"):
            # The one rule for numbers; SIZE_INVALID for anything else.
            length = parse_content_length(request.headers.get("Content-Length"))
            if length is not None:
                headers["Content-Length"] = str(length)
            body = _RequestBody(peer, request.body)
            client = request.remote_addr or ""
            self.uploads.acquire(peer, client)
            try:
                payload = _BodyPayload(body, self._timeout.sock_read)
                upstream = await self.request(peer, request.method, target, headers, payload)
            except RegistryError:
                if body.failure is not None:  # our client stalled, not the peer
                    raise body.failure from None
                raise
            finally:
                self.uploads.release(peer, client)
        else:
            upstream = await self.request(peer, request.method, target, headers)
        metrics.PROXIED.labels(peer, route_kind, str(upstream.status)).inc()
        response = Response(self._response_body(peer, upstream), status=upstream.status)
        response.headers.clear()  # no defaults of ours (Content-Type): the owner's headers only
        for raw_key, raw_value in upstream.raw_headers:
            key, value = raw_key.decode("latin-1"), raw_value.decode("latin-1")
            if key.lower() in _NOT_RETURNED:
                continue
            if key.lower() == "location":
                value = _relative(value)
            response.headers.add(key, value)
        if request.method == "HEAD" or "Content-Length" in upstream.headers:
            response.headers["Content-Length"] = upstream.headers.get("Content-Length", "0")
        if body is not None and not body.complete:
            # The owner answered before the whole body arrived (413, 404, 408...): so do we, and close,
            # lingering on the socket so the client still reads the answer (hypercorn_patches).
            response.headers["Connection"] = "close"
        return response

    async def _response_body(self, peer: str, upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        received = 0
        try:
            # Whatever has arrived, in one piece: no waiting to fill a chunk, no extra copies.
            async for chunk in upstream.content.iter_any():
                received += len(chunk)
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as err:
            # Headers are already on their way: all we can do is cut the response short.
            metrics.PEER_ERRORS.labels(peer, "interrupted").inc()
            log.warning("peer response interrupted", extra={"peer": peer, "error": _reason(err)})
            raise
        finally:
            upstream.release()
            metrics.PROXIED_BYTES.labels(peer, "received").inc(received)


def _relative(location: str) -> str:
    """Keep Location usable through any member: drop the peer's scheme and host."""
    parts = urlsplit(location)
    if parts.scheme and parts.path.startswith("/v2/"):
        return parts.path + (f"?{parts.query}" if parts.query else "")
    return location


def _reason(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return text.splitlines()[0][:200]
