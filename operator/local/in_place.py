"""`zot-operator local scale` made in place: the operator's own planner (rebalance.plan_rebalance),
driven in a loop against the local member processes through the same client (member_control), until
every member routes by the new list. Nothing here decides a step: local mode and the operator cannot
make a change differently."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable

from zot_registry.certs import KeyPair

from ..member_control import Connect, MemberApi, StateAnswer
from ..models import RebalanceStatus
from ..rebalance import RebalancePlan, Request, plan_rebalance

POLL = 0.3  # seconds between passes, as the operator's timer while a change runs (but faster: no API server)


class ChangeStalled(Exception):
    """The change did not finish in time; the message says where it stands."""


def _send(api: MemberApi, address: str, request: Request) -> None:
    if isinstance(request, str):
        api.abandon(address)
    else:
        api.change(address, request)


def _involved(before: list[str], after: list[str], record: RebalanceStatus | None) -> list[str]:
    lists = [before, after, *((record.from_members, record.to_members) if record else ())]
    return list(dict.fromkeys(a for members in lists for a in members))


def change_in_place(
    ca: KeyPair,
    connect: Connect,
    before: list[str],
    after: list[str],
    epoch: int,
    keep_old_copies_seconds: float,
    say: Callable[[str], None],
    interrupted: Callable[[], bool],
    timeout: float = 900.0,
) -> int:
    """Run the change from `before` (routed at `epoch`) to `after`; returns the new epoch. `say` gets each
    event as one line; `interrupted` (checked between passes) raises nothing itself: it ends the loop."""
    api = connect(ca)
    record: RebalanceStatus | None = None
    deadline = time.monotonic() + timeout
    last_progress = ""
    while not interrupted():
        states: dict[str, StateAnswer] = {a: api.state(a) for a in _involved(before, after, record)}
        now = datetime.datetime.now(datetime.UTC)
        plan: RebalancePlan = plan_rebalance(
            before, epoch, after, record, states, set(), now, keep_old_copies_seconds=keep_old_copies_seconds
        )
        for address, request in plan.requests.items():
            _send(api, address, request)
        for _, reason, message in plan.events:
            say(f"{reason}: {message}")
        if plan.completed:
            return plan.epoch
        record = plan.record
        progress = f"{plan.condition.reason}: {plan.condition.message}"
        if progress != last_progress:
            say(progress)
            last_progress = progress
        if time.monotonic() > deadline:
            raise ChangeStalled(f"the membership change did not finish in {timeout:.0f} s: {progress}")
        time.sleep(POLL)
    raise ChangeStalled("interrupted in the middle of a membership change")
