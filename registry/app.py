"""The Quart application: one dispatcher for /v2/, probes and metrics outside authentication."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

from quart import Quart, Response, request

from . import metrics
from .api import blobs, listing, manifests, uploads
from .api.failures import failure_response, unexpected_response
from .api.http import content_length, page_size, parse_number
from .api.routing import Route, match_route
from .auth import HtpasswdAuth
from .cluster.catch_up import catch_up
from .cluster.changes import Changes
from .cluster.control import PeerCheck, register_control
from .cluster.control_client import PeerControl
from .cluster.decision import Forward, Refuse
from .cluster.imports import Imports
from .cluster.membership import identify_with_retry
from .cluster.node import Cluster
from .cluster.proxy import HOP_HEADER
from .cluster.rebalance import Rebalancer
from .cluster.write_gate import WriteGate
from .config import LoadedConfig, ZotConfig
from .errors import BlobUnknown, ManifestBlobUnknown, ManifestUnknown, MembersChanging, NameUnknown, RegistryError
from .storage.base import Store
from .storage.files import disk_errors
from .storage.local.store import LocalStore
from .storage.open import open_store
from .streaming import FlowControlledConnection, FlowControlledRequest
from .version import VERSION

log = logging.getLogger("zot_registry")

Handler = Callable[[Route, Store], Awaitable[Response]]
ALL_METHODS = ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"]


async def _base(route: Route, store: Store) -> Response:
    return Response("{}", status=200, content_type="application/json")


HANDLERS: dict[str, Handler] = {
    "base": _base,
    "catalog": listing.catalog,
    "tags": listing.tags,
    "manifest": manifests.manifest,
    "blob": blobs.blob,
    "uploads": uploads.start_upload,
    "upload": uploads.upload_session,
    "referrers": listing.referrers,
}


@dataclass
class Readiness:
    """Why the registry is not ready yet: each check returns a reason, or "" when all is well."""

    checks: list[Callable[[], str]] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        return [reason for check in self.checks if (reason := check())]


def create_app(loaded: LoadedConfig) -> Quart:
    config = loaded.config
    app = Quart("zot_registry")
    # Blobs are streamed: no body size limit, no whole-body timeout (a 1 GiB push takes its time).
    app.config.update(MAX_CONTENT_LENGTH=None, BODY_TIMEOUT=None, RESPONSE_TIMEOUT=None)
    store = open_store(config.storage)
    auth = _make_auth(loaded)
    readiness = Readiness()
    storage_usage = metrics.StorageUsage(store.disk_usage)
    cluster = Cluster.from_config(config) if config.cluster is not None and config.cluster.members else None
    gate: WriteGate | None = None
    if cluster is not None:
        _join_cluster(app, cluster, config, readiness)
        readiness.checks.append(cluster.not_ready_reason)
        gate = _control_cluster(app, cluster, config, store)
    app.request_class = FlowControlledRequest
    app.asgi_http_class = FlowControlledConnection

    async def handle(route: Route) -> Response:
        if cluster is not None:
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
                return listing.catalog_response(await cluster.catalog(request, await store.catalog()), n)
            if decision.mount_across:
                mounted = await uploads.mount_across_members(route, store, cluster)
                if mounted is not None:
                    return mounted
            if gate is not None and route.proxyable and request.method not in ("GET", "HEAD"):
                # A write to a repository that is moving to another member waits (write_gate.py).
                async with gate.writing(route.name, partial(cluster.serves_here, request, route)):
                    try:
                        return await HANDLERS[route.kind](route, store)
                    except ManifestBlobUnknown as err:
                        raise cluster.away_instead(route.name, err) from None
        if cluster is not None and route.proxyable:
            try:
                return await HANDLERS[route.kind](route, store)
            except (NameUnknown, ManifestUnknown, BlobUnknown, ManifestBlobUnknown) as err:
                if route.kind == "blob" and request.method == "HEAD":
                    # How a client asks whether to push a blob: told 'retry', docker and skopeo would
                    # give up on a push that the member standing in takes.
                    raise
                raise cluster.away_instead(route.name, err) from None
        return await HANDLERS[route.kind](route, store)

    async def dispatch(rest: str = "") -> Response:
        started = time.perf_counter()
        kind = "unknown"
        try:
            # One rule for the body's length on every route and member, owner or not (SIZE_INVALID).
            content_length()
            if auth is not None:
                await auth.authenticate(request.headers.get("Authorization"))
            route = match_route(rest, request.method)
            kind = route.kind
            with disk_errors():  # a full disk is a 507 that says so, not an anonymous 500
                response = await handle(route)
        except RegistryError as err:
            response = await failure_response(err)
        response.headers["Docker-Distribution-API-Version"] = "registry/2.0"
        _observe(kind, response, started)
        return response

    app.add_url_rule("/v2/", "v2_base", dispatch, methods=ALL_METHODS)
    app.add_url_rule("/v2/<path:rest>", "v2", dispatch, methods=ALL_METHODS)

    if config.storage.gc and config.storage.gc_interval > 0:
        # In a cluster only a repository's owner collects it: with shared storage, every member sees it.
        owns = cluster.owns if cluster is not None else (lambda _: True)
        _schedule_gc(app, store, owns, config.storage.gc_delay, config.storage.gc_interval)

    @app.after_serving
    async def close_store() -> None:
        await store.close()
        if auth is not None:
            auth.close()

    @app.route("/livez")
    async def livez() -> Response:
        return Response("ok", status=200)

    @app.route("/startupz")
    async def startupz() -> Response:
        # Started means serving: a member still looking for itself in the list, or not in it at all,
        # has started (kubelet must not kill it) but is not ready.
        return Response("ok", status=200)

    @app.route("/readyz")
    async def readyz() -> Response:
        reasons = readiness.reasons
        if backend := await store.ready():
            reasons.append(backend)
        if not reasons:
            return Response("ok", status=200)
        return Response("not ready: " + "; ".join(reasons), status=503)

    @app.route("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(storage_usage), status=200, content_type="text/plain; version=0.0.4")

    @app.errorhandler(Exception)
    async def unexpected(err: Exception) -> Response:
        return unexpected_response(err)

    return app


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


def _schedule_gc(app: Quart, store: Store, owns: Callable[[str], bool], delay: float, interval: float) -> None:
    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                report = await store.collect_garbage(delay, owns)
            except (OSError, RegistryError) as err:
                # A backend that is down now may be back at the next pass; nothing was half-deleted.
                log.warning("garbage collection failed: %s", err)
                continue
            if report is not None:
                log.info("garbage collection done", extra=vars(report))

    tasks: list[asyncio.Task[None]] = []

    @app.before_serving
    async def start_gc() -> None:
        tasks.append(asyncio.get_running_loop().create_task(loop()))

    @app.after_serving
    async def stop_gc() -> None:
        for task in tasks:
            task.cancel()


def _make_auth(loaded: LoadedConfig) -> HtpasswdAuth | None:
    auth = loaded.config.http.auth
    htpasswd = getattr(auth, "htpasswd", None) if auth else None
    path = getattr(htpasswd, "path", None) if htpasswd else None
    if not path:
        return None
    return HtpasswdAuth(path, realm=loaded.config.http.realm or "zot", fail_delay=float(auth.fail_delay if auth else 0))


def _observe(kind: str, response: Response, started: float) -> None:
    elapsed = time.perf_counter() - started
    method, status = request.method, str(response.status_code)
    metrics.REQUESTS.labels(kind, method, status).inc()
    metrics.LATENCY.labels(kind, method).observe(elapsed)
    length = parse_number(request.headers.get("Content-Length"))
    if length:
        metrics.BYTES_IN.labels(kind).inc(length)
    sent = parse_number(response.headers.get("Content-Length"))
    if sent and method != "HEAD":
        metrics.BYTES_OUT.labels(kind).inc(sent)
    if log.isEnabledFor(logging.INFO):
        log.info(
            "request",
            extra={
                "method": method,
                "path": request.full_path.rstrip("?"),
                "status": status,
                "route": kind,
                "duration_ms": round(elapsed * 1000, 3),
                "remote": request.remote_addr,
            },
        )
