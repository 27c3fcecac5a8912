"""How a request that failed is answered: the OCI error response, and whether the rest of its body
is read first or the connection closed after the answer."""

from __future__ import annotations

import asyncio
import logging

from quart import Response
from werkzeug.exceptions import HTTPException

from ..errors import (
    BodyTimeout,
    NameUnknown,
    PeerBusy,
    RegistryError,
    RequestInvalid,
    TooManyRequests,
    Unsupported,
)
from ..tuning import env_seconds
from .http import content_length
from .requests import request

log = logging.getLogger("zot_registry")

# Errors answered without draining the body first: a stalled body, a refused framing, load shedding.
_ANSWER_AT_ONCE = (BodyTimeout, RequestInvalid, TooManyRequests, PeerBusy)


def error_response(err: RegistryError) -> Response:
    response = Response(err.body(), status=err.status, content_type="application/json")
    for key, value in err.headers.items():
        response.headers[key] = value
    return response


async def failure_response(err: RegistryError) -> Response:
    """The answer to a request under /v2/ that failed with `err`."""
    if err.status >= 500:
        # A peer, the bucket or the cache failed: the client gets the reason, so does the operator.
        log.warning(
            "request failed: %s",
            err.message,
            extra={"method": request.method, "path": request.path, "status": err.status},
        )
    response = error_response(err)
    if isinstance(err, _ANSWER_AT_ONCE) or not await drain_body():
        # Said up front, so a keep-alive client does not send its next request into a closing socket.
        response.headers["Connection"] = "close"
    return response


def unexpected_response(err: Exception) -> Response:
    """The answer to an exception no handler turned into a RegistryError."""
    if isinstance(err, HTTPException) and err.code is not None and err.code < 500:
        # Quart's own refusals outside /v2/ (a path with no route, a method a probe does not
        # take): the client's mistake, in OCI form like every other.
        return error_response(_http_error(err))
    # Reaching here is a bug of ours, never a user mistake: log it whole, answer in OCI form.
    log.exception("unhandled error", extra={"method": request.method, "path": request.path})
    return error_response(RegistryError("internal error"))


def _http_error(err: HTTPException) -> RegistryError:
    if err.code == 404:
        return NameUnknown(f"no such endpoint: {request.path[:200]}")
    if err.code == 405:
        allow = {key: value for key, value in err.get_headers() if key.lower() == "allow"}
        return Unsupported(f"method {request.method} not allowed on {request.path[:200]}", headers=allow)
    return RequestInvalid(err.description or err.name)


DRAIN_LIMIT = 4 << 20
DRAIN_SECONDS = env_seconds("ZOT_HTTP_DRAIN_SECONDS", 1.0)


async def drain_body(limit: int = DRAIN_LIMIT, seconds: float = DRAIN_SECONDS) -> bool:
    """Read and drop what is left of a request body answered early (an error before the upload).

    An unread body makes hypercorn close the connection after the response, and a keep-alive peer
    (another member's connection pool, a client) then finds it dead on its next request. Like Go's
    net/http, a small remainder is drained so the connection lives on; a large, slow or stalled one
    is not worth it. Returns False when the body was left unread: the response must then say
    `Connection: close` (and the server lingers on the socket, so the client still reads the answer).
    """
    if request.method not in ("POST", "PUT", "PATCH"):
        return True
    try:
        length = content_length()
    except RegistryError:
        return False
    if length is not None and length > limit:
        return False
    drained = 0
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.body:
                drained += len(chunk)
                if drained > limit:
                    return False
    except (TimeoutError, RegistryError):  # too slow, or stalled (BodyTimeout)
        return False
    return True
