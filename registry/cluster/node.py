"""This member's view of the cluster: routing decisions and the catalog gathered from all members."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict
from quart import request

from ..config import ZotConfig
from ..digests import Digest
from ..errors import LoopDetected, PeerBadGateway, PeerUnavailable, RegistryError
from ..storage.base import Store
from ..tuning import env_seconds
from .membership import Membership
from .proxy import HOP_HEADER, PeerProxy, peer_ssl_context


@dataclass
class Cluster:
    membership: Membership
    proxy: PeerProxy
    # With shared storage (S3 or a remote cache) every member sees every repository.
    shared_storage: bool

    @classmethod
    def from_config(cls, config: ZotConfig) -> Cluster:
        assert config.cluster is not None
        tls = config.cluster.tls
        scheme = "https" if config.http.tls is not None else "http"
        context = peer_ssl_context(tls.cacert if tls else None, tls.cert if tls else None,
                                   tls.key if tls else None) if scheme == "https" else None
        membership = Membership(config.cluster.member_addresses, config.cluster.hash_key_bytes)
        shared = bool(config.storage.storage_driver) or bool(config.storage.remote_cache)
        # Peer timeouts: the defaults suit a LAN; the environment may tune them (tests shorten them).
        proxy = PeerProxy(scheme, context, connect_timeout=env_seconds("ZOT_CLUSTER_CONNECT_TIMEOUT", 3.0),
                          read_timeout=env_seconds("ZOT_CLUSTER_READ_TIMEOUT", 20.0))
        return cls(membership, proxy, shared)

    def owns(self, name: str) -> bool:
        """Whether this member owns `name` (False until it knows which member it is)."""
        me = self.membership.self_index
        return me is not None and self.membership.owner(name) == me

    def peer_for(self, name: str) -> str | None:
        """The owner's address when another member owns `name`; None when we do."""
        me = self.membership.self_index
        if me is None:
            raise PeerUnavailable(f"this member is not ready: {self.membership.reason}")
        owner = self.membership.owner(name)
        if owner == me:
            return None
        if request.headers.get(HOP_HEADER):
            # The sender thought we own it; we think another member does: the member lists differ.
            raise LoopDetected(f"repository {name!r} belongs to {self.membership.member(owner)} by this member's "
                               "list, but the request was already proxied once: cluster.members differ between "
                               "members")
        return self.membership.member(owner)

    async def mount_from_peer(self, store: Store, name: str, digest: Digest, source: str) -> bool:
        """Cross-repository mount when `from` lives on another member: copy the blob over, streaming.

        zot cannot mount across members with storage local to each; clients then upload again.
        """
        if self.shared_storage or self.membership.owner(source) == self.membership.self_index:
            return False
        peer = self.membership.member(self.membership.owner(source))
        try:
            response = await self.proxy.request(peer, "GET", f"/v2/{source}/blobs/{digest}", self._peer_headers())
        except RegistryError:
            return False
        try:
            if response.status != 200:
                return False
            await store.put_blob(name, digest, response.content.iter_chunked(1 << 20), response.content_length)
            return True
        except aiohttp.ClientError:
            return False
        finally:
            response.release()

    def gathers_catalog(self) -> bool:
        """Storage local to each member: the catalog must come from all of them (zot answers locally)."""
        return not self.shared_storage and not request.headers.get(HOP_HEADER)

    async def catalog(self, local: list[str]) -> list[str]:
        me = self.membership.self_index
        peers = [self.membership.member(i) for i in range(len(self.membership.members)) if i != me]
        answers = await asyncio.gather(*(self._peer_catalog(peer) for peer in peers))
        names = set(local)
        for answer in answers:
            names.update(answer)
        return sorted(names)

    @staticmethod
    def _peer_headers() -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict({HOP_HEADER: "1"})
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        return headers

    async def _peer_catalog(self, peer: str) -> list[str]:
        try:
            response = await self.proxy.request(peer, "GET", "/v2/_catalog", self._peer_headers())
        except RegistryError as err:
            raise PeerUnavailable(f"catalog incomplete: {err.message}") from None
        try:
            if response.status != 200:
                raise PeerBadGateway(f"catalog incomplete: member {peer} answered {response.status}")
            return list(json.loads(await response.read())["repositories"])
        except (ValueError, KeyError, TypeError, aiohttp.ClientError):
            raise PeerBadGateway(f"catalog incomplete: member {peer} sent an invalid catalog") from None
        finally:
            response.release()
