"""The stack's ceiling: an ASGI app that does the least any registry must do for each request the
benchmark makes, and nothing else, served by hypercorn exactly as our registry is served
(`bench.ceiling_server`: the same hypercorn settings, patches, worker processes and TLS).

What it does per request, so that what ours spends beyond it is our own code's:
- a body it receives (blob uploads, manifests) is read through ASGI, hashed with SHA-256 (as every
  registry must, to check the digest) and written to a file under the config's root directory as
  each piece arrives (as a registry must, to keep it), then the file is removed: no fsync, no
  rename, no index, no session kept;
- a manifest GET or HEAD answers constant bytes with the headers a registry sends;
- a blob GET answers BLOB_BYTES bytes from memory in pieces of 1 MiB (ours reads 1 MiB at a time);
- the tags list is constant.

Sessions are not kept: every upload URL is the same, a PUT or a POST with ?digest= completes. A
registry could not be simpler and still move the same bytes, so a figure of this app that falls below
a floor shows the floor out of reach of anything that runs on this stack.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from zot_registry import hypercorn_patches

from .workloads import OCI_MANIFEST, TAGS

hypercorn_patches.install()

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# Set by bench.ceiling_server from the config's storage root.
SCRATCH = os.environ.get("ZOT_BENCH_CEILING_DIR") or tempfile.gettempdir()
BLOB_BYTES = int(os.environ.get("ZOT_BENCH_CEILING_BLOB_BYTES", str(64 << 20)))
PIECE = 1 << 20
_BLOB = memoryview(os.urandom(PIECE))

# The size of the image manifest bench.workloads.populate pushes (config and two layers, indented).
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "0" * 64, "size": 1},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + "1" * 64, "size": 4096},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + "2" * 64, "size": 2048},
        ],
        "annotations": {"org.opencontainers.image.title": "zot-bench"},
    },
    indent=2,
).encode()
MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
UPLOAD = "/v2/ceiling/blobs/uploads/session"


async def _read_and_hash(receive: Receive) -> str:
    hasher = hashlib.sha256()
    with tempfile.TemporaryFile(dir=SCRATCH, buffering=0) as sink:
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            body = message.get("body", b"")
            hasher.update(body)
            sink.write(body)
            if not message.get("more_body", False):
                break
    return "sha256:" + hasher.hexdigest()


async def _answer(
    send: Send, status: int, headers: list[tuple[str, str]], body: bytes = b"", head: bool = False
) -> None:
    encoded = [(k.encode(), v.encode()) for k, v in headers]
    encoded.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": encoded})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _blob(send: Send, head: bool) -> None:
    headers = [(b"content-type", b"application/octet-stream"), (b"content-length", str(BLOB_BYTES).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    remaining = 0 if head else BLOB_BYTES
    while remaining > 0:
        size = min(PIECE, remaining)
        remaining -= size
        await send({"type": "http.response.body", "body": bytes(_BLOB[:size]), "more_body": remaining > 0})
    if head:
        await send({"type": "http.response.body", "body": b""})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    method, path = scope["method"], scope["path"]
    head = method == "HEAD"
    query = parse_qs(scope.get("query_string", b"").decode())
    if path == "/v2/":
        await _answer(send, 200, [("Content-Type", "application/json")], b"{}", head)
    elif "/blobs/uploads/" in path:
        digest = await _read_and_hash(receive)
        if method == "PUT" or (method == "POST" and "digest" in query):
            await _answer(send, 201, [("Location", UPLOAD), ("Docker-Content-Digest", digest)])
        else:
            await _answer(send, 202, [("Location", UPLOAD), ("Range", "0-0"), ("Docker-Upload-UUID", "session")])
    elif "/manifests/" in path:
        if method == "PUT":
            digest = await _read_and_hash(receive)
            await _answer(send, 201, [("Location", path), ("Docker-Content-Digest", digest)])
        else:
            headers = [("Content-Type", OCI_MANIFEST), ("Docker-Content-Digest", MANIFEST_DIGEST)]
            await _answer(send, 200, headers, MANIFEST, head)
    elif "/blobs/" in path:
        await _blob(send, head)
    elif path.endswith("/tags/list"):
        name = path.removeprefix("/v2/").removesuffix("/tags/list")
        body = json.dumps({"name": name, "tags": TAGS}).encode()
        await _answer(send, 200, [("Content-Type", "application/json")], body, head)
    else:
        await _answer(send, 404, [("Content-Type", "application/json")], b'{"errors":[{"code":"NAME_UNKNOWN"}]}', head)
