"""What a member asks another during a membership change: which blobs of a repository it lacks, one
blob, and to publish the copy. Over the peers' TLS with this member's certificate as client
certificate (the cluster CA signed it), so the receiving member knows the request is the cluster's."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from multidict import CIMultiDict

from ..errors import PeerBadGateway, RegistryError
from ..storage.files import READ_CHUNK
from .control_models import IMPORT_PATH
from .proxy import PeerProxy


class CopyRefused(RegistryError):
    """The receiving member refused part of a copy; the message is its answer."""

    code = "UNAVAILABLE"
    status = 502


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            yield chunk


class PeerControl:
    def __init__(self, proxy: PeerProxy) -> None:
        self.proxy = proxy

    async def _call(self, peer: str, method: str, target: str, data: Any = None, length: int | None = None) -> Any:
        headers: CIMultiDict[str] = CIMultiDict()
        if length is not None:
            headers["Content-Length"] = str(length)
        if isinstance(data, (bytes, str)):
            headers["Content-Type"] = "application/json"
        response = await self.proxy.request(peer, method, target, headers, data)
        try:
            body = await response.read()
            if response.status >= 300:
                raise CopyRefused(f"member {peer} answered {response.status}: {body[:300].decode(errors='replace')}")
            return json.loads(body) if body else None
        except (aiohttp.ClientError, ValueError) as err:
            raise PeerBadGateway(f"member {peer} failed: {err}") from None
        finally:
            response.release()

    async def missing(self, peer: str, epoch: int, name: str, blobs: list[tuple[str, int]]) -> list[str]:
        document = {"epoch": epoch, "repository": name, "blobs": [[d, s] for d, s in blobs]}
        answer = await self._call(peer, "POST", f"{IMPORT_PATH}/missing", json.dumps(document))
        return [str(d) for d in answer["missing"]]

    async def send_blob(
        self, peer: str, epoch: int, name: str, digest: str, path: Path, size: int, mtime: float
    ) -> None:
        query = urlencode({"epoch": epoch, "repository": name, "digest": digest, "mtime": repr(mtime)})
        await self._call(peer, "PUT", f"{IMPORT_PATH}/blob?{query}", _file_chunks(path), length=size)

    async def publish(
        self, peer: str, epoch: int, name: str, index_bytes: bytes, times: dict[str, float], held: list[str]
    ) -> dict[str, Any]:
        """`held`: every blob this member has of the repository (the new owner checks the copy against it)."""
        document = {
            "epoch": epoch,
            "repository": name,
            "index": base64.b64encode(index_bytes).decode(),
            "times": times,
            "held": held,
        }
        answer: dict[str, Any] = await self._call(peer, "PUT", f"{IMPORT_PATH}/index", json.dumps(document))
        return answer
