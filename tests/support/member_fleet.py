"""An in-memory fleet of members behind the `MemberApi` protocol, for the unit tests of the operator's
side of a membership change made in place (the planner and the reconciliation).

A test double of our own members' control API (registry/cluster/control_models.py), written from its
contract: a change with a newer epoch replaces one not switched, an older one is refused (409), every
step is idempotent, a member adopts a change's `from` list. It moves on only when the test says so
(`advance`), so every intermediate state can be looked at. The integration tests use real members.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zot_operator.member_control import ChangeAnswer, NotSupported, Refused, StateAnswer, Unreachable
from zot_registry.certs import KeyPair
from zot_registry.cluster.control_models import ChangeRequest, ChangeState, MemberState, Progress

STEPS = ("copy", "freeze", "switch")
# The phase a member reaches when it has finished a step.
FINISHED = {"copy": "copied", "freeze": "frozen"}


@dataclass
class FakeMember:
    state: MemberState
    up: bool = True
    supported: bool = True
    sends: int = 2  # repositories it sends away in a change
    size: int = 3 << 20  # their bytes
    error: str = ""  # a copy failure it reports (and retries) until cleared


@dataclass
class MemberFleet:
    members: dict[str, FakeMember] = field(default_factory=dict)
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (address, what, step@epoch)
    cas: list[KeyPair] = field(default_factory=list)  # the CAs it was connected with

    def connect(self, ca: KeyPair) -> MemberFleet:
        self.cas.append(ca)
        return self

    def start(self, address: str, members: list[str], epoch: int = 0) -> FakeMember:
        """A member process starting with `members` (the ConfigMap's list when its pod started)."""
        index = members.index(address) if address in members else None
        member = FakeMember(MemberState.model_validate({"epoch": epoch, "members": members, "self": index}))
        self.members[address] = member
        return member

    def state(self, address: str) -> StateAnswer:
        member = self.members.get(address)
        if member is None or not member.up:
            return Unreachable("connection refused")
        if not member.supported:
            return NotSupported("no control API (HTTP 404)")
        return member.state.model_copy(deep=True)

    def change(self, address: str, request: ChangeRequest) -> ChangeAnswer:
        self.calls.append((address, "change", f"{request.step}@{request.epoch}"))
        found = self.state(address)
        if not isinstance(found, MemberState):
            return found
        member = self.members[address]
        state, current = member.state, member.state.change
        newest = max(state.epoch, current.epoch if current else 0)
        if request.epoch < newest:
            return Refused(409, f"DENIED: epoch {request.epoch} is older than {newest}")
        if request.epoch == state.epoch and current is None:  # switched already: only report
            return self.state(address)
        if current is None or request.epoch > current.epoch:
            state.members = list(request.from_members)  # a member that missed a change adopts `from`
            state.change = ChangeState.model_validate(
                {
                    "epoch": request.epoch,
                    "from": request.from_members,
                    "to": request.to_members,
                    "step": request.step,
                    "phase": "copying",
                    "repositories": {"done": 0, "total": member.sends},
                    "bytes": {"done": 0, "total": member.size},
                    "keepOldCopiesSeconds": request.keep_old_copies_seconds,
                }
            )
        elif STEPS.index(request.step) > STEPS.index(current.step):
            current.step = request.step
        return self.state(address)

    def abandon(self, address: str) -> ChangeAnswer:
        self.calls.append((address, "abandon", ""))
        found = self.state(address)
        if isinstance(found, MemberState):
            self.members[address].state.change = None
        return self.state(address)

    def advance(self) -> None:
        """Every member that answers finishes the step it was asked for."""
        for address, member in self.members.items():
            change = member.state.change
            if not member.up or change is None:
                continue
            if change.step == "switch":
                member.state = MemberState.model_validate(
                    {
                        "epoch": change.epoch,
                        "members": change.to_members,
                        "self": change.to_members.index(address) if address in change.to_members else None,
                    }
                )
                continue
            if member.error:  # a failed copy: retried, the step not finished
                change.error = member.error
                change.failures += 1
                continue
            change.phase = FINISHED[change.step]  # type: ignore[assignment]
            change.error = ""
            change.repositories = Progress(done=member.sends, total=member.sends)
            change.bytes = Progress(done=member.size, total=member.size)
