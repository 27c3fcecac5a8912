"""The node tier's two bridges between the host network namespace and a node's (tests/support/node.py).

Run as a script (stdlib only: it must not import the repository, whose `operator` folder would
shadow the standard library):

    python node_relay.py --netns /run/netns/zot-node-x \\
        --api-listen 0.0.0.0:6443 --api-target 127.0.0.1:40123 \\
        --egress-socket /tmp/k8s-control-plane-x/cluster-egress.sock --egress-allow 10.250.0.0/24 ...

- **Node -> API server.** A TCP listener opened *inside* the node's namespace (`--api-listen`):
  each connection is relayed to the API server on the host's loopback (`--api-target`). Kubelet,
  kube-proxy, CoreDNS (`https://127.0.0.1:6443`, the node namespace's own loopback) and pods
  (`https://10.96.0.1`, the `kubernetes` Service, whose endpoint is the node address) use it.
- **API server -> node.** The API server's `cluster` egress (EgressSelectorConfiguration, HTTP
  CONNECT over a unix socket): `kubectl logs/exec` and the API server's proxy to pods and Services
  ask here for `CONNECT <ip>:<port>`; the connection is opened *inside* the node's namespace, and
  only to addresses in `--egress-allow`.

A socket belongs to the network namespace of the thread that created it, so one process does
both: listeners and outgoing node-side sockets are created on a thread that entered the node's
namespace (setns), the API server connections on the main thread, which stays in the host's.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import ctypes
import ipaddress
import os
import signal
import socket
import sys

CLONE_NEWNET = 0x40000000
BUFFER = 256 * 1024
_LIBC = ctypes.CDLL("libc.so.6", use_errno=True)


def enter_netns(path: str) -> None:
    """Move the calling thread into the network namespace at `path` (a /run/netns file)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _LIBC.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host, int(port)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One direction: copy until EOF, then half-close (the other direction may still carry the
    answer: a client that has sent its request may shut down its side before it is read)."""
    try:
        while data := await reader.read(BUFFER):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.transport.abort()  # a broken direction ends the connection


async def splice(
    a: tuple[asyncio.StreamReader, asyncio.StreamWriter], b: tuple[asyncio.StreamReader, asyncio.StreamWriter]
) -> None:
    """Both directions of a connection pair; both sockets closed once both directions are done."""
    try:
        await asyncio.gather(pipe(a[0], b[1]), pipe(b[0], a[1]))
    finally:
        for _, writer in (a, b):
            with contextlib.suppress(OSError):
                writer.close()


class Relay:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.allow = [ipaddress.ip_network(n) for n in args.egress_allow]
        # The one thread that lives in the node's namespace: it only creates sockets.
        self.node_thread = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, initializer=enter_netns, initargs=(args.netns,)
        )

    async def node_socket(self, family: int = socket.AF_INET) -> socket.socket:
        loop = asyncio.get_running_loop()
        sock = await loop.run_in_executor(self.node_thread, socket.socket, family, socket.SOCK_STREAM)
        sock.setblocking(False)
        return sock

    async def to_api(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = host_port(self.args.api_target)
        try:
            upstream = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
        except (OSError, TimeoutError) as exc:
            print(f"api relay: connect {host}:{port}: {exc}", file=sys.stderr, flush=True)
            writer.close()
            return
        await splice((reader, writer), upstream)

    async def connect_proxy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            writer.close()
            return
        request = head.decode("latin-1").split("\r\n", 1)[0].split()
        if len(request) != 3 or request[0] != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        try:
            host, port = host_port(request[1])
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        if not any(ip in net for net in self.allow):
            refused = f"egress: refused CONNECT {request[1]} (not in {self.args.egress_allow})"
            print(refused, file=sys.stderr, flush=True)
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        loop = asyncio.get_running_loop()
        sock = await self.node_socket(socket.AF_INET6 if ip.version == 6 else socket.AF_INET)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (str(ip), port)), 10)
        except (OSError, TimeoutError) as exc:
            sock.close()
            print(f"egress: CONNECT {request[1]}: {exc}", file=sys.stderr, flush=True)
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        upstream = await asyncio.open_connection(sock=sock)
        await splice((reader, writer), upstream)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        stop: asyncio.Future[None] = loop.create_future()

        def request_stop() -> None:
            if not stop.done():
                stop.set_result(None)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, request_stop)
        host, port = host_port(self.args.api_listen)
        listener = await self.node_socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(128)
        api = await asyncio.start_server(self.to_api, sock=listener)
        servers = [api]
        if self.args.egress_socket:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.args.egress_socket)
            servers.append(await asyncio.start_unix_server(self.connect_proxy, path=self.args.egress_socket))
        print(f"relay ready: {self.args.api_listen} -> {self.args.api_target}", flush=True)
        await stop
        for server in servers:
            server.close()
        self.node_thread.shutdown(wait=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--netns", required=True, help="the node's network namespace file (/run/netns/NAME)")
    parser.add_argument("--api-listen", required=True, help="HOST:PORT inside the node's namespace")
    parser.add_argument("--api-target", required=True, help="the API server, HOST:PORT in the host's namespace")
    parser.add_argument("--egress-socket", default="", help="unix socket of the API server's cluster egress")
    parser.add_argument("--egress-allow", action="append", default=[], help="CIDR the egress may connect to")
    asyncio.run(Relay(parser.parse_args()).run())


if __name__ == "__main__":
    main()
