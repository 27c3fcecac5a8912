"""Test harness only: a hosts file for Python processes, like /etc/hosts but per test.

Put this folder on PYTHONPATH and set ZOT_TEST_HOSTS to a JSON object {hostname: address}: the
registry processes started by the operator test then resolve the Kubernetes member names the
operator wrote (demo-0.demo-members.<ns>.svc.cluster.local) to loopback addresses, while their
configs and certificates stay exactly as the operator made them.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

_HOSTS: dict[str, str] = json.loads(os.environ.get("ZOT_TEST_HOSTS", "{}"))
_original = socket.getaddrinfo


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if isinstance(host, bytes):
        host = host.decode()
    return _original(_HOSTS.get(host, host), *args, **kwargs)


if _HOSTS:
    socket.getaddrinfo = _getaddrinfo
