"""The adversarial HTTP tests against one registry: its environment, and a request sent as written
whose answer must be sane."""

from __future__ import annotations

import base64

from tests.support.checks import assert_sane_response
from tests.support.rawhttp import RawAnswer, exchange, request_bytes
from tests.support.registry import RegistryProcess

# Short enough for a test, long enough not to fire on a loaded machine between two chunks.
FAST_ENV = {"ZOT_HTTP_BODY_IDLE_TIMEOUT": "2", "ZOT_HTTP_LINGER_SECONDS": "3"}


def raw(
    registry: RegistryProcess,
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    until_close: bool = False,
    case: str = "",
) -> RawAnswer:
    answer = exchange(
        registry.host, registry.port, request_bytes(method, target, headers, body), until_close=until_close
    )
    shown = target if target.startswith("/") else "/"
    assert_sane_response(answer.as_httpx(method, f"{registry.url}{shown}"), case or target)
    return answer


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
