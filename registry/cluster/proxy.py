"""Forwarding a request to the member that owns its repository, streaming both ways.

One pooled keep-alive aiohttp session per worker (aiohttp's C parser moves blobs several times
faster than a pure-Python client and adds about a millisecond less per request). Method, path,
query, headers (Authorization included) and body go through unchanged but for hop-by-hop headers;
the owner sees `X-Zot-Cluster-Hop-Count: 1`. Failures to reach the peer become OCI errors at once:
503 when it refuses or fails TLS verification, 504 when it does not answer in time, 502 when it
breaks the exchange.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict
from quart import Response, request

from .. import metrics
from ..errors import PeerBadGateway, PeerTimeout, PeerUnavailable

log = logging.getLogger("zot_registry.cluster")

HOP_HEADER = "X-Zot-Cluster-Hop-Count"
# Hop-by-hop headers (RFC 9110 7.6.1), those the client library sets itself, and Quart's own.
_NOT_FORWARDED = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                  "transfer-encoding", "upgrade", "host", "remote-addr"}
# Read up to this much from a peer before the client takes it: fewer, larger pieces per loop turn.
READ_BUFFER = 1 << 20
_NOT_RETURNED = _NOT_FORWARDED | {"date", "server"}
# A pooled connection the peer had just closed surfaces as one of these before any response.
_STALE_CONNECTION = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


def peer_ssl_context(cacert: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    """The system trust store plus the cluster CA, and our client certificate when configured (zot's rule)."""
    context = ssl.create_default_context()
    if cacert:
        context.load_verify_locations(cacert)
    if cert and key:
        context.load_cert_chain(cert, key)
    return context


class PeerProxy:
    def __init__(self, scheme: str, ssl_context: ssl.SSLContext | None, connect_timeout: float = 3.0,
                 read_timeout: float = 60.0) -> None:
        self.scheme = scheme
        self._ssl = ssl_context
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_connect=connect_timeout,
                                              sock_read=read_timeout)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        # Created lazily: it belongs to the event loop of the worker that uses it.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=512, limit_per_host=128, keepalive_timeout=60,
                                             ssl=self._ssl if self._ssl is not None else False)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, auto_decompress=False,
                                                  read_bufsize=READ_BUFFER,
                                                  skip_auto_headers={"User-Agent", "Accept-Encoding", "Accept"})
        return self._session

    def url(self, peer: str, target: str) -> str:
        return f"{self.scheme}://{peer}{target}"

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, peer: str, method: str, target: str, headers: CIMultiDict[str],
                      data: Any = None) -> aiohttp.ClientResponse:
        """Send one request to a peer; OCI errors for a peer that cannot be reached."""
        url = self.url(peer, target)
        try:
            try:
                return await self.session().request(method, url, headers=headers, data=data,
                                                    allow_redirects=False)
            except _STALE_CONNECTION:
                if data is not None:
                    raise
                # Retry once on a fresh connection, as Go's transport does, when no body was sent.
                return await self.session().request(method, url, headers=headers, allow_redirects=False)
        except aiohttp.ClientConnectorCertificateError as err:
            metrics.PEER_ERRORS.labels(peer, "unavailable").inc()
            raise PeerUnavailable(f"member {peer} is unavailable: its certificate was refused "
                                  f"({_reason(err.certificate_error)})") from None
        except aiohttp.ClientConnectorError as err:
            metrics.PEER_ERRORS.labels(peer, "unavailable").inc()
            raise PeerUnavailable(f"member {peer} is unavailable: {_reason(err.os_error)}") from None
        except TimeoutError:
            metrics.PEER_ERRORS.labels(peer, "timeout").inc()
            raise PeerTimeout(f"member {peer} did not answer in time") from None
        except aiohttp.ClientError as err:
            metrics.PEER_ERRORS.labels(peer, "protocol").inc()
            raise PeerBadGateway(f"member {peer} failed: {_reason(err)}") from None

    async def forward(self, peer: str, route_kind: str) -> Response:
        """Send the current request to `peer` and stream its answer back to our client."""
        headers: CIMultiDict[str] = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED)
        headers[HOP_HEADER] = "1"
        target = request.scope.get("raw_path", request.path.encode()).decode("latin-1")
        if request.query_string:
            target += "?" + request.query_string.decode("latin-1")
        has_body = request.method in ("POST", "PUT", "PATCH")
        upstream = await self.request(peer, request.method, target, headers,
                                      self._request_body(peer) if has_body else None)
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
        return response

    async def _request_body(self, peer: str) -> AsyncIterator[bytes]:
        sent = 0
        async for chunk in request.body:
            sent += len(chunk)
            yield chunk
        metrics.PROXIED_BYTES.labels(peer, "sent").inc(sent)

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
