"""Plays kubelet for one ZotCluster's member pods: a real registry process for each pod.

KWOK's fake nodes make pods Running and Ready without running anything. A `PodRunner` polls the pods
of one cluster and does, on this machine, what a kubelet would do for them:

- a pod `<name>-<i>` that is scheduled and not being deleted gets `zot-registry serve` (one worker)
  on 127.0.0.<i + 1>, the port the config says. Its volumes become files first, as the kubelet mounts
  them: ConfigMap and Secret volumes as they are in the API at that moment, the claim as
  `workdir/data/member-<i>` (kept across pods, runs and scale-downs: a volume that is Retained), an
  emptyDir as a fresh folder. The config is the file the container's args name; in it, every path
  under a mount becomes the path of the file here, and http.address the member's loopback address.
  The rest (port, members, hash key, TLS settings) stays as the operator wrote it.
- a process that exits by itself, or by `kill`, is started again after `restart_delay` with the same
  files, as a kubelet restarts a container of the same pod. A ConfigMap changed in the meantime is
  not seen: a pod's config is made once, like the operator's subPath mount or init container does.
  `hold` keeps a member down until `release`.
- a pod that is deleted, or replaced under the same name (a new uid: the operator restarting all
  members), has its process stopped: SIGTERM to the process, as a kubelet signals the container,
  SIGKILL to its process group after `stop_timeout`. A replacement pod gets a new process, new
  files (the ConfigMap of that moment) and the same data folder.

Member processes resolve this cluster's member names to the loopback addresses (tests.support.hosts).
Every process has a process group of its own and dies with the runner's thread (prctl PDEATHSIG);
leaving the block stops them all, however it is left.

    port = port_free_on_all(3)
    apply_cluster(cp, ns, port=port)
    with PodRunner(cp, ns, workdir=tmp_path, port=port) as runner:
        runner.wait_running([0, 1, 2])
        with runner.client(0) as http:
            ...
"""

from __future__ import annotations

import base64
import collections
import json
import os
import re
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from tests.support.control_plane import ControlPlane
from tests.support.hosts import loopback, member_host, resolver_env
from tests.support.kubectl import ADMIN_PASSWORD, wait_for
from tests.support.process_groups import kill_group, leader_exited, tail
from tests.support.registry import RegistryProcess

CONTAINER = "zot"  # the member container of the pod template (operator/statefulset.py)
INSTANCE_LABEL = "app.kubernetes.io/instance"


class NotYet(Exception):
    """A pod cannot start yet (a Secret or ConfigMap it mounts is missing, say): tried again next poll."""


def local_path(path: str, mounts: dict[str, Path]) -> Path | None:
    """Where the in-pod `path` is on this machine, through the longest mount it lies under (None: none)."""
    for mount in sorted(mounts, key=len, reverse=True):
        if path == mount or path.startswith(mount.rstrip("/") + "/"):
            return mounts[mount] / path[len(mount) :].lstrip("/")
    return None


def remap_paths(value: Any, mounts: dict[str, Path]) -> Any:
    """`value` (a config) with every string that is an in-pod path under a mount replaced by the path of
    the file here: TLS files, the htpasswd file, the root directory, wherever in the config they are."""
    if isinstance(value, dict):
        return {key: remap_paths(item, mounts) for key, item in value.items()}
    if isinstance(value, list):
        return [remap_paths(item, mounts) for item in value]
    if isinstance(value, str) and value.startswith("/"):
        found = local_path(value, mounts)
        return str(found) if found is not None else value
    return value


@dataclass
class _Pod:
    """One pod as the kubelet prepared it: its files, and the config and environment of its process."""

    name: str
    uid: str
    folder: Path
    config: dict[str, Any]
    env: dict[str, str]


@dataclass
class _Member:
    ordinal: int
    held: bool = False
    pod: _Pod | None = None  # the pod the current (or next) process belongs to
    process: RegistryProcess | None = None  # the latest process, running or not
    stopping_since: float | None = None  # when it was sent SIGTERM (time.monotonic)
    restart_at: float = 0.0  # a process that exited is started again no sooner
    starts: int = 0
    problem: str = ""  # why its pod cannot start, if it cannot

    @property
    def popen(self) -> subprocess.Popen[bytes] | None:
        return self.process.process if self.process else None

    def running_pid(self) -> int | None:
        """The pid of its process if that has not exited (it may not listen yet)."""
        popen = self.popen
        return popen.pid if popen is not None and not leader_exited(popen) else None


class PodRunner:
    """The member pods of ZotCluster `name` in `namespace` as real registry processes; see the module.

    `port` is the cluster's spec.port, free on 127.0.0.1 .. 127.0.0.<ordinals> (port_free_on_all);
    `ordinals` is how many member names the processes resolve (the largest cluster size to expect).
    """

    def __init__(
        self,
        cp: ControlPlane,
        namespace: str,
        name: str = "demo",
        *,
        workdir: Path,
        port: int,
        ordinals: int = 8,
        restart_delay: float = 1.0,
        stop_timeout: float = 10.0,
        interval: float = 0.3,
        cluster_domain: str = "cluster.local",
    ) -> None:
        self.cp, self.namespace, self.name = cp, namespace, name
        self.workdir, self.port, self.ordinals = workdir, port, ordinals
        self.restart_delay, self.stop_timeout, self.interval = restart_delay, stop_timeout, interval
        self.hosts = {member_host(name, namespace, i, cluster_domain): loopback(i) for i in range(ordinals)}
        self._env = {
            **resolver_env(self.hosts),
            # The stdlib resolver, which the test resolver patches (uvloop resolves natively).
            "ZOT_REGISTRY_WORKER_CLASS": "asyncio",
        }
        self._pod_name = re.compile(rf"{re.escape(name)}-(\d+)")
        self._lock = threading.Lock()
        self._members: dict[int, _Member] = {}
        self._pods: dict[int, str] = {}  # ordinal -> uid of the live pods at the last poll
        self._events: collections.deque[str] = collections.deque(maxlen=200)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._began = time.monotonic()

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> PodRunner:
        for folder in ("data", "logs", "pods"):
            (self.workdir / folder).mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name=f"pod-runner-{self.namespace}-{self.name}", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            # The thread stops the processes itself (they die with it, PDEATHSIG): give it the time.
            self._thread.join(self.stop_timeout + 30)
        # Only if the thread hung (maybe holding the lock): nothing may outlive the block.
        locked = self._lock.acquire(timeout=5)
        try:
            for member in list(self._members.values()):
                if member.popen is not None:
                    kill_group(member.popen)
        finally:
            if locked:
                self._lock.release()

    # -- what tests use --------------------------------------------------------------------
    def url(self, ordinal: int) -> str:
        return f"https://{loopback(ordinal)}:{self.port}"

    def member(self, ordinal: int) -> RegistryProcess:
        """The latest process of member `ordinal`, running or not (KeyError: never started)."""
        with self._lock:
            member = self._members.get(ordinal)
            if member is None or member.process is None:
                raise KeyError(f"member {ordinal} has not been started")
            return member.process

    def pid(self, ordinal: int) -> int | None:
        """The pid of member `ordinal`'s running process, None if none runs."""
        with self._lock:
            member = self._members.get(ordinal)
            return member.running_pid() if member else None

    def pod_uid(self, ordinal: int) -> str | None:
        """The uid of the pod that member `ordinal`'s running process belongs to."""
        with self._lock:
            member = self._members.get(ordinal)
            return member.pod.uid if member and member.pod and member.running_pid() else None

    def starts(self, ordinal: int) -> int:
        """How many processes member `ordinal` had (the next log is member-<ordinal>-<starts>.log)."""
        with self._lock:
            member = self._members.get(ordinal)
            return member.starts if member else 0

    def running(self) -> set[int]:
        """The ordinals with a running process."""
        with self._lock:
            return {i for i, member in self._members.items() if member.running_pid()}

    def kill(self, ordinal: int) -> int:
        """SIGKILL to member `ordinal`'s process group, like a crashed container: the pod stays, and the
        runner starts the member again after `restart_delay` unless it is held. Returns when the process
        has exited; its pid."""
        with self._lock:
            member = self._members.get(ordinal)
            popen = member.popen if member else None
            if popen is None or leader_exited(popen):
                raise RuntimeError(f"member {ordinal} is not running:\n{self._describe_locked()}")
            # Not reaped yet (only the runner's thread reaps, after seeing the exit), so the group is ours.
            os.killpg(popen.pid, signal.SIGKILL)
            self._event(f"member {ordinal} (pid {popen.pid}) killed")
        wait_for(f"member {ordinal} (pid {popen.pid}) to exit", lambda: leader_exited(popen), timeout=10, interval=0.05)
        return int(popen.pid)

    def hold(self, ordinal: int) -> None:
        """Member `ordinal` is not started (again) until `release`; a running process keeps running."""
        with self._lock:
            self._members.setdefault(ordinal, _Member(ordinal)).held = True

    def release(self, ordinal: int) -> None:
        with self._lock:
            member = self._members.setdefault(ordinal, _Member(ordinal))
            member.held, member.restart_at = False, 0.0

    def wait_running(
        self, ordinals: Iterable[int], timeout: float = 60, exclude_pids: Collection[int] = ()
    ) -> dict[int, int]:
        """Waits until each of `ordinals` has a process that belongs to its current pod and answers
        /livez, none of them one of `exclude_pids` (the processes a restart should have replaced);
        their pids."""
        wanted = sorted(ordinals)

        def pids() -> dict[int, int] | None:
            found = {}
            for ordinal in wanted:
                with self._lock:
                    member = self._members.get(ordinal)
                    current = (
                        member is not None
                        and member.stopping_since is None
                        and member.pod is not None
                        and self._pods.get(ordinal) == member.pod.uid
                    )
                    pid = member.running_pid() if member is not None and current else None
                if pid is None or pid in exclude_pids or not self._answers(ordinal, "/livez"):
                    return None
                found[ordinal] = pid
            return found

        running: dict[int, int] = self._wait(f"members {wanted} running", pids, timeout)
        return running

    def wait_ready(self, ordinal: int, timeout: float = 60) -> None:
        """Waits until member `ordinal` answers /readyz with 200 (it found itself among the members)."""
        self._wait(f"member {ordinal} ready", lambda: self._answers(ordinal, "/readyz"), timeout)

    def wait_stopped(self, ordinals: Iterable[int], timeout: float = 60) -> None:
        """Waits until none of `ordinals` has a running process."""
        wanted = set(ordinals)
        self._wait(f"members {sorted(wanted)} stopped", lambda: not wanted & self.running(), timeout)

    def ssl_context(self, ordinal: int = 0) -> ssl.SSLContext:
        """Trusts the CA that member `ordinal` trusts its peers by (the cluster's, cluster.tls.cacert);
        no host name check: clients talk to 127.0.0.x, while the members check each other's names."""
        cacert = self.member(ordinal).config["cluster"]["tls"]["cacert"]
        context = ssl.create_default_context(cafile=cacert)
        context.check_hostname = False
        return context

    def client(self, ordinal: int, auth: tuple[str, str] | None = ("admin", ADMIN_PASSWORD)) -> httpx.Client:
        """An httpx client for member `ordinal`: the cluster's CA, Basic auth as the namespace's admin
        (tests.support.kubectl.Namespaces made the htpasswd Secret). Close it (or use it in `with`)."""
        return httpx.Client(base_url=self.url(ordinal), verify=self.ssl_context(ordinal), auth=auth, timeout=30)

    def log_tail(self, ordinal: int, lines: int = 40) -> str:
        """The end of member `ordinal`'s latest log."""
        with self._lock:
            member = self._members.get(ordinal)
            log = member.process.log_path if member and member.process else None
        return tail(log, lines) if log else f"<member {ordinal} has no log yet>"

    def describe(self) -> str:
        """What the runner did and sees, and the end of each member's latest log: for failure messages."""
        with self._lock:
            text = self._describe_locked()
            ordinals = sorted(self._members)
        logs = [f"--- member {i}, end of its latest log ---\n{self.log_tail(i, 20)}" for i in ordinals]
        return "\n".join([text, *logs])

    def _describe_locked(self) -> str:
        state = []
        for i, member in sorted(self._members.items()):
            pid = member.running_pid()
            what = f"pid {pid}" if pid else "not running"
            extra = [*(["held"] if member.held else []), *([member.problem] if member.problem else [])]
            state.append(f"member {i}: {what}, {member.starts} starts{''.join(f'; {e}' for e in extra)}")
        failure = [f"the runner's thread failed: {self._failure!r}"] if self._failure else []
        return "\n".join([*failure, *state, "--- events ---", *self._events])

    # -- the thread ------------------------------------------------------------------------
    def _wait(self, what: str, check: Callable[[], Any], timeout: float) -> Any:
        def checked() -> Any:
            if self._failure is not None:
                raise RuntimeError(f"the pod runner failed while waiting for {what}") from self._failure
            return check()

        try:
            return wait_for(what, checked, timeout=timeout, interval=0.1)
        except AssertionError as err:
            raise AssertionError(f"{err}\n{self.describe()}") from None

    def _answers(self, ordinal: int, path: str) -> bool:
        try:
            # Probes are not authenticated, and what serves the URL matters here, not who.
            return httpx.get(f"{self.url(ordinal)}{path}", verify=False, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _event(self, text: str) -> None:
        self._events.append(f"{time.monotonic() - self._began:7.2f}s {text}")

    def _run(self) -> None:
        try:
            with self.cp.http() as api:
                while not self._stop.is_set():
                    try:
                        self._poll(api)
                    except httpx.HTTPError as err:  # the API server is slow or restarting: try again
                        self._event(f"API: {err!r}")
                    self._stop.wait(self.interval)
        except BaseException as err:  # kept for the waits to raise: a thread's exception reaches no test
            self._failure = err
        finally:
            self._stop_all()

    def _poll(self, api: httpx.Client) -> None:
        pods = self._live_pods(api)
        with self._lock:
            self._pods = {i: pod["metadata"]["uid"] for i, pod in pods.items()}
            for ordinal in sorted(set(self._members) | set(pods)):
                member = self._members.setdefault(ordinal, _Member(ordinal))
                try:
                    self._step(api, member, pods.get(ordinal))
                except NotYet as err:
                    if str(err) != member.problem:
                        self._event(f"member {ordinal}: {err}")
                    member.problem = str(err)
                else:
                    member.problem = ""

    def _live_pods(self, api: httpx.Client) -> dict[int, dict[str, Any]]:
        """The cluster's pods a kubelet would run: scheduled, not being deleted, not finished."""
        response = api.get(
            f"/api/v1/namespaces/{self.namespace}/pods", params={"labelSelector": f"{INSTANCE_LABEL}={self.name}"}
        )
        response.raise_for_status()
        live = {}
        for pod in response.json()["items"]:
            match = self._pod_name.fullmatch(pod["metadata"]["name"])
            if (
                match
                and pod["spec"].get("nodeName")
                and not pod["metadata"].get("deletionTimestamp")
                and pod.get("status", {}).get("phase") not in ("Succeeded", "Failed")
            ):
                live[int(match[1])] = pod
        return live

    def _step(self, api: httpx.Client, member: _Member, pod: dict[str, Any] | None) -> None:
        """One member's next move; never waits (several members stop and start together)."""
        now, popen = time.monotonic(), member.popen
        if popen is not None and popen.returncode is None:  # a process not reaped yet
            if leader_exited(popen) or (
                member.stopping_since is not None and now - member.stopping_since > self.stop_timeout
            ):
                code = kill_group(popen)  # its workers too, then reaped
                if member.stopping_since is None:  # nobody stopped it: a crash, or `kill`
                    member.restart_at = now + self.restart_delay
                    self._event(f"member {member.ordinal} (pid {popen.pid}) exited with {code}")
                else:
                    self._event(f"member {member.ordinal} (pid {popen.pid}) stopped, exit code {code}")
                member.stopping_since = None
            elif member.stopping_since is not None:
                return  # still stopping
            elif pod is None or member.pod is None or pod["metadata"]["uid"] != member.pod.uid:
                os.kill(popen.pid, signal.SIGTERM)  # the process only, as a kubelet signals the container's
                member.stopping_since = now
                self._event(f"member {member.ordinal} (pid {popen.pid}): its pod is gone, SIGTERM")
                return
            else:
                return  # running, and its pod is there
        if pod is None or member.held or now < member.restart_at:
            return
        if member.pod is None or member.pod.uid != pod["metadata"]["uid"]:
            member.pod = self._prepare(api, member.ordinal, pod)
        self._start(member)

    def _start(self, member: _Member) -> None:
        assert member.pod is not None
        n = member.starts
        member.process = RegistryProcess(
            member.pod.folder / "config.json",
            member.pod.config,
            self.workdir / "logs" / f"member-{member.ordinal}-{n}.log",
            workers=1,
            env=member.pod.env,
            die_with_parent=True,
        )
        popen = member.process.spawn()
        member.starts += 1
        self._event(f"member {member.ordinal} (pid {popen.pid}) started for pod {member.pod.name} {member.pod.uid}")

    def _stop_all(self) -> None:
        """SIGTERM to every running process at once, SIGKILL to each group after `stop_timeout`."""
        with self._lock:
            popens = [p for m in self._members.values() if (p := m.popen) is not None and p.returncode is None]
            for popen in popens:
                if not leader_exited(popen):
                    os.kill(popen.pid, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            while time.monotonic() < deadline and not all(leader_exited(p) for p in popens):
                time.sleep(0.05)
            for popen in popens:
                kill_group(popen)

    # -- the kubelet's part ----------------------------------------------------------------
    def _prepare(self, api: httpx.Client, ordinal: int, pod: dict[str, Any]) -> _Pod:
        """The pod's volumes as files, and the config and environment of its member container."""
        name, uid, spec = pod["metadata"]["name"], pod["metadata"]["uid"], pod["spec"]
        if ordinal >= self.ordinals:  # its peers could not resolve it, nor it them
            raise NotYet(f"pod {name}: the runner resolves ordinals below {self.ordinals} only (PodRunner ordinals=)")
        if spec.get("initContainers"):
            # The config with values from Secrets (operator/materialize.py): not played here yet.
            raise NotYet(f"pod {name} has init containers, which the pod runner does not run")
        container = next((c for c in spec["containers"] if c["name"] == CONTAINER), None)
        if container is None:
            raise NotYet(f"pod {name} has no container {CONTAINER!r}")
        folder = self.workdir / "pods" / f"{name}-{uid[:8]}"
        volumes = {v["name"]: self._volume(api, ordinal, v, folder / "volumes" / v["name"]) for v in spec["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]] / m.get("subPath", "") for m in container["volumeMounts"]}
        args = container.get("args", [])  # serve <config>
        config_file = local_path(args[-1], mounts) if args else None
        if config_file is None or not config_file.is_file():
            raise NotYet(f"pod {name}: the config its args name ({args}) is not in a volume the runner made")
        config: dict[str, Any] = remap_paths(json.loads(config_file.read_text()), mounts)
        if int(config["http"]["port"]) != self.port:
            raise NotYet(f"pod {name}: its config says port {config['http']['port']}, the runner has {self.port}")
        config["http"]["address"] = loopback(ordinal)  # 0.0.0.0 in a pod; here each member has its own
        env = {**self._container_env(api, container), **self._env}
        return _Pod(name, uid, folder, config, env)

    def _volume(self, api: httpx.Client, ordinal: int, volume: dict[str, Any], folder: Path) -> Path:
        if "persistentVolumeClaim" in volume:
            suffix = "" if volume["name"] == "data" else f"-{volume['name']}"
            claim = self.workdir / "data" / f"member-{ordinal}{suffix}"
            claim.mkdir(parents=True, exist_ok=True)
            return claim
        folder.mkdir(parents=True, exist_ok=True)
        if "secret" in volume:
            source = volume["secret"]
            data = self._object(api, "secrets", source["secretName"], source.get("optional", False))
            files = {k: base64.b64decode(v) for k, v in data.get("data", {}).items()}
        elif "configMap" in volume:
            source = volume["configMap"]
            data = self._object(api, "configmaps", source["name"], source.get("optional", False))
            files = {k: v.encode() for k, v in data.get("data", {}).items()}
            files.update({k: base64.b64decode(v) for k, v in data.get("binaryData", {}).items()})
        else:  # emptyDir, and what admission adds (the service account token): empty folders
            return folder
        items = source.get("items")
        for key, path in ((i["key"], i["path"]) for i in items) if items else ((k, k) for k in files):
            if key not in files:
                raise NotYet(f"{volume['name']}: key {key} is missing")
            target = folder / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(files[key])
            target.chmod(0o600)
        return folder

    def _container_env(self, api: httpx.Client, container: dict[str, Any]) -> dict[str, str]:
        env = {}
        for variable in container.get("env", []):
            if "value" in variable:
                env[variable["name"]] = variable["value"]
            elif ref := variable.get("valueFrom", {}).get("secretKeyRef"):
                data = self._object(api, "secrets", ref["name"], False).get("data", {})
                if ref["key"] not in data:
                    raise NotYet(f"secret {ref['name']} has no key {ref['key']} (for {variable['name']})")
                env[variable["name"]] = base64.b64decode(data[ref["key"]]).decode()
            else:
                raise NotYet(f"environment variable {variable['name']}: only values and secretKeyRefs are played")
        return env

    def _object(self, api: httpx.Client, kind: str, name: str, optional: bool) -> dict[str, Any]:
        response = api.get(f"/api/v1/namespaces/{self.namespace}/{kind}/{name}")
        if response.status_code == 404:
            if optional:
                return {}
            raise NotYet(f"{kind} {name} not found")  # as a kubelet, wait for it
        response.raise_for_status()
        found: dict[str, Any] = response.json()
        return found
