"""The membership step of a reconciliation: which list the members route by after this pass, at which
epoch, and how many pods the StatefulSet keeps.

In place (`rebalance_mode`), once the cluster has members: while the spec's list and the routed one
agree and no change runs, nothing is asked of anyone. Otherwise every member of both lists is asked
for its state (in parallel, with the client's short timeouts), `rebalance.plan_rebalance` decides, and
what it decided is sent. By restart, and for a new cluster, the list is the spec's at once.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from zot_registry.certs import KeyPair
from zot_registry.durations import parse_duration

from .member_control import ChangeAnswer, Connect, MemberApi, StateAnswer
from .models import RebalanceStatus, ZotClusterStatus
from .names import ClusterRef
from .rebalance import RebalanceCondition, Request, idle, plan_rebalance
from .rebalance_mode import RESTARTS, rebalance_mode
from .render import address_ordinal, member_address
from .secret_steps import Event

A = TypeVar("A")
T = TypeVar("T")
# Members asked at once: a pass waits for the slowest, so a few silent members must not add up.
PARALLEL = 32


@dataclass(frozen=True)
class Membership:
    members: list[str]  # the list the members route by: the ConfigMap's and status.members
    epoch: int  # its epoch: status.epoch
    replicas: int  # the StatefulSet's: while a change runs, every member of both lists
    record: RebalanceStatus | None  # status.rebalance
    condition: RebalanceCondition  # the Rebalancing condition
    restart_on_change: bool  # a pod whose members annotation differs from `members` restarts (by restart)
    annotate: bool  # keep each pod's members annotation at `members` (in place, no change running)


def plan_membership(
    ref: ClusterRef,
    ca: KeyPair | None,
    connect: Connect,
    old: ZotClusterStatus,
    target: list[str],
    excused: set[str],
    now: datetime.datetime,
    event: Event,
) -> Membership:
    """`ca`: the cluster CA with its key (None with tls mode secret); `target`: the list the spec and
    failover ask for; `excused`: the addresses of members failover dropped."""
    spec = ref.spec
    mode = rebalance_mode(spec)
    renamed = _renamed(ref, old.members)
    if not mode.in_place or ca is None or renamed:
        if old.rebalance is not None and ca is not None:
            # The mode changed during a change: the members restart with the new list, but one whose
            # list stays the same would keep waiting (perhaps frozen) for a step nobody asks for.
            _each(connect(ca).abandon, _involved(old.rebalance))
        if mode.in_place:
            # Same members at new addresses: they listen there only once restarted with the new config,
            # so the list cannot change in place. No owner changes if the ordinals stay the same.
            reason, message = (
                "AddressesChanged",
                f"the member addresses changed (spec.port or spec.clusterDomain): {RESTARTS}",
            )
        else:
            reason, message = "NotSupported", f"{mode.why or 'the operator holds no cluster CA'}: {RESTARTS}"
        return Membership(
            target,
            old.epoch,
            spec.replicas,
            None,
            RebalanceCondition(False, reason, message),
            restart_on_change=True,
            annotate=False,
        )
    if not old.members:  # a new cluster: its members start with the spec's list
        return Membership(target, old.epoch, spec.replicas, None, idle(old.epoch), False, annotate=True)
    if old.rebalance is None and target == old.members:  # the usual pass: nothing to ask anyone
        return Membership(old.members, old.epoch, spec.replicas, None, idle(old.epoch), False, annotate=True)

    api = connect(ca)
    involved = list(dict.fromkeys([*old.members, *target, *(_involved(old.rebalance) if old.rebalance else [])]))
    states: dict[str, StateAnswer] = dict(zip(involved, _each(api.state, involved), strict=True))
    plan = plan_rebalance(
        old.members,
        old.epoch,
        target,
        old.rebalance,
        states,
        excused,
        now,
        keep_old_copies_seconds=parse_duration(spec.rebalance.keep_old_copies_for),
        fall_back=spec.rebalance.mode == "Auto",
    )
    # The answers are not used: the next pass reads every member's state anyway (a refusal shows there
    # as a member ahead of the change, a member gone as one not answering).
    _each(lambda item: _send(api, *item), list(plan.requests.items()))
    for kind, reason, message in plan.events:
        event(kind, reason, message)
    replicas = _covering(ref, plan.record, spec.replicas)
    return Membership(
        plan.members,
        plan.epoch,
        replicas,
        plan.record,
        plan.condition,
        restart_on_change=plan.restart,
        annotate=plan.record is None and not plan.restart,
    )


def _renamed(ref: ClusterRef, members: list[str]) -> bool:
    """A routed member's address is not what the spec now names its ordinal (a new port or domain)."""
    return any((o := address_ordinal(ref, a)) is None or member_address(ref, o) != a for a in members)


def _involved(record: RebalanceStatus) -> list[str]:
    return list(dict.fromkeys([*record.from_members, *record.to_members]))


def _covering(ref: ClusterRef, record: RebalanceStatus | None, replicas: int) -> int:
    """Pods for every member of both lists while a change runs: a scale-up starts the new members first,
    a scale-down keeps the leaving ones until they have handed over and switched."""
    if record is None:
        return replicas
    ordinals = [o for a in _involved(record) if (o := address_ordinal(ref, a)) is not None]
    return max([replicas, *(o + 1 for o in ordinals)])


def _send(api: MemberApi, address: str, request: Request) -> ChangeAnswer:
    if isinstance(request, str):  # ABANDON
        return api.abandon(address)
    return api.change(address, request)


def _each(call: Callable[[A], T], items: Sequence[A]) -> list[T]:
    """`call` on every item at once (threads: the client is synchronous), the results in order."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(PARALLEL, len(items))) as pool:
        return list(pool.map(call, items))
