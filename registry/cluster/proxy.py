"""Forwarding a request to the member that owns its repository, streaming both ways.

One pooled keep-alive httpx client per peer (per worker). Method, path, query, headers
(Authorization included) and body go through unchanged but for hop-by-hop headers; the owner sees
`X-Zot-Cluster-Hop-Count: 1`. Failures to reach the peer become OCI errors at once: 503 when it
refuses or is unknown, 504 when it does not answer in time, 502 when it breaks the exchange.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
from quart import Response, request

from .. import metrics
from ..errors import PeerBadGateway, PeerTimeout, PeerUnavailable

log = logging.getLogger("zot_registry.cluster")

HOP_HEADER = "X-Zot-Cluster-Hop-Count"
# Hop-by-hop headers (RFC 9110 7.6.1) and those httpx/hypercorn set themselves.
_NOT_FORWARDED = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                  "transfer-encoding", "upgrade", "host", "remote-addr"}
_STREAM_CHUNK = 1 << 20


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
        self._timeout = httpx.Timeout(connect=connect_timeout, read=read_timeout, write=read_timeout,
                                      pool=connect_timeout)
        self._clients: dict[str, httpx.AsyncClient] = {}

    def client(self, peer: str) -> httpx.AsyncClient:
        client = self._clients.get(peer)
        if client is None:
            client = httpx.AsyncClient(
                base_url=f"{self.scheme}://{peer}", verify=self._ssl if self._ssl is not None else True,
                timeout=self._timeout, follow_redirects=False,
                limits=httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=60))
            self._clients[peer] = client
        return client

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    async def forward(self, peer: str, route_kind: str, extra_headers: dict[str, str] | None = None) -> Response:
        """Send the current request to `peer` and stream its answer back to our client."""
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED]
        headers.append((HOP_HEADER, "1"))
        headers.extend((extra_headers or {}).items())
        target = request.scope.get("raw_path", request.path.encode()).decode("latin-1")
        if request.query_string:
            target += "?" + request.query_string.decode("latin-1")
        has_body = request.method in ("POST", "PUT", "PATCH")
        client = self.client(peer)
        upstream_request = client.build_request(request.method, target, headers=headers,
                                                content=self._request_body(peer) if has_body else None)
        try:
            try:
                upstream = await client.send(upstream_request, stream=True)
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
                # A pooled connection the peer had just closed: retry once on a new one, as Go's
                # transport does, but only when nothing of a body was sent.
                if has_body:
                    raise
                upstream = await client.send(client.build_request(request.method, target, headers=headers),
                                             stream=True)
        except httpx.TimeoutException as err:
            metrics.PEER_ERRORS.labels(peer, "timeout").inc()
            raise PeerTimeout(f"member {peer} did not answer in time ({type(err).__name__})") from None
        except (httpx.ConnectError, OSError) as err:
            metrics.PEER_ERRORS.labels(peer, "unavailable").inc()
            raise PeerUnavailable(f"member {peer} is unavailable: {_reason(err)}") from None
        except httpx.HTTPError as err:
            metrics.PEER_ERRORS.labels(peer, "protocol").inc()
            raise PeerBadGateway(f"member {peer} failed: {_reason(err)}") from None
        metrics.PROXIED.labels(peer, route_kind, str(upstream.status_code)).inc()
        response = Response(self._response_body(peer, upstream), status=upstream.status_code)
        response.headers.clear()  # no defaults of ours (Content-Type): the owner's headers only
        for key, value in upstream.headers.multi_items():
            if key.lower() in _NOT_FORWARDED or key.lower() in ("date", "server"):
                continue
            if key.lower() == "location":
                value = _relative(value)
            response.headers.add(key, value)
        if request.method == "HEAD" or "content-length" in upstream.headers:
            response.headers["Content-Length"] = upstream.headers.get("content-length", "0")
        return response

    async def _request_body(self, peer: str) -> AsyncIterator[bytes]:
        sent = 0
        async for chunk in request.body:
            sent += len(chunk)
            yield chunk
        metrics.PROXIED_BYTES.labels(peer, "sent").inc(sent)

    async def _response_body(self, peer: str, upstream: httpx.Response) -> AsyncIterator[bytes]:
        received = 0
        try:
            async for chunk in upstream.aiter_raw(_STREAM_CHUNK):
                received += len(chunk)
                yield chunk
        except httpx.HTTPError as err:
            # Headers are already on their way: all we can do is cut the response short.
            metrics.PEER_ERRORS.labels(peer, "interrupted").inc()
            log.warning("peer response interrupted", extra={"peer": peer, "error": _reason(err)})
            raise
        finally:
            await upstream.aclose()
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
