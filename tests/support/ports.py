"""Free loopback ports: one on a host, or one free on all of a cluster's member addresses."""

from __future__ import annotations

import socket

from zot_registry.local.addresses import port_free_for_members


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct free ports: each socket stays bound until all are chosen, so two calls of
    free_port cannot hand out the same port (seaweedfs once got one port for master and filer)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sockets.append(sock)
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_free_on_all(count: int) -> int:
    """A port free on 127.0.0.1 .. 127.0.0.N: members share one port, as on separate hosts."""
    return port_free_for_members(count)
