"""A member that starts (or restarts) may hold an old member list: it was down while the others took a
newer one in place (a failover dropped it; its container restarted with the config it started with).
Before it is ready it asks the members it knows for their state, and takes the newest list any of
them routes by, if it is newer than its own. Otherwise it would accept writes, as the owner of
repositories that belong to another member by now, which nobody would read there.

Only lists that were taken in place have epochs (a list this member took from its config has none, and
is not second-guessed): members that do not answer the control API (zot,
or no TLS), or none at all within the time allowed (the whole cluster starts), leave the list as it is.
"""

from __future__ import annotations

import asyncio
import json
import logging

from multidict import CIMultiDict
from pydantic import ValidationError

from ..errors import RegistryError
from .control_models import STATE_PATH, MemberState
from .membership import NotAMember, identify
from .node import Cluster
from .topology import _addresses

log = logging.getLogger("zot_registry.cluster")

ASK_FOR = 5.0  # seconds the peers have to answer


async def _state_of(cluster: Cluster, peer: str) -> MemberState | None:
    try:
        response = await asyncio.wait_for(
            cluster.control_proxy.request(peer, "GET", STATE_PATH, CIMultiDict()), ASK_FOR
        )
    except (RegistryError, TimeoutError):
        return None
    try:
        if response.status != 200:
            return None
        return MemberState.model_validate(json.loads(await response.read()))
    except (ValueError, ValidationError):
        return None
    finally:
        response.release()


async def catch_up(cluster: Cluster, address: str, port: int) -> None:
    """Take the newest member list the peers route by, if newer than this member's."""
    view = cluster.topology.view(fresh=True)
    if view.epoch == 0:
        # The list came from the config (a new one, or a restart of every member with it): it is the
        # operator's latest word, and a peer not restarted yet must not talk this member out of it.
        return
    me = view.current.member(view.current.self_index) if view.current.self_index is not None else None
    peers = [view.current.member(i) for i in range(len(view.current.members))]
    answers = await asyncio.gather(*(_state_of(cluster, p) for p in peers if p != me))
    newest = max((a for a in answers if a is not None), key=lambda a: a.epoch, default=None)
    if newest is None or newest.epoch <= view.epoch:
        return
    try:
        self_index: int | None = await asyncio.to_thread(identify, _addresses(newest.members), address, port)
    except NotAMember:
        self_index = None
    except OSError as err:
        log.warning("cannot place this member in the cluster's newer list yet", extra={"reason": str(err)})
        return
    with cluster.topology.locked():
        document = cluster.topology.document
        if document.epoch >= newest.epoch or document.change is not None:
            return
        cluster.topology.write(
            document.model_copy(update={"epoch": newest.epoch, "members": newest.members, "self_index": self_index})
        )
    log.warning(
        "this member's list was older than the cluster's: it routes by the newer one",
        extra={"epoch": newest.epoch, "members": newest.members, "in_list": self_index is not None},
    )
