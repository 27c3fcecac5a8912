"""Blob uploads: monolithic POST, POST+PUT, chunked PATCH, status, cancel, cross-repository mount."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Response

from ..digests import parse_digest
from ..errors import BlobUploadInvalid, BlobUploadUnknown, RangeInvalid
from ..names import is_valid_name
from ..storage.base import Store
from .http import content_length, empty, parse_content_range, request_stream
from .requests import request
from .routing import Route

if TYPE_CHECKING:
    from ..cluster.node import Cluster


def _session_headers(name: str, session: str, size: int) -> dict[str, str]:
    return {
        "Location": f"/v2/{name}/blobs/uploads/{session}",
        "Range": f"0-{max(size - 1, 0)}",
        "Docker-Upload-UUID": session,
        "OCI-Chunk-Min-Length": "0",
    }


def _blob_created(name: str, digest: str) -> Response:
    return empty(201, {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest})


async def start_upload(route: Route, store: Store) -> Response:
    args = request.args
    if "mount" in args:
        digest = parse_digest(args["mount"])
        source = args.get("from") or None
        # A `from` that is no repository name (`../x`, `/etc`) names nothing this registry holds: like
        # a blob it lacks, that is not mountable, and the spec's answer is an upload session (202).
        if (source is None or is_valid_name(source)) and await store.mount_blob(route.name, digest, source):
            return _blob_created(route.name, str(digest))
        # Not mountable: the spec says to fall back to an ordinary upload session.
    elif "digest" in args:
        digest = parse_digest(args["digest"])
        await store.put_blob(route.name, digest, request_stream(), content_length())
        return _blob_created(route.name, str(digest))
    return await new_session(route, store)


async def new_session(route: Route, store: Store) -> Response:
    """A new upload session (202): also the answer to a mount that cannot be made."""
    session = await store.new_upload(route.name)
    return empty(202, _session_headers(route.name, session, 0))


async def mount_across_members(route: Route, store: Store, cluster: Cluster) -> Response | None:
    """A mount whose `from` repository another member owns: 201 once copied, None to carry on locally."""
    digest = parse_digest(request.args["mount"])
    source = request.args["from"]
    if not is_valid_name(source):
        return None  # not mountable from anywhere: start_upload answers with an upload session
    if await store.has_blob(route.name, digest) or await store.has_blob(source, digest):
        return None
    if await cluster.mount_from_peer(request, store, route.name, digest, source):
        return _blob_created(route.name, str(digest))
    return None


async def upload_session(route: Route, store: Store) -> Response:
    name, session = route.name, route.arg
    method = request.method
    if method == "GET":
        size = await store.upload_size(name, session)
        return empty(204, _session_headers(name, session, size))
    if method == "DELETE":
        await store.cancel_upload(name, session)
        return empty(204)
    if method == "PATCH":
        chunk_range = parse_content_range(request.headers.get("Content-Range"))
        length = content_length()
        if chunk_range and length is not None and chunk_range[1] - chunk_range[0] + 1 != length:
            raise BlobUploadInvalid("Content-Range and Content-Length disagree")
        size = await store.append_upload(
            name, session, request_stream(), chunk_range[0] if chunk_range else None, length
        )
        return empty(202, _session_headers(name, session, size))
    # PUT: close the session, with an optional last chunk.
    if "digest" not in request.args:
        raise BlobUploadInvalid("PUT to an upload session needs ?digest=")
    digest = parse_digest(request.args["digest"])
    chunk_range = parse_content_range(request.headers.get("Content-Range"))
    if chunk_range is not None:
        try:
            received: int | None = await store.upload_size(name, session)
        except BlobUploadUnknown:
            received = None  # closed already: finish_upload answers a retry (201 when the blob is there)
        if received is not None and chunk_range[0] != received:
            raise RangeInvalid("final chunk does not start where the upload ends")
    await store.finish_upload(name, session, digest, request_stream(), content_length())
    return _blob_created(name, str(digest))
