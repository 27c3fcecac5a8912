"""Manifests by tag or digest: GET/HEAD/PUT/DELETE, stored byte-exact."""

from __future__ import annotations

from quart import Response

from ..errors import ManifestTooLarge
from ..storage.base import Store
from ..storage.manifests import MAX_MANIFEST_SIZE
from .http import content_length, empty
from .requests import request
from .routing import Route


async def manifest(route: Route, store: Store) -> Response:
    method = request.method
    if method in ("GET", "HEAD"):
        descriptor, data = await store.get_manifest(route.name, route.arg)
        headers = {
            "Docker-Content-Digest": descriptor["digest"],
            "Content-Type": descriptor["mediaType"],
            "ETag": f'"{descriptor["digest"]}"',
        }
        response = Response(b"" if method == "HEAD" else data, status=200, headers=headers)
        response.headers["Content-Length"] = str(len(data))
        return response
    if method == "DELETE":
        await store.delete_manifest(route.name, route.arg)
        return empty(202)
    length = content_length()
    if length is not None and length > MAX_MANIFEST_SIZE:
        raise ManifestTooLarge(f"manifest of {length} bytes exceeds the limit of {MAX_MANIFEST_SIZE}")
    body = await _read_bounded(MAX_MANIFEST_SIZE)
    digest, parsed = await store.put_manifest(route.name, route.arg, request.headers.get("Content-Type"), body)
    headers = {"Location": f"/v2/{route.name}/manifests/{digest}", "Docker-Content-Digest": str(digest)}
    if parsed.subject:
        headers["OCI-Subject"] = parsed.subject
    return empty(201, headers)


async def _read_bounded(limit: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    async for chunk in request.body:
        total += len(chunk)
        if total > limit:
            raise ManifestTooLarge(f"manifest exceeds the limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)
