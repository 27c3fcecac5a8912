"""Maps a path under /v2/ to a route: which resource, which repository, which argument.

One explicit table instead of framework URL rules, because repository names contain slashes and
the cluster proxy needs the repository name of a request before any handler runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import NameUnknown, Unsupported
from ..names import validate_name


@dataclass(frozen=True, slots=True)
class Route:
    kind: str  # base, catalog, tags, manifest, blob, uploads, upload, referrers
    name: str = ""
    arg: str = ""

    @property
    def proxyable(self) -> bool:
        """Routes whose repository may belong to another cluster member (zot's proxied routes)."""
        return self.kind in {"tags", "manifest", "blob", "uploads", "upload", "referrers"}


_TABLE: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^(?P<name>.+)/tags/list$"), "tags"),
    (re.compile(r"^(?P<name>.+)/manifests/(?P<arg>[^/]+)$"), "manifest"),
    (re.compile(r"^(?P<name>.+)/blobs/uploads/?$"), "uploads"),
    (re.compile(r"^(?P<name>.+)/blobs/uploads/(?P<arg>[^/]+)$"), "upload"),
    (re.compile(r"^(?P<name>.+)/blobs/(?P<arg>[^/]+)$"), "blob"),
    (re.compile(r"^(?P<name>.+)/referrers/(?P<arg>[^/]+)$"), "referrers"),
]

METHODS = {
    "base": {"GET", "HEAD"},
    "catalog": {"GET"},
    "tags": {"GET"},
    "manifest": {"GET", "HEAD", "PUT", "DELETE"},
    "blob": {"GET", "HEAD", "DELETE"},
    "uploads": {"POST"},
    "upload": {"GET", "PATCH", "PUT", "DELETE"},
    "referrers": {"GET"},
}


def match_route(rest: str, method: str) -> Route:
    """`rest` is the path after `/v2/`. Raises NAME_INVALID, NAME_UNKNOWN or UNSUPPORTED."""
    if rest in ("", "/"):
        route = Route("base")
    elif rest == "_catalog":
        route = Route("catalog")
    else:
        for pattern, kind in _TABLE:
            found = pattern.match(rest)
            if found:
                route = Route(kind, validate_name(found["name"]), found.groupdict().get("arg") or "")
                break
        else:
            raise NameUnknown(f"no such endpoint: /v2/{rest}")
    if method not in METHODS[route.kind]:
        raise Unsupported(
            f"method {method} not allowed on this endpoint", headers={"Allow": ", ".join(sorted(METHODS[route.kind]))}
        )
    return route
