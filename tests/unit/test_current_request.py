"""`api.requests.request`: what the handlers read is the request of their own task."""

from __future__ import annotations

import asyncio
import inspect

from zot_registry.api import requests
from zot_registry.streaming import FlowControlledBody


def _scope(path: str, query: bytes = b"") -> dict[str, object]:
    return {"method": "GET", "path": path, "query_string": query, "headers": [(b"x-n", path.encode())]}


def test_every_attribute_of_a_request_reads_through_it() -> None:
    attributes = {name for name, _ in inspect.getmembers(requests.RegistryRequest) if not name.startswith("_")}
    attributes |= {"scope", "method", "path", "query_string", "headers", "body"}  # set in __init__
    missing = {name for name in attributes if not isinstance(getattr(requests._CurrentRequest, name, None), property)}
    assert not missing, f"not readable through `request`: {sorted(missing)}"


def test_each_task_reads_its_own_request() -> None:
    async def serve(path: str) -> tuple[str, str, str, str | None]:
        token = requests.serving(requests.RegistryRequest(_scope(path, b"n=2"), FlowControlledBody(None, None)))
        try:
            await asyncio.sleep(0)  # the other task runs in between
            request = requests.request
            return request.path, request.full_path, request.headers["X-N"], request.args.get("n")
        finally:
            requests.done_serving(token)

    async def both() -> list[tuple[str, str, str, str | None]]:
        return list(await asyncio.gather(serve("/v2/a"), serve("/v2/b")))

    assert asyncio.run(both()) == [("/v2/a", "/v2/a?n=2", "/v2/a", "2"), ("/v2/b", "/v2/b?n=2", "/v2/b", "2")]
