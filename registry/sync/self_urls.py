"""zot drops the sync URLs that point at the registry itself (removeSelfURLs in
pkg/extensions/extension_sync.go): a URL naming this member's own address and port, or a host that
resolves to a loopback address or to one of this machine's interface addresses with this member's
port. In a cluster whose members share one config, a member listed as an upstream is then no
upstream of itself. A host that does not resolve stays (it may resolve later, as in zot)."""

from __future__ import annotations

import ipaddress
import logging
import socket
from urllib.parse import urlsplit

import psutil

log = logging.getLogger("zot_registry.sync")


def _local_addresses() -> set[str]:
    found = set()
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family in (socket.AF_INET, socket.AF_INET6):
                found.add(address.address.split("%", 1)[0])
    return found


def _resolved(host: str) -> set[str] | None:
    try:
        return {str(info[4][0]).split("%", 1)[0] for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return None


def _points_here(url: str, http_address: str, http_port: int, local: set[str]) -> bool:
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    if port != http_port:
        return False
    if host == http_address:
        return True
    resolved = _resolved(host)
    if resolved is None:
        log.warning("sync: the host of a sync URL does not resolve (kept)", extra={"url": url})
        return False
    return any(ipaddress.ip_address(ip).is_loopback or ip in local for ip in resolved)


def without_self(urls: list[str], http_address: str, http_port: int) -> list[str]:
    """`urls` in their order, less those that point at this registry."""
    local = _local_addresses()
    kept = []
    for url in urls:
        if _points_here(url, http_address, http_port, local):
            log.info("sync: removing a sync URL that points at this registry", extra={"url": url})
        else:
            kept.append(url)
    return kept
