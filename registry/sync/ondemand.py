"""On-demand sync (zot's `onDemand`): a manifest asked for by tag, or by a digest not stored here,
is fetched from the first sync registry that has it, with everything it refers to, before it is
served. Registries are tried in the config's order; within one, its URLs (upstream, then mirrors).
Not found, unauthorized and unreachable fall through to the next; tag filters do not apply on
demand (zot: they are for periodic sync).

A tag already stored here is checked against the upstream (a HEAD): same digest, nothing is
copied. When every upstream fails, what is stored is served, with a warning in the log: a tag
check that fails is never an error for content present here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..digests import parse_digest
from ..errors import DigestInvalid, RegistryError
from ..storage.base import Store
from . import status
from .content import ContentRules
from .flight import SingleFlight
from .images import ImageCopier
from .live import LiveBlob, LiveBlobs, Origin
from .upstream import FetchedManifest, NotFound, Unauthorized, Upstream, UpstreamError

log = logging.getLogger("zot_registry.sync")

# zot's default syncTimeout is 3 hours for a whole image; a request waits this long at most here,
# then is answered from what is stored (the sync goes on in the background).
DEFAULT_TIMEOUT = 3 * 3600.0


@dataclass(frozen=True)
class SyncSource:
    """One entry of extensions.sync.registries, ready to use."""

    name: str  # the first URL, for logs and metrics
    upstream: Upstream
    rules: ContentRules
    on_demand: bool
    timeout: float
    poll_interval: float = 0.0  # periodic sync: 0 is none (zot: only with content rules)
    retry_delay: float = 0.0


def _is_digest(reference: str) -> bool:
    try:
        parse_digest(reference)
    except DigestInvalid:
        return False
    return True


class ImageSync:
    """One image from one source, brought up to date here; what on-demand and periodic sync share.
    Every sync of a local name and reference goes through the same SingleFlight key, so a periodic
    pass and a pull of the same image make one fetch between them."""

    def __init__(self, store: Store, flight: SingleFlight, live: LiveBlobs) -> None:
        self.store = store
        self.flight = flight
        self.live = live
        # Manifests fetched whose images are still being copied, by (name, reference): a request in
        # this worker is answered from them at once instead of waiting for every blob.
        self.pending: dict[tuple[str, str], FetchedManifest] = {}
        self._announced: dict[tuple[str, str], asyncio.Event] = {}

    def announced(self, name: str, reference: str) -> asyncio.Event:
        """Set once the manifest of a sync of `name:reference` under way in this worker is known."""
        return self._announced.setdefault((name, reference), asyncio.Event())

    async def merged(self, name: str, reference: str, timeout: float, work: Callable[[], Awaitable[None]]) -> bool:
        return await self.flight.run(f"image\0{name}\0{reference}", work, time.monotonic() + timeout)

    async def from_source(self, source: SyncSource, name: str, remote: str, reference: str, how: str) -> bool:
        """True when `source` had the image (now stored here, or already up to date)."""
        if not _is_digest(reference):
            digest, _, _ = await source.upstream.head_manifest(remote, reference)
            if await self.stored_digest(name, reference) == digest:
                status.record(name, reference, digest, source.name, copied=False)
                return True
        fetched = await source.upstream.get_manifest(remote, reference)
        started = time.monotonic()
        key = (name, reference)
        self.pending[key] = fetched
        self.announced(name, reference).set()
        try:
            copier = ImageCopier(source.upstream, self.store, self.live, source.name)
            report = await copier.copy(name, remote, reference, fetched)
        finally:
            self.pending.pop(key, None)
            self._announced.pop(key, None)
        status.copied(source.name, report.blob_bytes)
        status.record(name, reference, fetched.digest, source.name, copied=True)
        log.info(
            "sync: image synced",
            extra={
                "trigger": how,
                "repository": name,
                "reference": reference,
                "upstream": f"{source.name}/{remote}",
                "digest": fetched.digest,
                "blobs": report.blobs,
                "bytes": report.blob_bytes,
                "seconds": round(time.monotonic() - started, 3),
            },
        )
        return True

    async def stored_digest(self, name: str, reference: str) -> str | None:
        try:
            descriptor, _ = await self.store.get_manifest(name, reference)
        except RegistryError:
            return None
        return str(descriptor.get("digest"))


class OnDemand:
    def __init__(self, sources: list[SyncSource], images: ImageSync) -> None:
        self.sources = [s for s in sources if s.on_demand]
        self.images = images

    @property
    def enabled(self) -> bool:
        return bool(self.sources)

    def covers(self, name: str) -> bool:
        return any(source.rules.upstream_name(name) is not None for source in self.sources)

    def origins(self, name: str) -> list[Origin]:
        found = []
        for source in self.sources:
            remote = source.rules.upstream_name(name)
            if remote is not None:
                found.append((source.name, source.upstream, remote))
        return found

    async def open_blob(self, name: str, digest: str) -> LiveBlob | None:
        """A blob not stored here, as it arrives from the first upstream that has it (None: none has)."""
        origins = self.origins(name)
        return await self.images.live.open(name, digest, origins) if origins else None

    async def sync_image(self, name: str, reference: str) -> FetchedManifest | None:
        """Bring `name:reference` up to date from the upstreams, merged with concurrent requests for it.
        Returns the upstream's manifest when its image is still being copied (its blobs stream to
        whoever asks: live.py), None once what is stored is current or no upstream had it. Never
        raises for an upstream's failure: the caller serves what is stored."""
        if not self.covers(name):
            return None
        if _is_digest(reference) and await self.images.stored_digest(name, reference) is not None:
            return None  # content by digest never changes: what is stored is served, as zot does
        timeout = max(source.timeout for source in self.sources)
        announced = self.images.announced(name, reference)
        syncing = asyncio.ensure_future(
            self.images.merged(name, reference, timeout, lambda: self._sync(name, reference))
        )
        syncing.add_done_callback(_consume)
        waiting = asyncio.ensure_future(announced.wait())
        try:
            await asyncio.wait({syncing, waiting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
        if not syncing.done():
            return self.images.pending.get((name, reference))
        if syncing.exception() is not None:
            log.warning(
                "sync: failed", extra={"repository": name, "reference": reference, "error": str(syncing.exception())}
            )
        elif not syncing.result():
            log.warning("sync: gave up waiting for another sync", extra={"repository": name, "reference": reference})
        return None

    async def sync_referrers(self, name: str, subject: str) -> None:
        """The referrers of `subject` that the upstreams have and this registry does not, stored (zot
        syncs them on a referrers request too); each as an image by digest. Never raises for an
        upstream's failure: the caller lists what is stored."""
        if not self.covers(name) or not _is_digest(subject):
            return
        timeout = max(source.timeout for source in self.sources)
        await self.images.merged(name, f"referrers\0{subject}", timeout, lambda: self._referrers(name, subject))

    async def _referrers(self, name: str, subject: str) -> None:
        for source in self.sources:
            remote = source.rules.upstream_name(name)
            if remote is None:
                continue
            try:
                index = await source.upstream.referrers(remote, subject)
            except (NotFound, Unauthorized):
                continue
            except UpstreamError as err:
                status.failed(source.name)
                log.warning(
                    "sync: referrers unreadable", extra={"repository": name, "subject": subject, "error": str(err)}
                )
                continue
            manifests = index.get("manifests")
            for descriptor in manifests if isinstance(manifests, list) else []:
                digest = descriptor.get("digest") if isinstance(descriptor, dict) else None
                if not isinstance(digest, str) or not _is_digest(digest):
                    continue
                if await self.images.stored_digest(name, digest) is not None:
                    continue
                try:
                    await self.images.from_source(source, name, remote, digest, "on demand (referrer)")
                except (UpstreamError, RegistryError) as err:
                    status.failed(source.name)
                    log.warning(
                        "sync: referrer not synced",
                        extra={"repository": name, "subject": subject, "reference": digest, "error": str(err)},
                    )
            return

    async def _sync(self, name: str, reference: str) -> None:
        failures: list[str] = []
        for source in self.sources:
            remote = source.rules.upstream_name(name)
            if remote is None:
                continue
            try:
                if await self.images.from_source(source, name, remote, reference, "on demand"):
                    return
            except (NotFound, Unauthorized):
                continue  # zot: some public registries answer 401 for a repository they do not have
            except UpstreamError as err:
                status.failed(source.name)
                failures.append(str(err))  # it names the URL that failed
            except RegistryError as err:  # the store refused something: the next upstream may do better
                status.failed(source.name)
                failures.append(f"{source.name}: {err.message}")
        if failures:
            log.warning(
                "sync: no upstream could be synced, serving what is stored",
                extra={"repository": name, "reference": reference, "errors": "; ".join(failures)},
            )


def _consume(future: asyncio.Future[bool]) -> None:
    """A sync the request stopped waiting for: its outcome is logged by the sync itself."""
    if not future.cancelled():
        future.exception()
