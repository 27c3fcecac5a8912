"""Small helpers shared by the handlers: request bodies as streams, pagination, ranges."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import quote, urlencode

from quart import request

from ..errors import PaginationInvalid, RangeInvalid


async def request_stream() -> AsyncIterator[bytes]:
    async for chunk in request.body:
        yield chunk


def content_length() -> int | None:
    value = request.headers.get("Content-Length")
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        return None
    return length if length >= 0 else None


def paginate(all_items: list[str], path: str) -> tuple[list[str], dict[str, str]]:
    """`n`/`last` pagination: the page and its `Link` header, as the spec describes for tags and catalog."""
    raw_n = request.args.get("n")
    last = request.args.get("last")
    items = [item for item in all_items if last is None or item > last]
    n: int | None = None
    if raw_n is not None and raw_n != "":
        if not raw_n.isdigit():
            raise PaginationInvalid(f"n must be a non-negative integer, got {raw_n!r}")
        n = int(raw_n)
    headers: dict[str, str] = {}
    if n is not None:
        if len(items) > n and n > 0:
            query = urlencode({"n": n, "last": items[n - 1]})
            headers["Link"] = f'<{quote(path)}?{query}>; rel="next"'
        items = items[:n]
    return items, headers


_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A single `Range: bytes=a-b` as (start, end inclusive); None for the whole blob."""
    if not header:
        return None
    found = _RANGE_RE.match(header.strip())
    unsatisfiable = RangeInvalid("requested range not satisfiable", headers={"Content-Range": f"bytes */{size}"})
    if not found or (found[1] == "" and found[2] == ""):
        raise unsatisfiable
    if found[1] == "":  # suffix range: the last N bytes
        length = int(found[2])
        if length == 0:
            raise unsatisfiable
        return max(size - length, 0), size - 1
    start = int(found[1])
    end = int(found[2]) if found[2] else size - 1
    if start >= size or end < start:
        raise unsatisfiable
    return start, min(end, size - 1)


_CONTENT_RANGE_RE = re.compile(r"^(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?$")


def parse_content_range(header: str | None) -> tuple[int, int] | None:
    if header is None:
        return None
    found = _CONTENT_RANGE_RE.match(header.strip())
    if not found or int(found[2]) < int(found[1]):
        raise RangeInvalid(f"invalid Content-Range: {header!r}")
    return int(found[1]), int(found[2])


DRAIN_LIMIT = 4 << 20


async def drain_body(limit: int = DRAIN_LIMIT) -> bool:
    """Read and drop what is left of a request body answered early (an error before the upload).

    An unread body makes hypercorn close the connection after the response, and a keep-alive peer
    (another member's connection pool, a client) then finds it dead on its next request. Like Go's
    net/http, a small remainder is drained so the connection lives on; a large one is not worth it.
    Returns False when the body was left unread: the response must then say `Connection: close`.
    """
    if request.method not in ("POST", "PUT", "PATCH"):
        return True
    length = content_length()
    if length is not None and length > limit:
        return False
    drained = 0
    async for chunk in request.body:
        drained += len(chunk)
        if drained > limit:
            return False
    return True
