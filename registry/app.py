"""The application: one dispatcher for /v2/ (served by api/front.py, without Quart's per-request
machinery), and in Quart the probes and metrics outside authentication."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from quart import Quart, Response

from . import metrics
from .access.guard import AccessGuard
from .access.policy import ANONYMOUS
from .api.failures import error_response, failure_response, unexpected_response
from .api.front import Front
from .api.handlers import HANDLERS, Readiness
from .api.http import content_length, parse_number
from .api.requests import request
from .api.routing import Route, match_route
from .authn.authenticator import Authenticator, PasswordChecker
from .authn.current import acting_as
from .authn.htpasswd import HtpasswdAuth
from .config import LoadedConfig
from .errors import RegistryError
from .storage.base import Store
from .storage.files import disk_errors
from .storage.open import open_store
from .streaming import FlowControlledConnection, FlowControlledRequest

if TYPE_CHECKING:
    from .cluster.serving import ClusterSide
    from .sync.extension import SyncExtension

log = logging.getLogger("zot_registry")

ALL_METHODS = ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"]


def create_app(loaded: LoadedConfig) -> Front:
    config = loaded.config
    app = Quart("zot_registry")
    # Blobs are streamed: no body size limit, no whole-body timeout (a 1 GiB push takes its time).
    app.config.update(MAX_CONTENT_LENGTH=None, BODY_TIMEOUT=None, RESPONSE_TIMEOUT=None)
    store = open_store(config.storage)
    # Who sent a request (authn/): htpasswd, LDAP, client certificates, a member vouching for its client.
    authenticator = Authenticator.from_config(config, _make_htpasswd(loaded), _make_ldap(loaded))
    # http.accessControl (registry/access/): who may do what; None: whoever authenticates, everything.
    guard = AccessGuard.from_config(config, authenticator)
    readiness = Readiness()
    storage_usage = metrics.StorageUsage(store.disk_usage)
    sync: SyncExtension | None = None
    if config.sync is not None and config.sync.enabled:
        # Imported only when configured, as the cluster's modules below.
        from .sync.extension import SyncExtension

        sync = SyncExtension.from_config(config, store)
    handlers = sync.handlers(HANDLERS) if sync is not None else HANDLERS
    if guard is not None:
        # Outermost: the checks that need the storage run before anything the handlers do.
        handlers = guard.handlers(handlers)
    cluster: ClusterSide | None = None
    if config.is_member:
        # Imported only by members of a cluster: its modules (aiohttp, the control API's models) are
        # half of the app's import time (server.app_modules preloads them for a member's workers).
        from .cluster.serving import ClusterSide

        cluster = ClusterSide.attach(
            app, config, store, readiness, handlers, visible=guard.visible if guard is not None else None
        )
    app.request_class = FlowControlledRequest
    app.asgi_http_class = FlowControlledConnection

    async def handle(route: Route) -> Response:
        if cluster is not None:
            return await cluster.handle(route)
        return await handlers[route.kind](route, store)

    async def dispatch(rest: str = "") -> Response:
        started = time.perf_counter()
        kind = "unknown"
        try:
            # One rule for the body's length on every route and member, owner or not (SIZE_INVALID).
            content_length()
            if guard is not None:
                # Before the route, as without access control: a wrong path without credentials is a 401.
                identity = await guard.authenticate(request.headers)
                route = match_route(rest, request.method)
                kind = route.kind
                # Before a member of a cluster forwards it: the owner checks again, with the same credentials.
                await guard.authorize(identity, route, request.method, request.headers)
                with guard.acting_as(identity), disk_errors():
                    response = await handle(route)
            else:
                # Everyone who logs in may do everything; the identity still goes with a forwarded request.
                identity = await authenticator.identify(request.headers, False) if authenticator.enabled else ANONYMOUS
                route = match_route(rest, request.method)
                kind = route.kind
                with acting_as(identity), disk_errors():  # a full disk is a 507 that says so, not a 500
                    response = await handle(route)
        except RegistryError as err:
            response = await failure_response(err)
        response.headers["Docker-Distribution-API-Version"] = "registry/2.0"
        _observe(kind, response, started)
        return response

    # Front answers under /v2/ before Quart sees the request; Quart still redirects `/v2` to `/v2/`.
    app.add_url_rule("/v2/", "v2_base", dispatch, methods=ALL_METHODS)
    app.add_url_rule("/v2/<path:rest>", "v2", dispatch, methods=ALL_METHODS)

    if sync is not None:
        # Only the owner of a repository syncs it periodically: the local name decides.
        sync.schedule(app, cluster.node.owns if cluster is not None else (lambda _: True))

    if config.storage.gc and config.storage.gc_interval > 0:
        # In a cluster only a repository's owner collects it: with shared storage, every member sees it.
        owns = cluster.node.owns if cluster is not None else (lambda _: True)
        _schedule_gc(app, store, owns, config.storage.gc_delay, config.storage.gc_interval)

    @app.after_serving
    async def close_store() -> None:
        if sync is not None:
            await sync.close()
        await store.close()
        authenticator.close()

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
        if guard is not None:
            # With access control, zot's rules for /metrics (accessControl.metrics); without, open.
            try:
                await guard.authorize_metrics(request.headers)
            except RegistryError as err:
                return error_response(err)
        return Response(metrics.render(storage_usage), status=200, content_type="text/plain; version=0.0.4")

    @app.errorhandler(Exception)
    async def unexpected(err: Exception) -> Response:
        return unexpected_response(err)

    return Front(app, dispatch)


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


def _make_htpasswd(loaded: LoadedConfig) -> HtpasswdAuth | None:
    auth = loaded.config.http.auth
    htpasswd = getattr(auth, "htpasswd", None) if auth else None
    path = getattr(htpasswd, "path", None) if htpasswd else None
    if not path:
        return None
    return HtpasswdAuth(path, realm=loaded.config.http.realm or "zot", fail_delay=float(auth.fail_delay if auth else 0))


def _make_ldap(loaded: LoadedConfig) -> PasswordChecker | None:
    auth = loaded.config.http.auth
    if auth is None or auth.ldap is None:
        return None
    from .authn.ldap import LdapAuth  # ldap3 is imported only by a registry that logs users in with it

    return LdapAuth(auth.ldap)


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
