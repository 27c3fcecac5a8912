"""Where the members of a cluster on one machine listen: member i on 127.0.0.(i+1), all on one port,
as members on different hosts would."""

from __future__ import annotations

import socket
from collections.abc import Iterable


def member_address(index: int) -> str:
    if not 0 <= index < 254:
        raise ValueError("local-cluster supports 1 to 254 members")
    return f"127.0.0.{index + 1}"


def port_taken(hosts: Iterable[str], port: int) -> str | None:
    """The first of `hosts` where `port` cannot be bound (something listens there), else None.

    SO_REUSEADDR as hypercorn sets it, so sockets of a member that just stopped (TIME_WAIT) do not count.
    """
    for host in hosts:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                return host
    return None


def port_free_for_members(count: int, attempts: int = 50) -> int:
    """One port free on every member address (127.0.0.1 .. 127.0.0.N): members share a port, as on hosts."""
    for _ in range(attempts):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port_taken([member_address(i) for i in range(count)], port) is None:
            return port
    raise RuntimeError(f"no port free on all of 127.0.0.1 .. 127.0.0.{count}")
