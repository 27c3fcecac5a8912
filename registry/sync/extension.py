"""The sync extension as the app uses it: built from `extensions.sync` (one upstream client per
registry, the credentials file read at start), the manifest handler that syncs on demand before it
reads, and the periodic passes while the app serves.

In a cluster the wrapped handler runs only where the repository is served (cluster/serving.py
forwards the rest to the owner first), so only the owner of a repository syncs it, under the name
requests and storage use: the local name, also when `destination` or `stripPrefix` rename it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from quart import Quart, Response

from ..api.handlers import Handler
from ..api.requests import request
from ..api.routing import Route
from ..config.models import ZotConfig
from ..config.sync import SyncConfig, SyncRegistry, load_credentials
from ..digests import parse_digest
from ..storage.base import Store
from .content import ContentRules
from .flight import SingleFlight
from .live import LiveBlob, LiveBlobs
from .ondemand import DEFAULT_TIMEOUT, ImageSync, OnDemand, SyncSource
from .periodic import Periodic
from .self_urls import without_self
from .upstream import FetchedManifest, Upstream, UpstreamSettings

log = logging.getLogger("zot_registry.sync")


def _lock_directory(config: ZotConfig, sync: SyncConfig) -> Path:
    """A directory every worker of this member shares (never the storage of other members)."""
    storage = config.storage
    if storage.storage_driver is None:
        return Path(storage.root_directory) / ".sync" / "locks"
    if sync.download_dir:
        return Path(sync.download_dir) / "locks"
    # Shared storage (S3): the locks are this member's alone; the config names the member.
    key = hashlib.sha256(f"{storage.root_directory}\0{config.http.port}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"zot-sync-{key}"


def _source(registry: SyncRegistry, urls: list[str], credentials: dict[str, tuple[str, str]]) -> SyncSource:
    settings = UpstreamSettings(
        urls=tuple(urls),
        tls_verify=registry.tls_verify,
        cert_dir=registry.cert_dir,
        credentials=credentials,
        max_retries=registry.max_retries or 0,
        retry_delay=registry.retry_delay or 0.0,
        timeout=registry.sync_timeout or None,
    )
    return SyncSource(
        name=registry.urls[0],
        upstream=Upstream(settings),
        rules=ContentRules(tuple(registry.content)),
        on_demand=registry.on_demand,
        timeout=registry.sync_timeout or DEFAULT_TIMEOUT,
        poll_interval=registry.poll_interval or 0.0,
        retry_delay=registry.retry_delay or 0.0,
    )


@dataclass
class SyncExtension:
    sources: list[SyncSource]
    on_demand: OnDemand
    periodic: Periodic

    @classmethod
    def from_config(cls, config: ZotConfig, store: Store) -> SyncExtension | None:
        sync = config.sync
        if sync is None or not sync.enabled:
            return None
        credentials: dict[str, tuple[str, str]] = {}
        if sync.credentials_file:
            for host, entry in load_credentials(sync.credentials_file).items():
                credentials[host] = (entry.username, entry.password)
        sources = []
        for registry in sync.registries:
            urls = without_self(registry.urls, config.http.address, config.http.port)
            if not urls:
                log.warning(
                    "sync: every URL of a sync registry points at this registry: it is left out",
                    extra={"urls": registry.urls},
                )
                continue
            sources.append(_source(registry, urls, credentials))
        if not sources:
            return None
        locks = _lock_directory(config, sync)
        flight = SingleFlight(locks)
        timeout = max(source.timeout for source in sources)
        images = ImageSync(store, flight, LiveBlobs(store, flight, locks.parent / "spool", timeout))
        return cls(sources, OnDemand(sources, images), Periodic(sources, images, locks))

    def schedule(self, app: Quart, owns: Callable[[str], bool]) -> None:
        """Periodic sync while the app serves, of the repositories `owns` accepts (in a cluster, this
        member's)."""
        if not self.periodic.enabled:
            return
        self.periodic.owns = owns
        tasks: list[asyncio.Task[None]] = []

        @app.before_serving
        async def start_periodic() -> None:
            tasks.append(asyncio.get_running_loop().create_task(self.periodic.run()))

        @app.after_serving
        async def stop_periodic() -> None:
            for task in tasks:
                task.cancel()

    def handlers(self, base: Mapping[str, Handler]) -> dict[str, Handler]:
        """`base` with the manifest (GET and HEAD) and referrers handlers syncing on demand first."""
        if not self.on_demand.enabled:
            return dict(base)
        read_manifest, read_blob, list_referrers = base["manifest"], base["blob"], base["referrers"]
        on_demand = self.on_demand

        async def manifest(route: Route, store: Store) -> Response:
            if request.method in ("GET", "HEAD"):
                pending = await on_demand.sync_image(route.name, route.arg)
                if pending is not None:
                    # The image is still being copied: the upstream's manifest, verified, at once.
                    return _manifest_response(pending, head=request.method == "HEAD")
            return await read_manifest(route, store)

        async def blob(route: Route, store: Store) -> Response:
            if request.method in ("GET", "HEAD") and on_demand.covers(route.name):
                digest = parse_digest(route.arg)
                if not await store.has_blob(route.name, digest):
                    live = await on_demand.open_blob(route.name, route.arg)
                    if live is not None:
                        return _live_blob_response(live, str(digest), head=request.method == "HEAD")
            return await read_blob(route, store)

        async def referrers(route: Route, store: Store) -> Response:
            await on_demand.sync_referrers(route.name, route.arg)
            return await list_referrers(route, store)

        return {**base, "manifest": manifest, "blob": blob, "referrers": referrers}

    async def close(self) -> None:
        for source in self.sources:
            await source.upstream.close()


def _manifest_response(fetched: FetchedManifest, head: bool) -> Response:
    headers = {
        "Docker-Content-Digest": fetched.digest,
        "Content-Type": fetched.media_type,
        "ETag": f'"{fetched.digest}"',
    }
    response = Response(b"" if head else fetched.data, status=200, headers=headers)
    response.headers["Content-Length"] = str(len(fetched.data))
    return response


def _live_blob_response(live: LiveBlob, digest: str, head: bool) -> Response:
    """A blob as it arrives; a Range is not honoured here (HTTP lets a server send the whole body)."""
    headers = {"Docker-Content-Digest": digest, "Content-Type": "application/octet-stream", "ETag": f'"{digest}"'}
    response = Response("" if head else live.chunks, status=200, headers=headers)
    response.headers["Content-Length"] = str(live.size)
    return response
