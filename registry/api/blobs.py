"""Blobs: GET/HEAD (with Range) and DELETE."""

from __future__ import annotations

from quart import Response

from ..digests import parse_digest
from ..storage.base import Store
from .http import empty, parse_range
from .requests import request
from .routing import Route


async def blob(route: Route, store: Store) -> Response:
    digest = parse_digest(route.arg)
    if request.method == "DELETE":
        await store.delete_blob(route.name, digest)
        return empty(202, {"Docker-Content-Digest": str(digest)})
    size = await store.blob_size(route.name, digest)
    headers = {
        "Docker-Content-Digest": str(digest),
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
        "ETag": f'"{digest}"',
    }
    wanted = parse_range(request.headers.get("Range"), size)
    start, end, status = (0, size - 1, 200) if wanted is None else (*wanted, 206)
    if wanted is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    length = end - start + 1 if size else 0
    if request.method == "HEAD":
        response = Response("", status=status, headers=headers)
    else:
        response = Response(store.blob_chunks(route.name, digest, start, length), status=status, headers=headers)
    response.headers["Content-Length"] = str(length)
    return response
