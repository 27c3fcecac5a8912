"""Where a request is answered in a cluster: here, by the member that owns its repository, or nowhere.

One function, `decide`, reads what it needs of the request (passed in, never Quart's global) and
returns a typed decision; the app acts on it, and the forwarding itself is proxy.py's. zot's rule:
the routes of a repository (tags, manifests, blobs, uploads, referrers) are answered by its owner,
every other member forwards them; the catalog is answered by any member, gathered from all of them
when each member has storage of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..api.requests import RegistryRequest
from ..api.routing import Route
from ..errors import LoopDetected, MembersChanging, PeerUnavailable, RegistryError
from .control_models import EPOCH_HEADER
from .proxy import HOP_HEADER
from .topology import View

RETRY_SOON = {"Retry-After": "1"}


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
    """Another member owns the repository: the request goes there, and its answer back to the client.

    hops: the hop count the owner sees (2 only when a member that took a newer list passes on a request
    routed by an older one); epoch: the epoch of the list this member routed by."""

    member: str  # host:port, as in cluster.members
    hops: int = 1
    epoch: int = 0


@dataclass(frozen=True, slots=True)
class Refuse:
    """Neither: the client gets this error (PeerUnavailable, LoopDetected)."""

    error: RegistryError


Decision = ServeHere | Forward | Refuse

SERVE_HERE = ServeHere()


def sender_epoch(request: RegistryRequest) -> int | None:
    """The epoch of the list a forwarding member routed by; None from zot members (and clients)."""
    value = request.headers.get(EPOCH_HEADER)
    return int(value) if value is not None and value.isdigit() and len(value) < 18 else None


def decide(request: RegistryRequest, route: Route, view: View, shared_storage: bool) -> Decision:
    """The decision for `request`, matched as `route`, by this member's view of the cluster.

    During a membership change members switch to the new list one after another. A request forwarded
    by a member that switched already (its epoch is the change's) is routed here by the new list too:
    the change's copies were all published before any member switched. A request routed by an older
    list than ours, by a member that has not switched yet, is passed on once more by ours.
    With shared storage (S3 or a remote cache) every member sees every repository."""
    hop = request.headers.get(HOP_HEADER)
    if route.proxyable:
        membership, epoch = view.current, view.epoch
        theirs = sender_epoch(request) if hop else None
        if theirs is not None and theirs > view.epoch:
            if view.change is None or view.next is None or view.change.epoch != theirs:
                return Refuse(MembersChanging(headers=RETRY_SOON))
            membership, epoch = view.next, theirs
        me = membership.self_index
        joining = view.next is not None and view.next.self_index is not None
        if me is None and not membership.outside and not joining:
            return Refuse(PeerUnavailable(f"this member is not ready: {membership.reason}"))
        owner = membership.owner(route.name)
        if owner != me:
            if not hop:
                return Forward(membership.member(owner), epoch=epoch)
            if hop == "1" and theirs is not None and theirs < view.epoch:
                return Forward(membership.member(owner), hops=2, epoch=epoch)
            # The sender thought we own it; we think another member does: the member lists differ.
            return Refuse(
                LoopDetected(
                    f"repository {route.name!r} belongs to {membership.member(owner)} by "
                    "this member's list, but the request was already proxied once: "
                    "cluster.members differ between members"
                )
            )
    elif route.kind == "catalog":
        # Storage local to each member: the catalog must come from all of them (zot answers locally).
        return ServeHere(gather_catalog=not shared_storage and not hop)
    if route.kind == "uploads" and request.args.get("mount") and request.args.get("from"):
        return ServeHere(mount_across=True)
    return SERVE_HERE
