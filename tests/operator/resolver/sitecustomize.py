"""Test harness only: a hosts file for Python processes, like /etc/hosts but per test.

Put this folder on PYTHONPATH (tests.support.hosts.resolver_env does) and set either or both of:

- ZOT_TEST_HOSTS, a JSON object {hostname: address}: exactly these names resolve to these addresses.
  The registry processes of the operator tests resolve the Kubernetes member names the operator
  wrote (demo-0.demo-members.<ns>.svc.cluster.local) to loopback addresses this way, while their
  configs and certificates stay exactly as the operator made them.
- ZOT_TEST_HOST_PATTERN, a regular expression with a group named `ordinal`: a name it matches whole
  (re.fullmatch) resolves to 127.0.0.<ordinal + 1>, member <ordinal>'s loopback address in the tests.
  For a process that must resolve the members of namespaces made after it started (the operator of
  a test module); tests.support.hosts.MEMBER_HOST_PATTERN is the one for member names.

ZOT_TEST_HOSTS wins where both name a host. Other names resolve as usual. Only socket.getaddrinfo is
patched, which the stdlib asyncio loop uses too; uvloop and other native resolvers bypass it.
"""

from __future__ import annotations

import json
import os
import re
import socket
from typing import Any

_HOSTS: dict[str, str] = json.loads(os.environ.get("ZOT_TEST_HOSTS", "{}"))
_PATTERN = re.compile(os.environ["ZOT_TEST_HOST_PATTERN"]) if os.environ.get("ZOT_TEST_HOST_PATTERN") else None
_original = socket.getaddrinfo


def _address(host: str) -> str:
    if host in _HOSTS:
        return _HOSTS[host]
    match = _PATTERN.fullmatch(host) if _PATTERN else None
    return f"127.0.0.{int(match['ordinal']) + 1}" if match else host


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if isinstance(host, bytes):
        host = host.decode()
    return _original(_address(host) if isinstance(host, str) else host, *args, **kwargs)


if _HOSTS or _PATTERN:
    socket.getaddrinfo = _getaddrinfo
