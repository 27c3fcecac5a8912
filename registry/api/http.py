"""Small helpers shared by the handlers: request bodies as streams, pagination, ranges."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import quote, urlencode

from quart import Response

from ..errors import PaginationInvalid, RangeInvalid, SizeInvalid
from .requests import request


def empty(status: int, headers: dict[str, str] | None = None) -> Response:
    """An answer without a body (201, 202, 204): no Content-Type, where Quart would add text/html."""
    response = Response(b"", status=status, headers=headers)
    if not headers or "Content-Type" not in headers:
        del response.headers["Content-Type"]
    return response


async def request_stream() -> AsyncIterator[bytes]:
    async for chunk in request.body:
        yield chunk


# Numbers from clients (Content-Length, Range, Content-Range, ?n=): ASCII digits only (str.isdigit()
# and int() also take "²" or "٣"), at most 19 of them, below 2**63: more than any blob, offset or page
# size, and far below the 4300 digits past which int() raises.
MAX_DIGITS = 19
MAX_NUMBER = (1 << 63) - 1
_NUMBER_RE = re.compile(rf"[0-9]{{1,{MAX_DIGITS}}}")


def parse_number(text: str | None) -> int | None:
    """A non-negative decimal by the rule above; None when `text` is not one."""
    if text is None or not _NUMBER_RE.fullmatch(text):
        return None
    value = int(text)
    return value if value <= MAX_NUMBER else None


def content_length() -> int | None:
    """The request's Content-Length, None without one; SIZE_INVALID when it is not a number we take."""
    return parse_content_length(request.headers.get("Content-Length"))


def parse_content_length(value: str | None) -> int | None:
    """A Content-Length header's value by the one rule for numbers; None for none, else SIZE_INVALID."""
    if value is None:
        return None
    length = parse_number(value.strip())
    if length is None:
        raise SizeInvalid(f"invalid Content-Length: {value[:40]!r}")
    return length


def page_size() -> int | None:
    """`?n=`: None when absent or empty, else a number by the one rule (PAGINATION_NUMBER_INVALID)."""
    raw_n = request.args.get("n")
    if raw_n is None or raw_n == "":
        return None
    n = parse_number(raw_n)
    if n is None:
        raise PaginationInvalid(f"n must be a non-negative integer below 2**63, got {raw_n[:40]!r}")
    return n


def paginate(all_items: list[str], path: str, n: int | None) -> tuple[list[str], dict[str, str]]:
    """`n`/`last` pagination: the page and its `Link` header, as the spec describes for tags and catalog.

    `n` comes from page_size(), called before the listing is fetched: a bad `n` is a 400 whether or
    not the repository exists, and before any member is asked for its catalog."""
    last = request.args.get("last")
    items = [item for item in all_items if last is None or item > last]
    headers: dict[str, str] = {}
    if n is not None:
        if len(items) > n and n > 0:
            query = urlencode({"n": n, "last": items[n - 1]})
            headers["Link"] = f'<{quote(path)}?{query}>; rel="next"'
        items = items[:n]
    return items, headers


_RANGE_RE = re.compile(r"bytes=([0-9]*)-([0-9]*)")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A single `Range: bytes=a-b` as (start, end inclusive); None for the whole blob."""
    if not header:
        return None
    found = _RANGE_RE.fullmatch(header.strip())
    unsatisfiable = RangeInvalid("requested range not satisfiable", headers={"Content-Range": f"bytes */{size}"})
    if not found or (found[1] == "" and found[2] == ""):
        raise unsatisfiable
    if found[1] == "":  # suffix range: the last N bytes
        length = parse_number(found[2])
        if not length:
            raise unsatisfiable
        return max(size - length, 0), size - 1
    start = parse_number(found[1])
    end = parse_number(found[2]) if found[2] else size - 1
    if start is None or end is None or start >= size or end < start:
        raise unsatisfiable
    return start, min(end, size - 1)


_CONTENT_RANGE_RE = re.compile(r"(?:bytes[ =])?([0-9]+)-([0-9]+)(?:/([0-9]+|\*))?")


def parse_content_range(header: str | None) -> tuple[int, int] | None:
    if header is None:
        return None
    found = _CONTENT_RANGE_RE.fullmatch(header.strip())
    if not found:
        raise RangeInvalid(f"invalid Content-Range: {header[:80]!r}")
    start, end = parse_number(found[1]), parse_number(found[2])
    total_ok = found[3] in (None, "*") or parse_number(found[3]) is not None
    if start is None or end is None or end < start or not total_ok:
        raise RangeInvalid(f"invalid Content-Range: {header[:80]!r}")
    return start, end
