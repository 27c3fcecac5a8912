"""Requests as the registry's handlers see them (zot_registry.api.requests), built without a server."""

from __future__ import annotations

from urllib.parse import urlencode

from zot_registry.api.requests import RegistryRequest
from zot_registry.streaming import FlowControlledBody


def registry_request(
    headers: dict[str, str] | None = None, args: dict[str, str] | None = None, method: str = "GET"
) -> RegistryRequest:
    """A bodiless request to /v2/x with these headers and query parameters, as hypercorn hands it over."""
    scope = {
        "type": "http",
        "method": method,
        "path": "/v2/x",
        "query_string": urlencode(args or {}).encode(),
        "headers": [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()
        ],
        "client": ("127.0.0.1", 40000),
    }
    body = FlowControlledBody(None, None)
    body.set_complete()
    return RegistryRequest(scope, body)
