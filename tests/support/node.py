"""One real Kubernetes node for tests: containerd + runc, CNI, kubelet, kube-proxy and CoreDNS,
joined to a `ControlPlane(node_support=True)`, in a network namespace of its own.

    with ControlPlane(nodes=0, node_support=True) as cp, Node(cp) as node:
        node.import_image(busybox_image(tmp / "busybox.tar"))
        ...  # pods scheduled on node.name run for real

Network (hack/README.md, "Node tier"): the fixture creates the network namespace `zot-node-<hex>`
with loopback and a bridge without ports, `zot0`, holding the node address NODE_IP (10.250.0.1/24;
also the default route: whatever is sent "out" reaches nothing). containerd, kubelet, kube-proxy
and CoreDNS run inside it and inside a mount namespace of the node (`nsenter --mount --net`; the
host's cgroups). In that mount namespace, the fixed paths the kubelet, containerd's shims and CNI
use (PRIVATE_PATHS) are folders of the node's temporary folder, and whatever they mount (container
root filesystems, volumes, the pods' network namespaces) exists there only: it goes with the
namespace. CNI's bridge plugin puts each pod in a network namespace of its own on the bridge `cni0`
(POD_SUBNET). Pod and Service addresses exist only in those namespaces. The control plane stays on
the host's 127.0.0.1: tests/support/node_relay.py listens on 6443 inside the node namespace and
relays to it, and serves the API server's `cluster` egress (HTTP CONNECT, unix socket) by opening
connections inside the node namespace. Pods reach the API server through the `kubernetes`
Service (10.96.0.1), whose Endpoints/EndpointSlice the fixture publishes (NODE_IP:6443); DNS is
the `kube-dns` Service (DNS_IP) in front of CoreDNS on NODE_IP:53. Tests reach pods and Services
from inside the node namespace: `node.run_in_netns(fn)` (a thread in the namespace: sockets it
opens are there) or `node.netns_command(...)` (nsenter).

`stop()` (also after a failed start) stops everything, kills what is left in the node's cgroups
and the containerd shims of its socket, releases the mount namespace (and with it every mount of
the node), deletes the cgroups, the network namespace and the folder, and puts back the kernel
settings the kubelet changed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import fcntl
import functools
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

from tests.support.control_plane import ControlPlane
from tests.support.node_images import PAUSE_IMAGE, pause_image
from tests.support.node_relay import enter_netns
from tests.support.paths import TOOLS_BIN
from tests.support.process_groups import Component, tail

T = TypeVar("T")

NODE_IP = "10.250.0.1"  # the node's address, on the portless bridge zot0 in its namespace
NODE_NET = "10.250.0.0/24"
POD_SUBNET = "10.244.0.0/24"  # CNI bridge cni0; its first address (.1) is the pods' gateway
CLUSTER_CIDR = "10.244.0.0/16"  # kube-proxy: what counts as a pod address
SERVICE_CIDR = "10.96.0.0/16"  # the control plane's --service-cluster-ip-range
API_SERVICE_IP = "10.96.0.1"  # the `kubernetes` Service (first address of the range)
DNS_IP = "10.96.0.10"  # the `kube-dns` Service
API_RELAY_PORT = 6443  # the API server inside the node namespace (127.0.0.1 and NODE_IP)
CLUSTER_DOMAIN = "cluster.local"
NODE_BINARIES = ("kubelet", "kube-proxy", "coredns", "zot-pause")
SYSTEM_BINARIES = (
    "containerd", "containerd-shim-runc-v2", "ctr", "runc", "nsenter", "unshare", "mount", "ip", "iptables", "conntrack"
)  # fmt: skip
CNI_BIN = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "loopback")
CGROUP_FS = Path("/sys/fs/cgroup")
# What the kubelet's setupKernelTunables writes (protectKernelDefaults=false): put back by stop().
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
# The values before the first node's kubelet changed them, and which nodes are running: shared by
# the nodes of every test process on the machine (pytest workers), under a lock. The last one to
# stop puts the values back.
SYSCTL_STATE = Path("/run/zot-node-sysctls.json")
SYSCTL_LOCK = Path("/run/zot-node-sysctls.lock")
RELAY_SCRIPT = Path(__file__).with_name("node_relay.py")
# Fixed paths (not configurable) -> a folder of the node, bind-mounted in its mount namespace. The
# kubelet's device plugin socket (pluginapi.DevicePluginPath), containerd 1.6's shim sockets
# (/run/containerd/s/<hash>) and libcni's result cache (/var/lib/cni/results).
PRIVATE_PATHS = {
    "/var/lib/kubelet": "var-lib-kubelet",
    "/run/containerd": "run-containerd",
    "/var/lib/cni": "var-lib-cni",
}
MNT_DETACH = 2
try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _LIBC = None


class NodeError(RuntimeError):
    """The node did not come up; the message holds the tails of the component logs."""


def _umount(path: str) -> None:
    if _LIBC is None or _LIBC.umount2(path.encode(), MNT_DETACH) != 0:
        subprocess.run(["umount", "-l", path], capture_output=True, check=False, timeout=30)


def _mounts_under(prefix: str) -> list[str]:
    """Mount points at or under `prefix`, deepest (last mounted) first."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix.rstrip("/") + "/"):
                found.append(point)
    return list(reversed(found))


def _kill_until_gone(find: Callable[[], Collection[int]], what: str, seconds: float) -> None:
    """SIGKILL what `find` lists until it lists nothing; NodeError naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while pids := find():
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise NodeError(f"{what}: {sorted(pids)}")
        time.sleep(0.1)


class Node:
    """A real node named `name` (default `zot-node-<hex>`) of `control_plane`, which must have been
    started with `node_support=True` (one Node per control plane: it serves the API server's
    cluster egress). `start()` returns once the Node is Ready, kube-proxy is healthy and CoreDNS is
    ready; `startup_seconds` and `timings` say how long each step took."""

    def __init__(
        self,
        control_plane: ControlPlane,
        name: str | None = None,
        bin_dir: Path = TOOLS_BIN,
        startup_timeout: float = 90.0,
        keep: bool = False,
        log_level: int = 1,
    ) -> None:
        if not control_plane.node_support:
            raise NodeError("Node needs ControlPlane(node_support=True)")
        suffix = secrets.token_hex(4)
        self.cp = control_plane
        self.name = name or f"zot-node-{suffix}"
        self.netns = f"zot-node-{suffix}"
        self.netns_path = Path("/run/netns") / self.netns
        self.mountns_path = Path()  # set by start(): <dir>/ns/mnt
        self.cgroup_root = f"/zot-node-{suffix}"
        self.bin_dir = bin_dir
        self.startup_timeout = startup_timeout
        self.keep = keep
        self.log_level = log_level
        self.dir = Path(tempfile.mkdtemp(prefix="zot-node-"))
        self.containerd_socket = self.dir / "containerd.sock"
        self.components: list[Component] = []
        self.timings: dict[str, float] = {}
        self.startup_seconds: float | None = None
        self._sysctls_registered = False
        self._cgroup_dirs: list[Path] = []
        self._netns_created = False
        self._netns_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._stopped = False

    # -- helpers ---------------------------------------------------------------------------
    def binary(self, name: str) -> str:
        path = self.bin_dir / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        found = shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin:/usr/bin")
        if found:
            return found
        raise NodeError(f"{name} is missing: run `bash hack/tools.sh node` (or `make tools`)")

    def netns_command(self, *args: str) -> list[str]:
        """`args` as a command run inside the node's network namespace (host mounts, cgroups)."""
        return [self.binary("nsenter"), f"--net={self.netns_path}", "--", *args]

    def netns_run(self, *args: str, timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.netns_command(*args), capture_output=True, text=True, timeout=timeout, check=check)

    def run_in_netns(self, fn: Callable[..., T], *args: Any, timeout: float = 60.0) -> T:
        """fn(*args) on a thread inside the node's network namespace: sockets it opens (httpx,
        socket) are in there and reach NODE_IP, pods and Services. Do not start processes from it."""
        if self._netns_pool is None:
            self._netns_pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=2,
                thread_name_prefix="node-netns",
                initializer=enter_netns,
                initargs=(str(self.netns_path),),
            )
        return self._netns_pool.submit(fn, *args).result(timeout)

    def ctr(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary("ctr"), "--address", str(self.containerd_socket), "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )

    def import_image(self, archive: Path) -> list[str]:
        """Import an image archive (OCI layout or `docker save` tar) into containerd's CRI namespace,
        unpacked for the node's snapshotter; the image names it now holds. Pods must use
        `imagePullPolicy: Never` or `IfNotPresent` (nothing can be pulled)."""
        try:
            self.ctr("images", "import", "--no-unpack=false", str(archive))
        except subprocess.CalledProcessError as exc:
            raise NodeError(f"ctr images import {archive}: {exc.stderr or exc.stdout}") from exc
        listed = self.ctr("images", "ls", "-q").stdout.split()
        return [n for n in listed if not n.startswith("sha256:")]

    def logs(self, lines: int = 40) -> str:
        parts = []
        for comp in self.components:
            state = "running" if comp.running() else f"exited {comp.process.returncode if comp.process else '-'}"
            head = f"----- {comp.name} ({state}), last {lines} lines of {comp.log} -----"
            parts.append(f"{head}\n{tail(comp.log, lines)}")
        return "\n".join(parts)

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> Node:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Node:
        begin = time.monotonic()
        try:
            steps: Sequence[tuple[str, Callable[[], None]]] = (
                ("check", self._check),
                ("netns", self._create_netns),
                ("mount ns", self._create_mountns),
                ("cgroups", self._create_cgroups),
                ("credentials", self._write_credentials),
                ("relay", self._start_relay),
                ("api objects", self._publish_api_objects),
                ("containerd", self._start_containerd),
                ("pause image", self._import_pause),
                ("kubelet", self._start_kubelet),
                ("kube-proxy", self._start_kube_proxy),
                ("coredns", self._start_coredns),
                ("ready", self._wait_ready),
            )
            for what, step in steps:
                t = time.monotonic()
                step()
                self.timings[what] = round(time.monotonic() - t, 2)
        except BaseException as exc:
            message = f"node {self.name} failed to start: {exc}\n{self.logs()}"
            self.stop()
            if isinstance(exc, NodeError | TimeoutError | OSError | httpx.HTTPError | subprocess.SubprocessError):
                raise NodeError(message) from exc
            raise
        self.startup_seconds = time.monotonic() - begin
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        errors: list[str] = []

        def attempt(what: str, fn: Callable[[], None]) -> None:
            try:
                fn()
            except Exception as exc:  # cleanup goes on: every step is tried
                errors.append(f"{what}: {exc!r}")

        for name in ("coredns", "kube-proxy", "kubelet"):
            attempt(f"stop {name}", functools.partial(self._stop_component, name))
        attempt("kill pod processes", self._kill_cgroup_processes)
        attempt("kill shims", self._kill_shims)
        for name in ("containerd", "relay"):
            attempt(f"stop {name}", functools.partial(self._stop_component, name))
        for comp in self.components:
            attempt(f"stop {comp.name}", comp.stop)
        if self._netns_pool is not None:
            self._netns_pool.shutdown(wait=False, cancel_futures=True)
        attempt("unmount", self._unmount_all)
        attempt("cgroups", self._remove_cgroups)
        if self._netns_created:
            attempt("netns", lambda: self._ip("netns", "delete", self.netns))
        attempt("sysctls", self._restore_sysctls)
        attempt("api objects", self._delete_api_objects)
        left = _mounts_under(str(self.dir))
        if left:
            errors.append(f"mounts left under {self.dir}, folder kept: {left}")
        elif not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        if errors:
            print(f"node {self.name} cleanup problems:\n  " + "\n  ".join(errors), file=sys.stderr)

    # -- start steps -----------------------------------------------------------------------
    def _check(self) -> None:
        if os.geteuid() != 0:
            raise NodeError("a real node needs root (network namespaces, cgroups, mounts)")
        for name in (*NODE_BINARIES, *SYSTEM_BINARIES):
            self.binary(name)
        missing = [p for p in CNI_PLUGINS if not (CNI_BIN / p).is_file()]
        if missing:
            raise NodeError(f"CNI plugins missing in {CNI_BIN}: {missing} (Debian containernetworking-plugins)")

    def _ip(self, *args: str) -> None:
        result = subprocess.run([self.binary("ip"), *args], capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise NodeError(f"ip {' '.join(args)}: {result.stderr.strip()}")

    def _create_netns(self) -> None:
        self._ip("netns", "add", self.netns)
        self._netns_created = True
        ns = ("-n", self.netns)
        self._ip(*ns, "link", "set", "lo", "up")
        # A bridge without ports plays the dummy device (this kernel has no CONFIG_DUMMY): it holds
        # the node address, and whatever is routed out through it reaches nothing.
        self._ip(*ns, "link", "add", "zot0", "type", "bridge")
        self._ip(*ns, "addr", "add", f"{NODE_IP}/{ipaddress.ip_network(NODE_NET).prefixlen}", "dev", "zot0")
        self._ip(*ns, "link", "set", "zot0", "up")
        # A default route for Service addresses (kube-proxy's DNAT happens after routing, which
        # needs a route): into zot0, where nothing answers.
        self._ip(*ns, "route", "add", "default", "dev", "zot0")
        # In the namespace only (both are per network namespace): routing between the bridge and
        # the node address, and iptables (kube-proxy) for traffic between pods on the same bridge.
        self._sysctl_in_netns("net.ipv4.ip_forward", "1")
        self._sysctl_in_netns("net.bridge.bridge-nf-call-iptables", "1")

    def _run(self, *args: str) -> None:
        result = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise NodeError(f"{' '.join(args)}: {result.stderr.strip()}")

    def _create_mountns(self) -> None:
        """A mount namespace kept by a bind mount on <dir>/ns/mnt (on a private mount, as the kernel
        requires), with PRIVATE_PATHS bound to folders of the node. Host mounts propagate in
        (slave), none of the node's out."""
        ns = self.dir / "ns"
        ns.mkdir()
        self._run("mount", "--bind", str(ns), str(ns))
        self._run("mount", "--make-private", str(ns))
        self.mountns_path = ns / "mnt"
        self.mountns_path.touch()
        self._run(self.binary("unshare"), f"--mount={self.mountns_path}", "--propagation", "slave", "true")
        for host, local in PRIVATE_PATHS.items():
            Path(host).mkdir(parents=True, exist_ok=True)  # the mount point (an empty folder on the host)
            (self.dir / local).mkdir()
            self._run("mount", "-N", str(self.mountns_path), "--bind", str(self.dir / local), host)

    def _sysctl_in_netns(self, key: str, value: str) -> None:
        path = "/proc/sys/" + key.replace(".", "/")

        def write() -> None:
            with open(path, "w") as f:
                f.write(value)

        self.run_in_netns(write)

    def _hierarchies(self) -> list[Path]:
        if (CGROUP_FS / "cgroup.controllers").exists():  # cgroup v2 only
            return [CGROUP_FS]
        return sorted(p for p in CGROUP_FS.iterdir() if p.is_dir() and not p.is_symlink())

    def _create_cgroups(self) -> None:
        """The kubelet's cgroupRoot, in every hierarchy: pods go under it, stop() empties it."""
        for hierarchy in self._hierarchies():
            path = hierarchy / self.cgroup_root.lstrip("/")
            path.mkdir()
            self._cgroup_dirs.append(path)
            for name in ("cpuset.cpus", "cpuset.mems"):  # a v1 cpuset starts empty: no task could join
                if (path / name).exists() and not (path / name).read_text().strip():
                    (path / name).write_text((hierarchy / name).read_text())

    def _kubeconfig(self, component: str, user: str, groups: Sequence[str]) -> Path:
        cert, key = self.cp.issue_client_cert(user, groups, self.dir / "pki" / component)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "node",
                    "cluster": {
                        "server": f"https://127.0.0.1:{API_RELAY_PORT}",
                        "certificate-authority": str(self.cp.ca_file),
                    },
                }
            ],
            "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
            "contexts": [{"name": "node", "context": {"cluster": "node", "user": user}}],
            "current-context": "node",
        }
        path = self.dir / f"{component}.kubeconfig"
        path.write_text(json.dumps(config, indent=2) + "\n")
        path.chmod(0o600)
        return path

    def _write_credentials(self) -> None:
        (self.dir / "pki").mkdir()
        self.kubelet_kubeconfig = self._kubeconfig("kubelet", f"system:node:{self.name}", ["system:nodes"])
        # system:kube-proxy is bound to the bootstrap ClusterRole system:node-proxier.
        self.proxy_kubeconfig = self._kubeconfig("kube-proxy", "system:kube-proxy", [])
        self.coredns_kubeconfig = self._kubeconfig("coredns", "zot:coredns", [])

    def _start_relay(self) -> None:
        allow = [a for net in (NODE_NET, CLUSTER_CIDR, SERVICE_CIDR) for a in ("--egress-allow", net)]
        relay = self._add(
            "relay",
            [
                sys.executable,
                str(RELAY_SCRIPT),
                f"--netns={self.netns_path}",
                f"--api-listen=0.0.0.0:{API_RELAY_PORT}",
                f"--api-target=127.0.0.1:{self.cp.api_port}",
                f"--egress-socket={self.cp.cluster_egress_socket}",
                *allow,
            ],
            netns=False,
        )
        self._wait("the relay", lambda: "relay ready" in tail(relay.log, 5), relay)

    def _api(self, method: str, path: str, body: dict[str, Any] | None = None, ok: Sequence[int] = (200, 201)) -> None:
        with self.cp.http() as client:
            resp = client.request(method, path, json=body)
        if resp.status_code not in ok:
            raise NodeError(f"{method} {path}: {resp.status_code} {resp.text[:500]}")

    def _publish_api_objects(self) -> None:
        """The `kubernetes` Service's endpoint (the relay) and DNS: the `kube-dns` Service in front
        of CoreDNS on NODE_IP, and CoreDNS's read access (RBAC)."""
        managed = {"endpointslice.kubernetes.io/managed-by": "zot-node.tests"}
        # The control plane runs --endpoint-reconciler-type=none (its address is loopback):
        # nothing else writes these. skip-mirror: the EndpointSlice below is the one kube-proxy reads.
        self._api(
            "POST",
            "/api/v1/namespaces/default/endpoints",
            {
                "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                "subsets": [{"addresses": [{"ip": NODE_IP}], "ports": [{"name": "https", "port": API_RELAY_PORT}]}],
            },
            ok=(201, 409),
        )
        self._slice("default", "kubernetes", "kubernetes", [("https", API_RELAY_PORT, "TCP")], managed)
        self._api(
            "POST",
            "/api/v1/namespaces/kube-system/services",
            {
                "metadata": {"name": "kube-dns", "labels": {"k8s-app": "kube-dns"}},
                "spec": {
                    "clusterIP": DNS_IP,
                    "ports": [
                        {"name": "dns", "port": 53, "protocol": "UDP"},
                        {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                    ],
                },
            },
            ok=(201, 409),
        )
        self._slice("kube-system", "kube-dns", "kube-dns", [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")], managed)
        self._api(
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            {
                "metadata": {"name": "zot:coredns"},
                "rules": [
                    {"apiGroups": [""], "resources": ["services", "pods", "namespaces"], "verbs": ["list", "watch"]},
                    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
                ],
            },
            ok=(201, 409),
        )
        self._api(
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            {
                "metadata": {"name": "zot:coredns"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "zot:coredns"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "zot:coredns"}],
            },
            ok=(201, 409),
        )

    def _slice(
        self, namespace: str, name: str, service: str, ports: Sequence[tuple[str, int, str]], labels: dict[str, str]
    ) -> None:
        path = f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"
        self._api("DELETE", f"{path}/{name}", ok=(200, 404))
        self._api(
            "POST",
            path,
            {
                "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service, **labels}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}, "nodeName": self.name}],
                "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports],
            },
        )

    def _delete_api_objects(self) -> None:
        if self.cp._stopped:
            return
        with self.cp.http() as client:
            client.delete(f"/api/v1/nodes/{self.name}")
            client.delete("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes")
            client.delete("/api/v1/namespaces/default/endpoints/kubernetes")

    def _start_containerd(self) -> None:
        d = self.dir / "containerd"
        (self.dir / "cni" / "net.d").mkdir(parents=True)
        cni = {
            "cniVersion": "1.0.0",
            "name": "zot-node",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": True,  # the bridge holds the pods' gateway address (.1)
                    "ipMasq": False,  # nothing leaves the namespace: nothing to masquerade
                    "hairpinMode": True,  # a pod reaches itself through its Service
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_SUBNET}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.dir / "cni" / "ipam"),  # default /var/lib/cni/networks
                    },
                }
            ],
        }
        (self.dir / "cni" / "net.d" / "10-zot-node.conflist").write_text(json.dumps(cni, indent=2) + "\n")
        runc = self.binary("runc")
        config = f"""\
version = 2
root = "{d}/root"
state = "{d}/state"
# Not used by the CRI here: fewer plugins, faster start, no warnings about missing tools.
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{self.containerd_socket}"

[ttrpc]
  address = "{self.containerd_socket}.ttrpc"

[debug]
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # containerd would load its AppArmor profile into the host's kernel (a machine-wide change).
  disable_apparmor = true
  # Without CAP_SYS_RESOURCE (not given here) no process may lower its oom_score_adj; runc would
  # fail setting the sandbox's -998 ("failed to update /proc/self/oom_score_adj: Permission
  # denied"). This keeps every container's at or above containerd's own.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  # Pod network namespaces under the state folder (default /run/netns/cni-*), in the node's mount namespace.
  netns_mounts_under_state_dir = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        Root = "{self.dir}/runc"
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{self.dir}/cni/net.d"
    max_conf_num = 1
"""
        path = self.dir / "containerd.toml"
        path.write_text(config)
        comp = self._add("containerd", [self.binary("containerd"), "--config", str(path)])

        def answers() -> bool:
            if not self.containerd_socket.exists():
                return False
            result = subprocess.run(
                [self.binary("ctr"), "--address", str(self.containerd_socket), "version"],
                capture_output=True,
                timeout=10,
                check=False,
            )
            return result.returncode == 0

        self._wait("containerd", answers, comp)

    def _import_pause(self) -> None:
        self.import_image(pause_image(self.dir / "images" / "pause.tar", Path(self.binary("zot-pause"))))

    def _start_kubelet(self) -> None:
        self._register_sysctls()
        resolv = self.dir / "resolv.conf"
        # What pods with dnsPolicy Default get (the host's resolvers are outside the namespace).
        resolv.write_text(f"nameserver {NODE_IP}\n")
        root = self.dir / "kubelet"
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "cgroupDriver": "cgroupfs",  # no systemd here: containerd's runc uses cgroupfs too
            "failCgroupV1": False,  # this machine is cgroup v1 (hybrid): kubelet 1.35 refuses it by default
            "failSwapOn": False,
            "cgroupRoot": self.cgroup_root,  # all pods under one cgroup of ours: stop() empties it
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "address": NODE_IP,
            "port": 10250,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 10248,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.cp.client_ca_file)},
            },
            "authorization": {"mode": "Webhook"},
            "clusterDomain": CLUSTER_DOMAIN,
            "clusterDNS": [DNS_IP],
            "resolvConf": str(resolv),
            "podLogsDir": str(self.dir / "pod-logs"),
            # Shared test machine: pods are not evicted because other tests filled the disk.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            # Nothing can be pulled again: never garbage-collect images (imported ones included).
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "registerNode": True,
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
            "nodeStatusUpdateFrequency": "2s",  # Ready is reported sooner
            "syncFrequency": "10s",  # mounted ConfigMaps/Secrets follow changes sooner
            "fileCheckFrequency": "0s",
            "shutdownGracePeriod": "0s",
            "maxPods": 110,
        }
        path = self.dir / "kubelet.json"
        path.write_text(json.dumps(config, indent=2) + "\n")
        self._add(
            "kubelet",
            [
                self.binary("kubelet"),
                f"--config={path}",
                f"--kubeconfig={self.kubelet_kubeconfig}",
                f"--root-dir={root}",
                f"--cert-dir={root / 'pki'}",
                f"--hostname-override={self.name}",
                f"--node-ip={NODE_IP}",
                f"--v={self.log_level}",
            ],
        )

    def _start_kube_proxy(self) -> None:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.proxy_kubeconfig)},
            "mode": "iptables",
            "hostnameOverride": self.name,
            "clusterCIDR": CLUSTER_CIDR,
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            # 0: leave the conntrack sysctls alone (nf_conntrack_max is machine-wide).
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "iptables": {"syncPeriod": "30s", "minSyncPeriod": "0s", "localhostNodePorts": False},
            "nodePortAddresses": [NODE_NET],
        }
        path = self.dir / "kube-proxy.json"
        path.write_text(json.dumps(config, indent=2) + "\n")
        self._add("kube-proxy", [self.binary("kube-proxy"), f"--config={path}", f"--v={self.log_level}"])

    def _start_coredns(self) -> None:
        # Cluster names from the API (kubernetes plugin); any other name does not exist (NXDOMAIN:
        # there is no upstream to forward to, and SERVFAIL would stop resolvers' search lists).
        corefile = f"""\
{CLUSTER_DOMAIN}:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {NODE_IP}
    errors
    ready 127.0.0.1:8181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {self.coredns_kubeconfig} node
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
}}
.:53 {{
    bind {NODE_IP}
    errors
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
"""
        path = self.dir / "Corefile"
        path.write_text(corefile)
        self._add("coredns", [self.binary("coredns"), "-conf", str(path)])

    def _wait_ready(self) -> None:
        kubelet, proxy, coredns = (self._component(n) for n in ("kubelet", "kube-proxy", "coredns"))

        def node_ready() -> bool:
            with self.cp.http() as client:
                resp = client.get(f"/api/v1/nodes/{self.name}")
            if resp.status_code != 200:
                return False
            conditions = resp.json().get("status", {}).get("conditions", [])
            return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

        def healthy(url: str) -> Callable[[], bool]:
            return lambda: self.run_in_netns(lambda: httpx.get(url, timeout=2).status_code == 200, timeout=5)

        self._wait("kube-proxy /healthz", healthy("http://127.0.0.1:10256/healthz"), proxy)
        self._wait("CoreDNS /ready", healthy("http://127.0.0.1:8181/ready"), coredns)
        self._wait(f"node {self.name} Ready", node_ready, kubelet)

    # -- process and wait helpers ----------------------------------------------------------
    def _add(self, name: str, args: list[str], netns: bool = True) -> Component:
        """A component; with `netns`, inside the node's network and mount namespaces."""
        if netns:
            args = [self.binary("nsenter"), f"--mount={self.mountns_path}", f"--net={self.netns_path}", "--", *args]
        argv = args
        comp = Component(name, argv, self.dir / f"{name}.log", {**os.environ, "PATH": self._path()})
        self.components.append(comp)
        return comp.start()

    def _path(self) -> str:
        return f"{self.bin_dir}:{os.environ.get('PATH', '')}:/usr/local/sbin:/usr/sbin:/sbin"

    def _component(self, name: str) -> Component:
        return next(c for c in self.components if c.name == name)

    def _wait(self, what: str, check: Callable[[], bool], comp: Component) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            for c in self.components:
                if not c.running():
                    raise NodeError(
                        f"{c.name} exited ({c.process.returncode if c.process else '-'}) while waiting for {what}"
                    )
            try:
                if check():
                    return
            except (OSError, httpx.HTTPError, ValueError, KeyError, concurrent.futures.TimeoutError) as exc:
                last = exc
            time.sleep(0.2)
        raise NodeError(f"timed out after {self.startup_timeout:.0f}s waiting for {what} ({comp.name}; last: {last!r})")

    # -- stop steps ------------------------------------------------------------------------
    def _stop_component(self, name: str) -> None:
        for comp in self.components:
            if comp.name == name:
                comp.stop()

    def _cgroup_pids(self) -> set[int]:
        pids: set[int] = set()
        for top in self._cgroup_dirs:
            for dirpath, _dirs, _files in os.walk(top):
                with contextlib.suppress(OSError):
                    pids.update(int(p) for p in Path(dirpath, "cgroup.procs").read_text().split())
        return pids

    def _kill_cgroup_processes(self) -> None:
        _kill_until_gone(self._cgroup_pids, f"processes left in {self.cgroup_root}", seconds=15)

    def _shim_pids(self) -> list[int]:
        """containerd-shim-runc-v2 processes started by this node's containerd (its socket in their
        command line: `-address <socket>`): they outlive containerd unless killed."""
        socket = str(self.containerd_socket)
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                if argv and argv[0].endswith(b"containerd-shim-runc-v2") and socket.encode() in argv:
                    found.append(int(proc.name))
        return found

    def _kill_shims(self) -> None:
        _kill_until_gone(self._shim_pids, "containerd shims left", seconds=10)

    def _unmount_all(self) -> None:
        for _ in range(3):  # a mount may hide another under it
            points = _mounts_under(str(self.dir))
            if not points:
                return
            for point in points:
                _umount(point)

    def _remove_cgroups(self) -> None:
        for top in self._cgroup_dirs:
            if not top.exists():
                continue
            for dirpath, _dirs, _files in os.walk(top, topdown=False):
                with contextlib.suppress(FileNotFoundError):
                    os.rmdir(dirpath)

    @contextlib.contextmanager
    def _sysctl_state(self) -> Iterator[dict[str, Any]]:
        """The shared SYSCTL_STATE, under SYSCTL_LOCK, without the nodes of dead processes; written back."""
        with open(SYSCTL_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state: dict[str, Any] = json.loads(SYSCTL_STATE.read_text())
            except (OSError, ValueError):
                state = {}
            state["nodes"] = {n: pid for n, pid in state.get("nodes", {}).items() if Path(f"/proc/{pid}").exists()}
            yield state
            if state["nodes"] or "originals" in state:
                SYSCTL_STATE.write_text(json.dumps(state, indent=2) + "\n")
            else:
                SYSCTL_STATE.unlink(missing_ok=True)

    def _register_sysctls(self) -> None:
        with self._sysctl_state() as state:
            # The first node: what the machine had before any kubelet. (Kept when the nodes that
            # registered died without stop(): the values now are likely the kubelet's.)
            if "originals" not in state:
                state["originals"] = {}
                for key in KUBELET_SYSCTLS:
                    with contextlib.suppress(OSError):
                        state["originals"][key] = (Path("/proc/sys") / key).read_text().strip()
            state["nodes"][self.name] = os.getpid()
        self._sysctls_registered = True

    def _restore_sysctls(self) -> None:
        """The last running node puts back the values the kubelets changed (machine-wide settings)."""
        if not self._sysctls_registered:
            return
        with self._sysctl_state() as state:
            state["nodes"].pop(self.name, None)
            if state["nodes"]:
                return
            for key, value in state.pop("originals", {}).items():
                path = Path("/proc/sys") / key
                with contextlib.suppress(OSError):
                    if path.read_text().strip() != value:
                        path.write_text(value)
