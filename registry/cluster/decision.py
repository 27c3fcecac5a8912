"""Where a request is answered in a cluster: here, by the member that owns its repository, or nowhere.

One function, `decide`, reads what it needs of the request (passed in, never Quart's global) and
returns a typed decision; the app acts on it, and the forwarding itself is proxy.py's. zot's rule:
the routes of a repository (tags, manifests, blobs, uploads, referrers) are answered by its owner,
every other member forwards them; the catalog is answered by any member, gathered from all of them
when each member has storage of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from quart import Request

from ..api.routing import Route
from ..errors import LoopDetected, PeerUnavailable, RegistryError
from .membership import Membership
from .proxy import HOP_HEADER


@dataclass(frozen=True, slots=True)
class ServeHere:
    """This member answers from its own storage.

    gather_catalog: the catalog is this member's repositories and every other member's.
    mount_across: a cross-repository mount whose `from` may live on another member, which is asked
    for the blob before the mount is tried here.
    """

    gather_catalog: bool = False
    mount_across: bool = False


@dataclass(frozen=True, slots=True)
class Forward:
    """Another member owns the repository: the request goes there, and its answer back to the client."""

    member: str  # host:port, as in cluster.members


@dataclass(frozen=True, slots=True)
class Refuse:
    """Neither: the client gets this error (PeerUnavailable, LoopDetected)."""

    error: RegistryError


Decision = ServeHere | Forward | Refuse

SERVE_HERE = ServeHere()


def decide(request: Request, route: Route, membership: Membership, shared_storage: bool) -> Decision:
    """The decision for `request`, matched as `route`, by this member's view of the cluster.

    With shared storage (S3 or a remote cache) every member sees every repository."""
    if route.proxyable:
        me = membership.self_index
        if me is None:
            return Refuse(PeerUnavailable(f"this member is not ready: {membership.reason}"))
        owner = membership.owner(route.name)
        if owner != me:
            if request.headers.get(HOP_HEADER):
                # The sender thought we own it; we think another member does: the member lists differ.
                return Refuse(
                    LoopDetected(
                        f"repository {route.name!r} belongs to {membership.member(owner)} by "
                        "this member's list, but the request was already proxied once: "
                        "cluster.members differ between members"
                    )
                )
            return Forward(membership.member(owner))
    elif route.kind == "catalog":
        # Storage local to each member: the catalog must come from all of them (zot answers locally).
        return ServeHere(gather_catalog=not shared_storage and not request.headers.get(HOP_HEADER))
    if route.kind == "uploads" and request.args.get("mount") and request.args.get("from"):
        return ServeHere(mount_across=True)
    return SERVE_HERE
