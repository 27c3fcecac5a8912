"""Who am I in `cluster.members`, and who owns a repository.

zot's rule: resolve every member's host and take the first whose address is one of this machine's
interface addresses and whose port is `http.port`. Extended: when `http.address` names a specific
address, only that address counts, so several members can share a host (127.0.0.1, .2, .3 in tests).
Unlike zot, DNS failures are retried: members of a StatefulSet appear in DNS one by one.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass, field

import psutil

from .hashing import Routing, owner_of

log = logging.getLogger("zot_registry.cluster")

_WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


@dataclass
class Membership:
    members: list[tuple[str, int]]
    key: bytes
    self_index: int | None = None
    reason: str = "resolving cluster members"
    # Known not to be in this list (a member leaving after a change): it forwards every repository.
    outside: bool = False
    routing: Routing = "modulo"
    _cache: dict[str, int] = field(default_factory=dict)

    @property
    def addresses(self) -> list[str]:
        return [self.member(i) for i in range(len(self.members))]

    def member(self, index: int) -> str:
        host, port = self.members[index]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def owner(self, name: str) -> int:
        index = self._cache.get(name)
        if index is None:
            index = owner_of(name, self.key, self.addresses, self.routing)
            if len(self._cache) < 100_000:
                self._cache[name] = index
        return index


def _normalise(address: str) -> str:
    return str(ipaddress.ip_address(address.split("%", 1)[0]))


def local_addresses() -> set[str]:
    found: set[str] = set()
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    found.add(_normalise(address.address))
                except ValueError:
                    continue
    return found


def resolve(host: str) -> set[str]:
    """Every address of a host; raises OSError (socket.gaierror) when DNS does not know it yet."""
    return {_normalise(str(info[4][0])) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}


class NotAMember(Exception):
    pass


def identify(members: list[tuple[str, int]], address: str, port: int) -> int:
    """The index of this member. Raises OSError on DNS trouble, NotAMember when no member matches."""
    mine = local_addresses() if address in _WILDCARDS else resolve(address)
    unresolved: list[str] = []
    for index, (host, member_port) in enumerate(members):
        if member_port != port:
            continue
        try:
            if resolve(host) & mine:
                return index
        except OSError:
            unresolved.append(host)
    if unresolved:
        raise OSError(f"cannot resolve {', '.join(unresolved)} yet")
    raise NotAMember(
        f"none of cluster.members is this instance: no member has port {port} and one of the "
        f"addresses {sorted(mine)}; check cluster.members and http.address/http.port"
    )


async def identify_with_retry(
    membership: Membership, address: str, port: int, interval: float = 1.0, max_interval: float = 10.0
) -> None:
    """Keep trying until this instance finds itself; readiness reports `membership.reason` meanwhile."""
    delay = interval
    logged = ""
    while True:
        try:
            membership.self_index = await asyncio.to_thread(identify, membership.members, address, port)
            membership.reason = ""
            log.info(
                "cluster member identified",
                extra={
                    "index": membership.self_index,
                    "member": membership.member(membership.self_index),
                    "members": len(membership.members),
                },
            )
            return
        except (OSError, NotAMember) as err:
            membership.reason = str(err)
            if membership.reason != logged:
                log.warning("not identified in the cluster yet", extra={"reason": membership.reason})
                logged = membership.reason
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_interval)
