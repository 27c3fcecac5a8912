"""This member's view of the cluster: its membership and proxy, and what it asks the other members for
(the catalog gathered from all of them, a blob to mount). Where a request is answered is decision.py's."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from multidict import CIMultiDict

from ..api.requests import RegistryRequest
from ..api.routing import Route
from ..authn.current import vouching_headers
from ..config import ZotConfig
from ..digests import Digest
from ..errors import ManifestBlobUnknown, MemberAway, PeerBadGateway, PeerUnavailable, RegistryError
from ..storage.base import Store
from ..tuning import env_seconds
from .decision import Decision, ServeHere, decide
from .membership import Membership
from .proxy import HOP_HEADER, PeerProxy, peer_ssl_context
from .topology import Topology, View


@dataclass
class Cluster:
    topology: Topology
    proxy: PeerProxy
    # With shared storage (S3 or a remote cache) every member sees every repository.
    shared_storage: bool
    # Requests of the control API to other members: our certificate as client certificate.
    control_proxy: PeerProxy
    # Until catch_up.py has asked the others for their list (a list taken in place may be old by now).
    settling: bool = True

    @classmethod
    def from_config(cls, config: ZotConfig) -> Cluster:
        assert config.cluster is not None
        tls = config.cluster.tls
        scheme = "https" if config.http.tls is not None else "http"
        # zot presents a client certificate to peers only with cluster.tls.cert/key; the control
        # API always needs one, and so does vouching for a client certificate's identity (with
        # mTLS, http.tls.cacert): this member's own, which the cluster CA signed for both uses.
        own_cert, own_key = (tls.cert, tls.key) if tls and tls.cert else (None, None)
        if not own_cert and config.http.tls is not None:
            own_cert, own_key = config.http.tls.cert, config.http.tls.key
        mtls = config.http.tls is not None and bool(config.http.tls.cacert)
        context = None
        if scheme == "https":
            cert, key = (own_cert, own_key) if mtls else (tls.cert, tls.key) if tls else (None, None)
            context = peer_ssl_context(tls.cacert if tls else None, cert, key)
        topology = Topology(
            Path(config.storage.root_directory),
            list(config.cluster.members),
            config.cluster.hash_key_bytes,
            config.cluster.routing,
        )
        shared = bool(config.storage.storage_driver) or bool(config.storage.remote_cache)
        # Peer timeouts: the defaults suit a LAN; the environment may tune them (tests shorten them).
        connect_timeout = env_seconds("ZOT_CLUSTER_CONNECT_TIMEOUT", 3.0)
        read_timeout = env_seconds("ZOT_CLUSTER_READ_TIMEOUT", 20.0)
        proxy = PeerProxy(scheme, context, connect_timeout=connect_timeout, read_timeout=read_timeout)
        control_context = None
        if scheme == "https" and config.http.tls is not None:
            control_context = peer_ssl_context(tls.cacert if tls else None, own_cert, own_key)
        control_proxy = PeerProxy(scheme, control_context, connect_timeout=connect_timeout, read_timeout=read_timeout)
        return cls(topology, proxy, shared, control_proxy)

    @property
    def membership(self) -> Membership:
        """The list this member routes by now."""
        return self.topology.view().current

    def owns(self, name: str) -> bool:
        """Whether this member owns `name` (False until it knows which member it is)."""
        membership = self.membership
        me = membership.self_index
        return me is not None and membership.owner(name) == me

    def decide(self, request: RegistryRequest, route: Route) -> Decision:
        """Serve `request` here, forward it to its owner, or refuse it (decision.decide)."""
        return decide(request, route, self.topology.view(), self.shared_storage)

    def serves_here(self, request: RegistryRequest, route: Route, view: View) -> bool:
        """Whether `view` (a fresher reading of the topology) still has this member serve the request."""
        return isinstance(decide(request, route, view, self.shared_storage), ServeHere)

    def away_instead(self, name: str, err: RegistryError) -> RegistryError:
        """`err` (not found), or MemberAway (503) when the member that owns `name` was dropped by failover:
        what it holds cannot be had until it is back, and a client retries a 503 where it gives up on a 404.
        A manifest refused for a missing blob stays a 400, with why the blob is missing."""
        away = self.topology.view().away_owner(name)
        if away is None:
            return err
        if isinstance(err, ManifestBlobUnknown):
            # A push begun before its member went down: the blobs it acknowledged are on that
            # member's disk, and come back with it. The client pushes them again to this one.
            return ManifestBlobUnknown(
                f"{err.message}: repository {name!r} belongs to member {away}, which is down, and this "
                "member stands in for it; push the blobs it lacks again",
                detail=err.detail,
            )
        return MemberAway(
            f"{err.message}: repository {name!r} belongs to member {away}, which is down; "
            "it is served again once that member is back",
            headers={"Retry-After": "10"},
        )

    def not_ready_reason(self) -> str:
        """Why readiness fails, "" when this member can answer: it knows its place in the list, or is
        not in it but joins with the change under way (it forwards meanwhile)."""
        view = self.topology.view()
        if view.current.self_index is not None or view.current.outside:
            return ""
        if view.next is not None and view.next.self_index is not None:
            return ""
        return view.current.reason

    async def aclose(self) -> None:
        await self.proxy.aclose()
        await self.control_proxy.aclose()

    async def mount_from_peer(
        self, request: RegistryRequest, store: Store, name: str, digest: Digest, source: str
    ) -> bool:
        """Cross-repository mount when `from` lives on another member: copy the blob over, streaming.

        zot cannot mount across members with storage local to each; clients then upload again.
        """
        membership = self.membership
        if self.shared_storage or membership.owner(source) == membership.self_index:
            return False
        peer = membership.member(membership.owner(source))
        try:
            response = await self.proxy.request(
                peer, "GET", f"/v2/{source}/blobs/{digest}", self._peer_headers(request)
            )
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

    async def catalog(self, request: RegistryRequest, local: list[str]) -> list[str]:
        """This member's repositories (`local`) and every other member's, sorted. During a change, the
        members of both lists: a repository may already have left a member that switched."""
        view = self.topology.view()
        lists = [view.current, *([view.next] if view.next is not None else [])]
        peers = sorted(
            {m.member(i) for m in lists for i in range(len(m.members)) if i != m.self_index}
            - {m.member(m.self_index) for m in lists if m.self_index is not None}
        )
        answers = await asyncio.gather(*(self._peer_catalog(peer, request) for peer in peers))
        names = set(local)
        for answer in answers:
            names.update(answer)
        return sorted(names)

    @staticmethod
    def _peer_headers(request: RegistryRequest) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict({HOP_HEADER: "1", **vouching_headers()})
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        return headers

    async def _peer_catalog(self, peer: str, request: RegistryRequest) -> list[str]:
        try:
            response = await self.proxy.request(peer, "GET", "/v2/_catalog", self._peer_headers(request))
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
