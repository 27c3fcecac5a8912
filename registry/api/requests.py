"""The request a handler is answering, without Quart on the /v2/ path.

Requests under /v2/ are served by front.py straight from ASGI: Quart's per-request machinery (two
tasks, contexts, URL rules, werkzeug's headers) was a quarter of a manifest GET's CPU. The handlers
read the request through `request` here, which is that request, or Quart's own for what Quart
still serves (the probes, metrics, the cluster's control API), so helpers work under both.
"""

from __future__ import annotations

import contextvars
from functools import cached_property
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

from multidict import CIMultiDict, MultiDict
from quart import request as quart_request

from ..streaming import FlowControlledBody


class RegistryRequest:
    """What the handlers read of a request: its method, target, headers, query and body."""

    def __init__(self, scope: dict[str, Any], body: FlowControlledBody) -> None:
        self.scope = scope
        self.method: str = scope["method"]
        path: str = scope["path"]
        # Absolute form (`GET http://host/v2/...`): its path, as Quart takes it.
        self.path = path if path.startswith("/") else urlsplit(path).path
        self.query_string: bytes = scope["query_string"]
        self.headers: CIMultiDict[str] = CIMultiDict(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]
        )
        self.body = body

    @cached_property
    def args(self) -> MultiDict[str]:
        """The query's parameters, percent-decoded as UTF-8 (undecodable bytes replaced, as werkzeug does)."""
        query = self.query_string.decode("latin-1")
        return MultiDict(parse_qsl(query, keep_blank_values=True, encoding="utf-8", errors="replace"))

    @property
    def full_path(self) -> str:
        return f"{self.path}?{self.query_string.decode('latin-1')}"

    @property
    def remote_addr(self) -> str | None:
        client = self.scope.get("client")
        return client[0] if client else None

    async def get_data(self) -> bytes:
        """The whole body (buffered: only for small ones)."""
        return cast(bytes, await self.body)


_CURRENT: contextvars.ContextVar[RegistryRequest] = contextvars.ContextVar("registry_request")


def _current() -> RegistryRequest:
    found = _CURRENT.get(None)
    # Outside /v2/, Quart's request: it has every attribute the handlers' helpers read.
    return found if found is not None else cast(RegistryRequest, quart_request)


def serving(current: RegistryRequest) -> contextvars.Token[RegistryRequest]:
    """Make `current` the request of this task (front.py; reset with the token when answered)."""
    return _CURRENT.set(current)


def done_serving(token: contextvars.Token[RegistryRequest]) -> None:
    _CURRENT.reset(token)


def _reads(name: str) -> Any:
    return property(lambda _: getattr(_current(), name))


class _CurrentRequest:
    """Each read goes to the request of this task. Properties, one per attribute: werkzeug's LocalProxy
    took about 1.5 us a read here and a plain __getattr__ 0.65 (it runs after a failed lookup, which
    raises), against 0.13 for these; a manifest GET reads the request a dozen times or more."""

    __slots__ = ()
    scope = _reads("scope")
    method = _reads("method")
    path = _reads("path")
    query_string = _reads("query_string")
    headers = _reads("headers")
    body = _reads("body")
    args = _reads("args")
    full_path = _reads("full_path")
    remote_addr = _reads("remote_addr")
    get_data = _reads("get_data")


request: RegistryRequest = cast(RegistryRequest, _CurrentRequest())
