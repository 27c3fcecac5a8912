"""Which action a request needs, as zot's authz middleware maps them (pkg/api/authz.go,
DistSpecAuthzHandler, v2.1.20): by method, on the routes that name a repository.

| route | method | action |
|---|---|---|
| `/v2/` | any | none: authentication alone decides (zot's BaseAuthzHandler skips it) |
| `/v2/_catalog` | GET | none: the list is filtered to what the caller may read |
| tags, manifest, blob, upload session, referrers | GET, HEAD | read |
| blob uploads (POST), upload session | POST, PATCH, PUT | create |
| manifest | PUT | create for a digest, or a tag that does not exist yet; update for a tag that exists |
| manifest, blob, upload session | DELETE | delete |

A cross-repository mount needs create on the target (it is a POST) and read on `from`; without
read there, it is not mounted and the client gets an upload session (202), as zot answers when
its canMount says no. That part is the guard's (guard.py), which sees the storage.
"""

from __future__ import annotations

from ..api.routing import Route
from ..digests import parse_digest
from ..errors import DigestInvalid
from .policy import CREATE, DELETE, READ, UPDATE

_BY_METHOD = {"GET": READ, "HEAD": READ, "POST": CREATE, "PATCH": CREATE, "PUT": CREATE, "DELETE": DELETE}
# The routes access control does not guard by action.
UNGUARDED = frozenset({"base", "catalog"})


def is_digest(reference: str) -> bool:
    """zot's common.IsDigest: a reference that parses as a digest (anything else is a tag)."""
    try:
        parse_digest(reference)
    except DigestInvalid:
        return False
    return True


def route_actions(route: Route, method: str) -> frozenset[str]:
    """The actions of which one a request needs before it is served or forwarded; empty for the
    routes that are not guarded by action (UNGUARDED).

    A manifest PUT by tag needs create when the tag is new and update when it exists: which one,
    only the member that stores the repository can tell (manifest_put_action); before that, one
    of the two is needed."""
    if route.kind in UNGUARDED:
        return frozenset()
    if route.kind == "manifest" and method == "PUT" and not is_digest(route.arg):
        return frozenset({CREATE, UPDATE})
    return frozenset({_BY_METHOD[method]})


def manifest_put_action(reference: str, tags: list[str]) -> str:
    """zot's manifestWriteAuthzChecks for a PUT without ?tag=: update for a tag the repository has,
    create for a new tag or a digest."""
    return UPDATE if not is_digest(reference) and reference in tags else CREATE
