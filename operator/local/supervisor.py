"""`zot-operator local up`: run a ZotCluster's members as local processes and supervise them.

The supervisor plays the operator's part on one machine: it renders what the operator would, starts
every member, reports readiness, and on SIGUSR1 (sent by `local scale`) restarts ALL members with the
new member list, as the operator does on a membership change. SIGINT, SIGTERM or SIGHUP (the terminal
closed) stop every member: SIGUSR1 rather than SIGHUP carries requests, so closing the terminal
stops the cluster instead of leaving it running with nowhere to print.

Nothing here depends on being able to print: every line goes through `say`, which drops what a
closed terminal or pipe cannot take, and whatever ends the supervisor stops the members and
records it in state.json first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from types import FrameType
from typing import Any

import psutil
from pydantic import ValidationError
from zot_registry.certs import KeyPair
from zot_registry.console import say
from zot_registry.durations import parse_duration
from zot_registry.local.addresses import port_taken
from zot_registry.local.processes import member_ready, start_member, stop_members

from ..member_control import connect
from ..models import ZotClusterSpec
from ..names import ClusterRef
from .in_place import ChangeStalled, change_in_place
from .manifest import Manifest, ManifestError
from .report import moved_message, scale_hint, summary
from .state import LocalLayout, local_members, prepare, read_json, supervisor_pid, write_json

READY_TIMEOUT = 120.0  # seconds for every member to answer /readyz after a (re)start
POLL = 0.2


class MemberFailed(Exception):
    """A member exited or never became ready: the message says which and where its log is."""


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop_leftovers(state: dict[str, Any], folder: Path) -> None:
    """Members of a previous supervisor that was killed (SIGKILL) still hold the ports: stop them,
    but only processes that run one of this folder's member configs, with their workers (each
    member leads its own process group)."""
    leftovers: list[psutil.Process] = []
    for pid in state.get("memberPids") or []:
        try:
            member = psutil.Process(int(pid))
            if str(folder / "members") in " ".join(member.cmdline()):
                leftovers += [member, *member.children(recursive=True)]
        except (psutil.Error, ValueError):
            continue
    if leftovers:
        say("stopping the members left running by an earlier `local up` that was killed")
        for process in leftovers:
            with contextlib.suppress(psutil.Error):
                process.terminate()
        _, alive = psutil.wait_procs(leftovers, timeout=40)
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()


class Supervisor:
    def __init__(self, folder: Path, manifest: Manifest, workers: int) -> None:
        self.folder = folder.absolute()
        self.manifest = manifest
        self.workers = workers
        self.processes: list[subprocess.Popen[bytes]] = []
        self.layout: LocalLayout | None = None
        self.stopping = False
        self.rescale = False
        self.state: dict[str, Any] = {}

    # Signals only set flags; the main loop acts on them between steps.
    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def _on_request(self, signum: int, frame: FrameType | None) -> None:
        self.rescale = True

    def _save(self, **changes: Any) -> None:
        self.state.update(changes)
        write_json(self.folder / "state.json", self.state)

    def _progress(self, message: str) -> None:
        """Printed here, and appended to state.json's events, which `local scale` prints in order."""
        say(message)
        self._save(message=message, events=[*self.state.get("events", []), message])

    def _answer(self, message: str, **changes: Any) -> None:
        """The request's last event and phase Running in one write: `local scale` stops polling at
        Running, so the two written apart could end its output before the last event."""
        say(message)
        events = [*changes.pop("events", self.state.get("events", [])), message]
        self._save(**changes, phase="Running", message=message, events=events)

    # Members ----------------------------------------------------------------------------------------

    def _start(self, layout: LocalLayout) -> None:
        taken = port_taken([m.rsplit(":", 1)[0] for m in layout.members], layout.ref.spec.port)
        if taken:
            raise ManifestError(
                f"spec.port: port {layout.ref.spec.port} is already taken on {taken} "
                f"(see `ss -ltnp 'sport = :{layout.ref.spec.port}'`); "
                "free it or set another spec.port in the manifest"
            )
        self.layout = layout
        self.processes = []
        for ordinal, config in zip(layout.ordinals, layout.configs, strict=True):
            with open(layout.log(ordinal), "ab") as log:  # the child keeps its own descriptor
                self.processes.append(start_member(config, self.workers, log, own_session=True))
        self._save(memberPids=[p.pid for p in self.processes])
        self._wait_ready(layout)

    def _check_alive(self, layout: LocalLayout) -> None:
        for index, process in enumerate(self.processes):
            if process.poll() is not None:
                log = layout.log(layout.ordinals[index])
                raise MemberFailed(
                    f"member {index} ({layout.members[index]}) exited with code {process.returncode}; "
                    f"last lines of {log}:\n{_tail(log)}"
                )

    def _wait_ready(self, layout: LocalLayout) -> None:
        total, ready = len(layout.members), set[int]()
        deadline = time.monotonic() + READY_TIMEOUT
        while len(ready) < total and not self.stopping:
            self._check_alive(layout)
            for index in range(total):
                if index not in ready and member_ready(layout.url(index), layout.ca, timeout=1.0):
                    ready.add(index)
                    self._progress(f"member {len(ready)}/{total} ready: {layout.url(index)}")
                    self._save(readyMembers=len(ready))
            if len(ready) < total and time.monotonic() > deadline:
                late = [layout.members[i] for i in range(total) if i not in ready]
                raise MemberFailed(
                    f"not ready after {READY_TIMEOUT:.0f} s: {', '.join(late)}; see the logs in {self.folder / 'logs'}"
                )
            if len(ready) < total:
                time.sleep(POLL)

    def _stop(self) -> None:
        stop_members(self.processes, process_groups=True)
        self.processes = []
        self._save(memberPids=[], readyMembers=0)

    def _finish(self, phase: str, **changes: Any) -> None:
        """Stop every member and say so in state.json: the one way out of `run`."""
        try:
            self._stop()
        finally:
            self._save(phase=phase, pid=None, **changes)

    # Steps --------------------------------------------------------------------------------------------

    def _announce_move(self, before: list[str], after: list[str]) -> str | None:
        if not before or before == after:
            return None
        message = moved_message(before, after)
        self._progress(f"RepositoriesMoved: {message}")
        return message

    def _scale(self) -> None:
        desired = read_json(self.folder / "desired.json")
        generation = int(desired.get("generation", 0))
        if generation <= int(self.state.get("generation", 0)):
            return
        assert self.layout is not None
        spec = self.manifest.ref.spec
        try:
            new_spec = ZotClusterSpec.model_validate(
                {**spec.model_dump(by_alias=True), "replicas": desired.get("replicas")}
            )
            ref = self.manifest.ref
            new_manifest = Manifest(ClusterRef(ref.name, ref.namespace, "", new_spec), self.manifest.secrets)
            before = self.layout.members
            old_hosts = {m.rsplit(":", 1)[0] for m in before}
            new_hosts = [m.rsplit(":", 1)[0] for _, m in local_members(new_spec)]
            taken = port_taken([h for h in new_hosts if h not in old_hosts], spec.port)
            if taken:
                raise ManifestError(f"port {spec.port} is taken on {taken}: cannot add a member there")
        except (ValidationError, ManifestError) as err:
            message = (
                f"spec.{'.'.join(str(p) for p in err.errors()[0]['loc'])}: {err.errors()[0]['msg']}"
                if isinstance(err, ValidationError)
                else str(err)
            )
            self._answer(
                f"scale refused: {message}", generation=generation, error=f"scale refused: {message}", events=[]
            )
            return
        if [m for _, m in local_members(new_spec)] == before:
            self._answer(
                f"already {len(before)} members: nothing to restart", generation=generation, error=None, events=[]
            )
            return
        ca = self._ca_for_changes(new_spec)
        if ca is not None:
            self._scale_in_place(generation, before, new_manifest, ca)
            return
        self._save(
            generation=generation,
            phase="Restarting",
            error=None,
            moved=None,
            readyMembers=0,
            events=[],
            replicas=new_spec.replicas,
        )
        self._progress(
            f"membership change {len(before)} -> {new_spec.replicas} members: restarting all members "
            f"with the new member list ({self._why_restart(new_spec)})"
        )
        self._stop()
        self.manifest = new_manifest
        layout = prepare(self.folder, new_manifest)
        moved = self._announce_move(before, layout.members)
        self._save(members=layout.members, moved=moved)
        self._start(layout)
        if not self.stopping:
            self._answer(f"ready: {len(layout.members)} members, entry {layout.url(0)}")

    # Membership changes in place -------------------------------------------------------------------

    def _ca_for_changes(self, spec: ZotClusterSpec) -> KeyPair | None:
        """The cluster CA, when a change can be made in place here: local mode always runs this project's
        registry, so only spec.rebalance.mode Restart, or a CA whose key is not here, restart instead."""
        key = self.folder / "tls" / "ca.key"
        if spec.rebalance.mode == "Restart" or spec.tls.mode != "managed" or not key.is_file():
            return None
        return KeyPair((self.folder / "tls" / "ca.crt").read_bytes(), key.read_bytes())

    def _why_restart(self, spec: ZotClusterSpec) -> str:
        if spec.rebalance.mode == "Restart":
            return "spec.rebalance.mode is Restart"
        return "tls mode secret: no CA key here to authenticate to the members"

    def _scale_in_place(self, generation: int, before: list[str], manifest: Manifest, ca: KeyPair) -> None:
        """New members start first with the current list, the change runs (copy, freeze, switch) through
        the operator's planner, the members that left stop after it; no member restarts."""
        assert self.layout is not None
        spec = manifest.ref.spec
        after = [m for _, m in local_members(spec)]
        self._save(
            generation=generation, phase="Rebalancing", error=None, moved=None, events=[], replicas=spec.replicas
        )
        self._progress(f"membership change {len(before)} -> {len(after)} members, in place: no member restarts")
        both = Manifest(
            ClusterRef(
                manifest.ref.name,
                manifest.ref.namespace,
                "",
                spec.model_copy(update={"replicas": max(len(before), spec.replicas), "excluded_members": []}),
            ),
            manifest.secrets,
        )
        running = dict(zip(self.layout.ordinals, self.processes, strict=True))
        during = prepare(self.folder, both, routed=before)
        for ordinal, config in zip(during.ordinals, during.configs, strict=True):
            if ordinal not in running:
                with open(during.log(ordinal), "ab") as log:
                    running[ordinal] = start_member(config, self.workers, log, own_session=True)
        self.layout, self.processes = during, [running[o] for o in during.ordinals]
        self._save(memberPids=[p.pid for p in self.processes])
        epoch = change_in_place(
            ca,
            connect,
            before,
            after,
            int(self.state.get("epoch", 0)),
            parse_duration(spec.rebalance.keep_old_copies_for),
            self._progress,
            lambda: self.stopping or self._any_exited(),
        )
        # Switched: the configs catch up with the list, and the members that left stop (data kept).
        final = prepare(self.folder, manifest)
        leaving = [running.pop(o) for o in list(running) if o not in final.ordinals]
        stop_members(leaving, process_groups=True)
        self.manifest, self.layout, self.processes = manifest, final, [running[o] for o in final.ordinals]
        self._save(members=final.members, epoch=epoch, memberPids=[p.pid for p in self.processes])
        self._wait_ready(final)
        if not self.stopping:
            self._answer(f"ready: {len(final.members)} members, entry {final.url(0)}")

    def _any_exited(self) -> bool:
        return any(p.poll() is not None for p in self.processes)

    def run(self) -> int:
        previous = read_json(self.folder / "state.json")
        if supervisor_pid(self.folder):
            raise ManifestError(
                f"a local cluster already runs from {self.folder} (pid {previous.get('pid')}): "
                f"stop it with Ctrl-C, or resize it with `{scale_hint(self.folder)}`"
            )
        _stop_leftovers(previous, self.folder)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._on_stop)
        signal.signal(signal.SIGUSR1, self._on_request)
        layout = prepare(self.folder, self.manifest)
        (self.folder / "desired.json").unlink(missing_ok=True)  # a scale request of an earlier run
        self.state = {
            "name": self.manifest.ref.name,
            "pid": os.getpid(),
            "phase": "Starting",
            "generation": 0,
            "members": layout.members,
            "replicas": len(layout.members),
            "readyMembers": 0,
            "port": self.manifest.ref.spec.port,
            "memberPids": [],
        }
        say(
            f"ZotCluster {self.manifest.ref.name}: {len(layout.members)} members, state in {self.folder}"
            + (" (new CA / server certificate)" if layout.tls_reissued else "")
        )
        moved = self._announce_move(list(previous.get("members") or []), layout.members)
        self._save(moved=moved)
        try:
            self._start(layout)
            if not self.stopping:
                self._save(phase="Running")
                for line in summary(layout):
                    say(line)
                say(f"resize (from another shell in this folder): {scale_hint(self.folder)}")
                self._progress(f"ready: {len(layout.members)} members, entry {layout.url(0)}; Ctrl-C stops them")
            while not self.stopping:
                if self.rescale:
                    self.rescale = False
                    self._scale()
                    continue
                assert self.layout is not None
                self._check_alive(self.layout)
                time.sleep(POLL)
        except (MemberFailed, ChangeStalled) as err:
            say(f"error: {err}", error=True)
            self._finish("Failed", error=str(err))
            return 1
        except ManifestError:
            self._finish("Failed")
            raise
        except BaseException as err:  # anything unforeseen: the members must not outlive the supervisor
            self._finish("Failed", error=f"the supervisor stopped on {type(err).__name__}: {err}")
            raise
        say(f"stopping {len(self.processes)} members")
        self._finish("Stopped", message="stopped")
        say("all members stopped")
        return 0
