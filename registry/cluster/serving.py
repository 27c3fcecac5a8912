"""What a member of a cluster adds to the app: each request served here or forwarded to its
repository's owner, the member list caught up with the others' at start, and the control API that
membership changes go through. app.py imports this module only when the config lists members."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

from quart import Quart, Response

from ..api import listing, uploads
from ..api.handlers import HANDLERS, Handler, Readiness
from ..api.http import page_size
from ..api.requests import request
from ..api.routing import Route
from ..config import ZotConfig
from ..errors import BlobUnknown, ManifestBlobUnknown, ManifestUnknown, MembersChanging, NameUnknown
from ..storage.base import Store
from ..storage.local.store import LocalStore
from ..version import VERSION
from .catch_up import catch_up
from .changes import Changes
from .control import PeerCheck, register_control
from .control_client import PeerControl
from .decision import Forward, Refuse
from .imports import Imports
from .membership import identify_with_retry
from .node import Cluster
from .proxy import HOP_HEADER
from .rebalance import Rebalancer
from .write_gate import WriteGate

_NOT_FOUND = (NameUnknown, ManifestUnknown, BlobUnknown, ManifestBlobUnknown)


@dataclass
class ClusterSide:
    node: Cluster
    store: Store
    gate: WriteGate | None  # with storage local to each member: writes to a moving repository wait
    # What serves a request here: the API's handlers, with what the app adds (sync on demand,
    # access control's checks).
    handlers: Mapping[str, Handler] = field(default_factory=lambda: HANDLERS)
    # The repositories of a catalog gathered from every member that the caller may see (access
    # control: registry/access/guard.py); None: all of them.
    visible: Callable[[list[str]], list[str]] | None = None

    @classmethod
    def attach(
        cls,
        app: Quart,
        config: ZotConfig,
        store: Store,
        readiness: Readiness,
        handlers: Mapping[str, Handler] = HANDLERS,
        visible: Callable[[list[str]], list[str]] | None = None,
    ) -> ClusterSide:
        node = Cluster.from_config(config)
        _join_cluster(app, node, config, readiness)
        readiness.checks.append(node.not_ready_reason)
        return cls(node, store, _control_cluster(app, node, config, store), handlers, visible)

    async def handle(self, route: Route) -> Response:
        cluster, store, gate, handlers = self.node, self.store, self.gate, self.handlers
        if cluster.settling and route.proxyable and not request.headers.get(HOP_HEADER):
            # Until it knows it routes by the cluster's latest list (catch_up.py), a member serves
            # no repository: it could be one it gave away while it was down.
            raise MembersChanging("this member is starting: retry in a moment", headers={"Retry-After": "1"})
        decision = cluster.decide(request, route)
        if isinstance(decision, Refuse):
            raise decision.error
        if isinstance(decision, Forward):
            return await cluster.proxy.forward(request, decision.member, route.kind, decision.hops, decision.epoch)
        if decision.gather_catalog:
            n = page_size()  # a bad n is refused before any member is asked
            # The others filter what they send for the same credentials; filtered here again, so that
            # a member without access control (or another stanza) cannot widen what the caller sees.
            names = await cluster.catalog(request, await store.catalog())
            return listing.catalog_response(self.visible(names) if self.visible is not None else names, n)
        if decision.mount_across:
            mounted = await uploads.mount_across_members(route, store, cluster)
            if mounted is not None:
                return mounted
        if gate is not None and route.proxyable and request.method not in ("GET", "HEAD"):
            # A write to a repository that is moving to another member waits (write_gate.py).
            async with gate.writing(route.name, partial(cluster.serves_here, request, route)):
                try:
                    return await handlers[route.kind](route, store)
                except ManifestBlobUnknown as err:
                    raise cluster.away_instead(route.name, err) from None
        if not route.proxyable:
            return await handlers[route.kind](route, store)
        try:
            return await handlers[route.kind](route, store)
        except _NOT_FOUND as err:
            if route.kind == "blob" and request.method == "HEAD":
                # How a client asks whether to push a blob: told 'retry', docker and skopeo would
                # give up on a push that the member standing in takes.
                raise
            raise cluster.away_instead(route.name, err) from None


def _join_cluster(app: Quart, cluster: Cluster, config: ZotConfig, readiness: Readiness) -> None:
    tasks: list[asyncio.Task[None]] = []
    caught_up = asyncio.Event()
    readiness.checks.append(lambda: "" if caught_up.is_set() else "asking the other members for their member list")

    async def catch_up_once() -> None:
        try:
            await catch_up(cluster, config.http.address, config.http.port)
        finally:
            caught_up.set()
            cluster.settling = False

    @app.before_serving
    async def identify_self() -> None:
        membership = cluster.membership
        if membership.self_index is None and not membership.outside:
            coroutine = identify_with_retry(membership, config.http.address, config.http.port)
            tasks.append(asyncio.get_running_loop().create_task(coroutine))
        tasks.append(asyncio.get_running_loop().create_task(catch_up_once()))

    @app.after_serving
    async def leave() -> None:
        for task in tasks:
            task.cancel()
        await cluster.aclose()


def _control_cluster(app: Quart, cluster: Cluster, config: ZotConfig, store: Store) -> WriteGate | None:
    """The control API, and for storage local to each member what a change copies and gates."""
    assert config.cluster is not None
    tls = config.cluster.tls
    check = PeerCheck(tls.cacert if tls else None, config.http.tls is not None)
    local = store if isinstance(store, LocalStore) and not cluster.shared_storage else None
    imports = Imports(local, cluster.topology.folder) if local is not None else None
    changes = Changes(
        cluster.topology,
        local,
        imports,
        config.http.address,
        config.http.port,
        cluster.shared_storage,
        VERSION,
    )
    gate = WriteGate(cluster.topology) if local is not None else None
    rebalancer = (
        Rebalancer(local, cluster.topology, gate, PeerControl(cluster.control_proxy), config.cluster.hash_key_bytes)
        if local is not None and gate is not None
        else None
    )

    def start() -> None:
        if rebalancer is not None:
            rebalancer.start_if_idle()
        else:
            changes.settle_shared()

    register_control(app, check, changes, cluster.topology, imports, start)

    @app.before_serving
    async def resume() -> None:
        # A change under way when this member stopped goes on (the operator's next request would start it too).
        if cluster.topology.view(fresh=True).change is not None:
            start()
        elif local is not None:
            await asyncio.to_thread(changes.retire_pending)

    @app.after_serving
    async def stop_changes() -> None:
        if rebalancer is not None:
            await rebalancer.stop()
        await changes.stop()

    return gate
