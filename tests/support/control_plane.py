"""A real Kubernetes control plane for tests, on 127.0.0.1 only.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok, as built by
`hack/build-k8s.sh` into .tools/bin, each in its own process group, with free loopback ports and
everything (data, certificates, keys, logs) in one temporary folder. KWOK plays the kubelets of
three fake Nodes: pods scheduled there become Running and Ready without any container.

    with ControlPlane() as cp:
        api = kubernetes.config.new_client_from_config(config_file=str(cp.kubeconfig))
        ...

Credentials: a static token file. The admin user (`cp.admin_token`, the kubeconfig's user) is in
`system:masters`; the controller manager and the scheduler run as `system:kube-controller-manager`
and `system:kube-scheduler`, which the bootstrap RBAC policy authorizes. ServiceAccount tokens are
signed with an RSA key generated here (`cryptography`), so TokenRequest and projected tokens work.

`ControlPlane(node_support=True)` also gets it ready for real nodes (tests/support/node.py):
a client CA (`--client-ca-file`; `issue_client_cert` makes certificates for users and groups, as
kubelets and kube-proxy authenticate), the Node authorizer and NodeRestriction, a client
certificate the API server shows the kubelets (`--kubelet-client-certificate`, issued by the same
CA, which the kubelets trust), kubelets reached at their InternalIP, and the `cluster` egress
(kubectl logs/exec, the proxy to pods and Services) through HTTP CONNECT on the unix socket
`cluster_egress_socket`, which the node serves from inside its network namespace.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.kube_objects import FAKE_NODE_ANNOTATION, fake_node, kubeconfig
from tests.support.paths import TOOLS_BIN, TOOLS_DIR
from tests.support.ports import free_port
from tests.support.process_groups import Component, tail

KWOK_STAGES = TOOLS_DIR / "kwok-stages"
HOST = "127.0.0.1"

SERVICE_CIDR = "10.96.0.0/16"  # a config value only: nothing routes it
POD_CIDR = "10.0.0.0/16"  # pod IPs that KWOK hands out, never used for traffic
ISSUER = "https://kubernetes.default.svc.cluster.local"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kubectl")


class ControlPlaneError(RuntimeError):
    """The control plane did not come up; the message holds the tails of the component logs."""


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok on 127.0.0.1.

    `start()` returns once the API server is ready, the controller manager and scheduler are
    healthy, the `default` ServiceAccount exists (controllers run) and every fake Node is Ready and
    schedulable (no not-ready taint left).
    `stop()` ends every process group and removes the temporary folder (`keep=True` keeps it).
    """

    def __init__(
        self,
        nodes: int = 3,
        bin_dir: Path = TOOLS_BIN,
        stages_dir: Path = KWOK_STAGES,
        startup_timeout: float = 90.0,
        keep: bool = False,
        node_support: bool = False,
    ) -> None:
        self.node_names = [f"kwok-node-{i}" for i in range(nodes)]
        self.bin_dir = bin_dir
        self.stages_dir = stages_dir
        self.startup_timeout = startup_timeout
        self.keep = keep
        self.dir = Path(tempfile.mkdtemp(prefix="k8s-control-plane-"))
        self.components: list[Component] = []
        self.admin_token = secrets.token_hex(16)
        self.etcd_port = free_port()
        self.api_port = free_port()
        self.server = f"https://{HOST}:{self.api_port}"
        self.cert_dir = self.dir / "apiserver-certs"
        self.kubeconfig = self.dir / "admin.kubeconfig"
        self.sa_key = self.dir / "sa.key"  # signs ServiceAccount tokens (generated in start())
        self.sa_pub = self.dir / "sa.pub"
        self.token_file = self.dir / "tokens.csv"  # static tokens: admin and the components
        self.component_tokens: dict[str, str] = {}
        self.kcm_port = 0
        self.scheduler_port = 0
        self.startup_seconds: float | None = None
        self.node_support = node_support
        self.client_ca_file = self.dir / "client-ca.crt"  # node_support: signs users' client certificates
        self.client_ca_key = self.dir / "client-ca.key"
        self.cluster_egress_socket = self.dir / "cluster-egress.sock"  # node_support: HTTP CONNECT, served by a node
        self._stopped = False

    # -- paths and helpers -------------------------------------------------------------------
    @property
    def path(self) -> Path:
        """The admin kubeconfig (same as `kubeconfig`)."""
        return self.kubeconfig

    @property
    def ca_file(self) -> Path:
        """The API server's self-signed serving certificate and its CA (from --cert-dir)."""
        return self.cert_dir / "apiserver.crt"

    @property
    def env(self) -> dict[str, str]:
        """os.environ with KUBECONFIG pointing at the admin kubeconfig and .tools/bin on PATH."""
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def binary(self, name: str) -> str:
        path = self.bin_dir / name
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ControlPlaneError(f"{path} is missing: run `bash hack/tools.sh k8s` (or `make tools`)")
        return str(path)

    def kubectl(self, *args: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary("kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def http(self, token: str | None = None) -> httpx.Client:
        """An httpx client for the API server, authenticated with `token` (default: admin)."""
        return httpx.Client(
            base_url=self.server,
            verify=self.ssl_context(),
            timeout=10.0,
            headers={"Authorization": f"Bearer {token or self.admin_token}"},
        )

    def logs(self, lines: int = 40) -> str:
        parts = []
        for comp in self.components:
            state = "running" if comp.running() else f"exited {comp.process.returncode if comp.process else '-'}"
            parts.append(
                f"----- {comp.name} ({state}), last {lines} lines of {comp.log} -----\n{tail(comp.log, lines)}"
            )
        return "\n".join(parts)

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        begin = time.monotonic()
        try:
            for name in BINARIES:
                self.binary(name)
            self._write_credentials()
            if self.node_support:
                self._write_node_support()
            self._start_etcd()
            self._start_apiserver()
            self._start_controllers()
            self._create_nodes()
            self._wait_ready()
        except BaseException as exc:
            message = f"control plane failed to start: {exc}\n{self.logs()}"
            self.stop()
            if isinstance(exc, ControlPlaneError | TimeoutError | OSError | httpx.HTTPError):
                raise ControlPlaneError(message) from exc
            raise
        self.startup_seconds = time.monotonic() - begin
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for comp in reversed(self.components):  # kwok, scheduler, controller manager, apiserver, etcd
            comp.stop()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- steps -----------------------------------------------------------------------------
    def _write_credentials(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.sa_key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        self.sa_pub.write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        self.sa_key.chmod(0o600)
        # token,user,uid,"group1,group2"
        self.component_tokens = {
            "system:kube-controller-manager": secrets.token_hex(16),
            "system:kube-scheduler": secrets.token_hex(16),
            "kwok": secrets.token_hex(16),
        }
        rows = [
            f'{self.admin_token},admin,uid-admin,"system:masters"',
            f"{self.component_tokens['system:kube-controller-manager']},system:kube-controller-manager,uid-kcm",
            f"{self.component_tokens['system:kube-scheduler']},system:kube-scheduler,uid-scheduler",
            f'{self.component_tokens["kwok"]},kwok,uid-kwok,"system:masters"',
        ]
        self.token_file.write_text("\n".join(rows) + "\n")
        self.token_file.chmod(0o600)

    def _write_node_support(self) -> None:
        now = datetime.datetime.now(datetime.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "zot test client CA")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        self.client_ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.client_ca_key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        self.client_ca_key.chmod(0o600)
        # The API server's identity towards the kubelets: system:masters passes their webhook authorization.
        self.issue_client_cert("kube-apiserver-kubelet-client", ["system:masters"], self.dir / "kubelet-client")
        egress = {
            "apiVersion": "apiserver.k8s.io/v1beta1",
            "kind": "EgressSelectorConfiguration",
            "egressSelections": [
                {
                    "name": "cluster",
                    "connection": {
                        "proxyProtocol": "HTTPConnect",
                        "transport": {"uds": {"udsName": str(self.cluster_egress_socket)}},
                    },
                }
            ],
        }
        (self.dir / "egress-selector.json").write_text(json.dumps(egress, indent=2) + "\n")

    def issue_client_cert(self, user: str, groups: Sequence[str], prefix: Path) -> tuple[Path, Path]:
        """A client certificate for `user` in `groups` (CN and O), signed by the client CA
        (`node_support=True`): written to `<prefix>.crt` and `<prefix>.key`, returned as (cert, key)."""
        if not self.node_support:
            raise ControlPlaneError("client certificates need ControlPlane(node_support=True)")
        ca_cert = x509.load_pem_x509_certificate(self.client_ca_file.read_bytes())
        ca_key = serialization.load_pem_private_key(self.client_ca_key.read_bytes(), password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        now = datetime.datetime.now(datetime.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
            + [x509.NameAttribute(NameOID.COMMON_NAME, user)]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        cert_path, key_path = prefix.with_name(prefix.name + ".crt"), prefix.with_name(prefix.name + ".key")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        key_path.chmod(0o600)
        return cert_path, key_path

    def _node_support_args(self) -> list[str]:
        if not self.node_support:
            return ["--authorization-mode=RBAC"]
        return [
            # Kubelets as system:node:<name> (group system:nodes): the Node authorizer grants what a
            # kubelet needs for its own pods; NodeRestriction keeps it to its own Node object.
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--client-ca-file={self.client_ca_file}",
            f"--kubelet-client-certificate={self.dir / 'kubelet-client.crt'}",
            f"--kubelet-client-key={self.dir / 'kubelet-client.key'}",
            # The egress proxy connects to addresses only: a node's Hostname would need DNS.
            "--kubelet-preferred-address-types=InternalIP",
            f"--egress-selector-config-file={self.dir / 'egress-selector.json'}",
        ]

    def _write_kubeconfig(self, path: Path, user: str, token: str) -> Path:
        path.write_text(json.dumps(kubeconfig(self.server, self.ca_file, user, token), indent=2) + "\n")
        path.chmod(0o600)
        return path

    def _add(self, name: str, args: Sequence[str], env: dict[str, str] | None = None) -> Component:
        comp = Component(name, [self.binary(name), *args], self.dir / f"{name}.log", env)
        self.components.append(comp)
        return comp.start()

    def _start_etcd(self) -> None:
        peer_port = free_port()
        client = f"http://{HOST}:{self.etcd_port}"
        peer = f"http://{HOST}:{peer_port}"
        self._add(
            "etcd",
            [
                "--name=default",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync",  # test data: no fsync keeps it fast on slow disks
                "--log-level=warn",
            ],
        )
        self._wait(
            "etcd /health",
            lambda: httpx.get(f"{client}/health", timeout=2).json().get("health") == "true",
            self.components[-1],
        )

    def _start_apiserver(self) -> None:
        self._add(
            "kube-apiserver",
            [
                f"--etcd-servers=http://{HOST}:{self.etcd_port}",
                f"--bind-address={HOST}",
                f"--advertise-address={HOST}",
                f"--secure-port={self.api_port}",
                f"--cert-dir={self.cert_dir}",  # writes a self-signed apiserver.crt/.key there
                f"--token-auth-file={self.token_file}",
                *self._node_support_args(),
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--service-account-issuer={ISSUER}",
                f"--service-account-key-file={self.sa_pub}",
                f"--service-account-signing-key-file={self.sa_key}",
                # The default "lease" reconciler would publish 127.0.0.1 as the endpoint of the
                # `kubernetes` Service, which Endpoints validation rejects (loopback).
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
            ],
        )
        api = self.components[-1]
        self._wait("kube-apiserver certificate", self.ca_file.exists, api)
        self._write_kubeconfig(self.kubeconfig, "admin", self.admin_token)

        def ready() -> bool:
            with self.http() as client:
                return client.get("/readyz").status_code == 200

        self._wait("kube-apiserver /readyz", ready, api)

    def _start_controllers(self) -> None:
        kcm_user, sched_user = "system:kube-controller-manager", "system:kube-scheduler"
        kcm_config = self._write_kubeconfig(
            self.dir / "controller-manager.kubeconfig", kcm_user, self.component_tokens[kcm_user]
        )
        sched_config = self._write_kubeconfig(
            self.dir / "scheduler.kubeconfig", sched_user, self.component_tokens[sched_user]
        )
        kwok_config = self._write_kubeconfig(self.dir / "kwok.kubeconfig", "kwok", self.component_tokens["kwok"])
        self.kcm_port = free_port()
        self.scheduler_port = free_port()
        self._add(
            "kube-controller-manager",
            [
                f"--kubeconfig={kcm_config}",
                f"--authentication-kubeconfig={kcm_config}",
                f"--authorization-kubeconfig={kcm_config}",
                f"--bind-address={HOST}",
                f"--secure-port={self.kcm_port}",
                f"--cert-dir={self.dir / 'controller-manager-certs'}",
                # Everything on by default: statefulset, garbagecollector, serviceaccount(-token),
                # endpoints, endpointslice, namespace, replicaset, deployment, nodelifecycle, ...
                "--controllers=*",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={self.sa_key}",
                f"--root-ca-file={self.ca_file}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--leader-elect=false",
                "--profiling=false",
                "--v=1",
            ],
        )
        self._add(
            "kube-scheduler",
            [
                f"--kubeconfig={sched_config}",
                f"--authentication-kubeconfig={sched_config}",
                f"--authorization-kubeconfig={sched_config}",
                f"--bind-address={HOST}",
                f"--secure-port={self.scheduler_port}",
                "--leader-elect=false",
                "--profiling=false",
                "--v=1",
            ],
        )
        stages = sorted(self.stages_dir.glob("*.yaml"))
        if not stages:
            raise ControlPlaneError(f"no KWOK stages in {self.stages_dir}: run `bash hack/tools.sh k8s`")
        kwok_home = self.dir / "kwok"
        kwok_home.mkdir()
        self._add(
            "kwok",
            [
                f"--kubeconfig={kwok_config}",
                f"--config={','.join(str(s) for s in stages)}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION[0]}={FAKE_NODE_ANNOTATION[1]}",
                f"--cidr={POD_CIDR}",
                "--node-lease-duration-seconds=40",
            ],
            env={**os.environ, "KWOK_WORKDIR": str(kwok_home), "HOME": str(kwok_home)},
        )

    def _create_nodes(self) -> None:
        with self.http() as client:
            for name in self.node_names:
                resp = client.post("/api/v1/nodes", json=fake_node(name))
                if resp.status_code != 201:
                    raise ControlPlaneError(f"creating node {name}: {resp.status_code} {resp.text}")

    def _wait_ready(self) -> None:
        kcm = self._component("kube-controller-manager")
        scheduler = self._component("kube-scheduler")
        kwok = self._component("kwok")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # their serving certs are self-signed, on loopback

        def healthy(port: int) -> Callable[[], bool]:
            return lambda: httpx.get(f"https://{HOST}:{port}/healthz", verify=ctx, timeout=2).status_code == 200

        self._wait("kube-controller-manager /healthz", healthy(self.kcm_port), kcm)
        self._wait("kube-scheduler /healthz", healthy(self.scheduler_port), scheduler)

        with self.http() as client:

            def default_sa() -> bool:
                return client.get("/api/v1/namespaces/default/serviceaccounts/default").status_code == 200

            def nodes_ready() -> bool:
                """Ready, and without the node lifecycle controller's taints (not-ready, unreachable),
                which it takes off a moment after Ready: until then nothing is scheduled there."""
                items = client.get("/api/v1/nodes").json().get("items", [])
                ready = {
                    n["metadata"]["name"]
                    for n in items
                    if any(
                        c.get("type") == "Ready" and c.get("status") == "True"
                        for c in n.get("status", {}).get("conditions", [])
                    )
                    and not any(
                        t.get("key", "").startswith("node.kubernetes.io/") for t in n.get("spec", {}).get("taints", [])
                    )
                }
                return set(self.node_names) <= ready

            self._wait("the default ServiceAccount (serviceaccount controller)", default_sa, kcm)
            self._wait("fake nodes Ready (kwok)", nodes_ready, kwok)

    def _component(self, name: str) -> Component:
        return next(c for c in self.components if c.name == name)

    def _wait(self, what: str, check: Callable[[], bool], comp: Component) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            for c in self.components:
                if not c.running():
                    raise ControlPlaneError(
                        f"{c.name} exited ({c.process.returncode if c.process else '-'}) while waiting for {what}"
                    )
            try:
                if check():
                    return
            except (OSError, httpx.HTTPError, ValueError, KeyError) as exc:
                last = exc
            time.sleep(0.1)
        raise ControlPlaneError(
            f"timed out after {self.startup_timeout:.0f}s waiting for {what} ({comp.name}; last error: {last!r})"
        )
