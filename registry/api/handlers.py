"""The handler of each route, as the app serves it here (a member of a cluster first decides whether
the request is its own: cluster/serving.py), and what readiness is made of."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from quart import Response

from ..storage.base import Store
from . import blobs, listing, manifests, uploads
from .routing import Route

Handler = Callable[[Route, Store], Awaitable[Response]]


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
