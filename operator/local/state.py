"""The state folder of a local cluster: everything the operator would keep in Secrets and volumes.

Layout (default `.zot-local/<name>`, kept between runs so data, key and CA survive restarts):

    hashkey                    16 bytes, generated once (the operator's `<name>-hashkey` Secret)
    tls/ca.crt ca.key          the CA (`<name>-ca`); tls/tls.crt tls.key the server cert (`<name>-tls`)
    client-certs/ca.crt        only the CA: a `--dest-cert-dir` for skopeo, or a docker certs.d folder
    auth/htpasswd              from the manifest's Secret, or generated for `admin`
    auth/admin-password        the generated password (0600), printed on every start
    sync/credentials.json      spec.sync.credentialsSecret, from the manifest's Secret
    ldap/credentials.json      zot's LDAP credentials file: spec.auth.ldap.bindDN and the manifest's bindPasswordSecret
    ldap/ca.crt, mtls/ca.crt   spec.auth.ldap.caSecret and spec.auth.mtls.caSecret, from the manifest's Secrets
    sync/certs/<i>/            spec.sync.registries[i].certSecret as zot's certDir, from the manifest's Secret
    config.json                the operator's config.json (the ConfigMap) with local member addresses
    members/member-<i>.json    that config with member i's address and paths under this folder
    data/member-<i>/           member i's storage root; logs/member-<i>.log its log
    sample-image/              a one-file OCI image layout (tag v1), the source of the push `local up` prints
    state.json                 written by the supervisor: pid, phase, members, progress
    desired.json               written by `local scale`: the replicas wanted
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import psutil
from zot_registry.cluster.hashing import new_hash_key
from zot_registry.local.addresses import member_address

from ..auth import (
    BIND_PASSWORD_PROBLEM,
    CA_FILE,
    LDAP_CA_DIR,
    LDAP_CREDENTIALS_DIR,
    LDAP_CREDENTIALS_FILE,
    MTLS_DIR,
    bind_password,
    ca_problem,
    ldap_credentials_file,
)
from ..models import ZotClusterSpec
from ..names import ClusterRef
from ..render import certificate_hosts, member_ordinals, render_config
from ..sync import CERTS_DIR, CREDENTIALS_DIR, CREDENTIALS_FILE, cert_items, cert_problem, credentials_problem
from ..tls_secrets import plan_tls
from .manifest import Manifest, ManifestError
from .sample_image import write_sample_image

ADMIN = "admin"
_PASSWORD_ALPHABET = string.ascii_letters + string.digits


def default_dir(name: str) -> Path:
    return Path(".zot-local") / name


def write_private(path: Path, data: bytes) -> None:
    """Atomically, readable by the owner only (keys and passwords)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def write_json(path: Path, value: dict[str, Any]) -> None:
    """Atomically (temporary file, rename): the other command reads these files while they change."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(temporary, path)


def read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def local_members(spec: ZotClusterSpec) -> list[tuple[int, str]]:
    """(ordinal, host:port) of every member in the list: ordinal i runs on 127.0.0.(i+1), so an
    ordinal keeps its address and its data folder across resizes, as a StatefulSet pod keeps its name."""
    try:
        return [(i, f"{member_address(i)}:{spec.port}") for i in member_ordinals(spec)]
    except ValueError:
        raise ManifestError("spec.replicas: local mode runs at most 254 members (127.0.0.1 to 127.0.0.254)") from None


@dataclass
class Credentials:
    user: str
    password: str | None  # None when the htpasswd came from the manifest (we cannot know it)
    source: str  # where the htpasswd came from, for the user


@dataclass
class LocalLayout:
    folder: Path
    ref: ClusterRef
    members: list[str]  # host:port, the cluster.members of every member
    ordinals: list[int]
    configs: list[Path]
    hash_key: str
    credentials: Credentials | None
    tls_reissued: bool

    @property
    def ca(self) -> Path:
        return self.folder / "tls" / "ca.crt"

    @property
    def client_certs(self) -> Path:
        return self.folder / "client-certs"

    def url(self, index: int) -> str:
        return f"https://{self.members[index]}"

    def log(self, ordinal: int) -> Path:
        return self.folder / "logs" / f"member-{ordinal}.log"


def _hash_key(folder: Path, manifest: Manifest) -> str:
    """The manifest's hash key Secret when it has one, else the key kept in the folder (made once)."""
    spec = manifest.ref.spec
    key_file = folder / "hashkey"
    if spec.hash_key_secret and spec.hash_key_secret in manifest.secrets:
        given = manifest.secrets[spec.hash_key_secret].get("hashKey")
        if given is None or len(given) != 16:
            raise ManifestError(f"Secret {spec.hash_key_secret}: key hashKey must hold exactly 16 bytes")
        write_private(key_file, given)
    elif not key_file.exists():
        write_private(key_file, new_hash_key().encode())
    key = key_file.read_bytes().strip()
    if len(key) != 16:
        raise ManifestError(
            f"{key_file}: the hash key must be 16 bytes; remove the file to generate a new one "
            "(every repository then changes owner)"
        )
    return key.decode()


def _htpasswd(folder: Path, manifest: Manifest) -> Credentials | None:
    spec = manifest.ref.spec
    if not (spec.auth and spec.auth.htpasswd):
        return None
    ref = spec.auth.htpasswd
    path, password_file = folder / "auth" / "htpasswd", folder / "auth" / "admin-password"
    if ref.secret_name in manifest.secrets:
        if ref.key not in manifest.secrets[ref.secret_name]:
            raise ManifestError(
                f"Secret {ref.secret_name} has no key {ref.key!r} "
                f"(spec.auth.htpasswd.key); it has: {sorted(manifest.secrets[ref.secret_name])}"
            )
        content = manifest.secrets[ref.secret_name][ref.key]
        write_private(path, content)
        password_file.unlink(missing_ok=True)
        first = content.decode(errors="replace").strip().splitlines()[:1]
        return Credentials(
            first[0].split(":", 1)[0] if first else ADMIN,
            None,
            f"htpasswd from Secret {ref.secret_name} in the manifest",
        )
    # The Secret is not in the file: as a first try needs no setup, make one user with a random password.
    if not (path.exists() and password_file.exists()):
        password = "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(20))
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
        write_private(path, f"{ADMIN}:{hashed}\n".encode())
        write_private(password_file, password.encode())
    return Credentials(
        ADMIN,
        password_file.read_text().strip(),
        f"generated, as Secret {ref.secret_name} is not in the manifest; kept in {password_file}",
    )


def _tls(folder: Path, manifest: Manifest, hosts: list[str]) -> bool:
    """The operator's CA and server certificate (plan_tls), kept in tls/; True when one was (re)issued."""
    spec, tls = manifest.ref.spec, folder / "tls"
    if spec.tls.mode == "secret":
        name = spec.tls.secret_name or ""
        given = manifest.secrets.get(name)
        if given is None or not all(k in given for k in ("tls.crt", "tls.key", "ca.crt")):
            raise ManifestError(
                f"spec.tls.mode is secret: local mode needs Secret {name!r} with keys tls.crt, "
                "tls.key and ca.crt in the same file"
            )
        for key in ("tls.crt", "tls.key", "ca.crt"):
            write_private(tls / key, given[key])
        return False

    existing = {
        key: (tls / key).read_bytes() for key in ("ca.crt", "ca.key", "tls.crt", "tls.key") if (tls / key).exists()
    }
    ca: dict[str, bytes] = {k: existing[k] for k in ("ca.crt", "ca.key") if k in existing}
    server: dict[str, bytes] = {k: existing[k] for k in ("tls.crt", "tls.key", "ca.crt") if k in existing}
    material = plan_tls(ca, server, hosts)
    if material.ca_changed:
        write_private(tls / "ca.crt", material.ca.cert_pem)
        write_private(tls / "ca.key", material.ca.key_pem)
    if material.server_changed:
        write_private(tls / "tls.crt", material.server.cert_pem)
        write_private(tls / "tls.key", material.server.key_pem)
    return material.ca_changed or material.server_changed


def _sync_files(folder: Path, manifest: Manifest) -> None:
    """spec.sync's credentials file and certDirs from the manifest's Secrets, as the operator mounts them;
    written anew on each start (a key the Secret no longer has leaves no file behind)."""
    shutil.rmtree(folder / "sync", ignore_errors=True)
    sync = manifest.ref.spec.sync
    if sync is None:
        return
    credentials = sync.credentials_secret
    if credentials is not None:
        given = manifest.secrets.get(credentials.name, {})
        if credentials.key not in given:
            raise ManifestError(
                f"spec.sync.credentialsSecret: local mode needs Secret {credentials.name!r} with key "
                f"{credentials.key!r} in the same file"
            )
        problem = credentials_problem(given[credentials.key])
        if problem:
            where = f"Secret {credentials.name} key {credentials.key} (spec.sync.credentialsSecret)"
            raise ManifestError(f"{where} {problem}")
        write_private(folder / "sync" / CREDENTIALS_FILE, given[credentials.key])
    for index, registry in enumerate(sync.registries):
        if registry.cert_secret is None:
            continue
        name, where = registry.cert_secret.name, f"spec.sync.registries[{index}].certSecret"
        if name not in manifest.secrets:
            raise ManifestError(f"{where}: local mode needs Secret {name!r} in the same file")
        problem = cert_problem(manifest.secrets[name])
        if problem:
            raise ManifestError(f"Secret {name} ({where}) {problem}")
        for item in cert_items(manifest.secrets[name]):
            write_private(folder / "sync" / "certs" / str(index) / item["path"], manifest.secrets[name][item["key"]])


def _auth_files(folder: Path, manifest: Manifest) -> None:
    """spec.auth's files but the htpasswd (`_htpasswd`) from the manifest's Secrets, as the operator mounts
    them: the LDAP credentials file (the operator's <name>-ldap-credentials) and the CAs; written anew on
    each start."""
    for sub in ("ldap", "mtls"):
        shutil.rmtree(folder / sub, ignore_errors=True)
    auth = manifest.ref.spec.auth
    if auth is None:
        return

    def value(name: str, key: str, where: str) -> bytes:
        given = manifest.secrets.get(name, {})
        if key not in given:
            raise ManifestError(f"{where}: local mode needs Secret {name!r} with key {key!r} in the same file")
        return given[key]

    if auth.ldap is not None and auth.ldap.bind_dn is not None and auth.ldap.bind_password_secret is not None:
        source, where = auth.ldap.bind_password_secret, "spec.auth.ldap.bindPasswordSecret"
        password = bind_password(value(source.name, source.key, where))
        if password is None:
            raise ManifestError(f"Secret {source.name} key {source.key} ({where}) {BIND_PASSWORD_PROBLEM}")
        write_private(folder / "ldap" / LDAP_CREDENTIALS_FILE, ldap_credentials_file(auth.ldap.bind_dn, password))
    for ca, sub, where in (
        (auth.ldap.ca_secret if auth.ldap else None, "ldap", "spec.auth.ldap.caSecret"),
        (auth.mtls.ca_secret if auth.mtls else None, "mtls", "spec.auth.mtls.caSecret"),
    ):
        if ca is None:
            continue
        data = value(ca.name, ca.key, where)
        problem = ca_problem(data)
        if problem:
            raise ManifestError(f"Secret {ca.name} key {ca.key} ({where}) {problem}")
        write_private(folder / sub / CA_FILE, data)


def _member_config(base: dict[str, Any], folder: Path, ordinal: int) -> dict[str, Any]:
    """The operator's config with what differs on one machine: the member's own address (the pod's
    IP), and the mounts of the pod (/etc/zot/..., /var/lib/zot) as paths in the state folder."""
    config = json.loads(json.dumps(base))
    config["storage"]["rootDirectory"] = str(folder / "data" / f"member-{ordinal}")
    http = config["http"]
    http["address"] = member_address(ordinal)
    if "tls" in http:
        http["tls"].update(cert=str(folder / "tls" / "tls.crt"), key=str(folder / "tls" / "tls.key"))
        if "cacert" in http["tls"]:
            http["tls"]["cacert"] = http["tls"]["cacert"].replace(MTLS_DIR, str(folder / "mtls"), 1)
    auth = http.get("auth", {})
    if "htpasswd" in auth:
        auth["htpasswd"]["path"] = str(folder / "auth" / "htpasswd")
    ldap = auth.get("ldap", {})
    if "credentialsFile" in ldap:
        ldap["credentialsFile"] = ldap["credentialsFile"].replace(LDAP_CREDENTIALS_DIR, str(folder / "ldap"), 1)
    if "caCert" in ldap:
        ldap["caCert"] = ldap["caCert"].replace(LDAP_CA_DIR, str(folder / "ldap"), 1)
    config["log"]["output"] = str(folder / "logs" / f"member-{ordinal}.log")
    if "tls" in config.get("cluster", {}):
        config["cluster"]["tls"]["cacert"] = str(folder / "tls" / "ca.crt")
    sync = config.get("extensions", {}).get("sync")
    if sync is not None:
        if "credentialsFile" in sync:
            sync["credentialsFile"] = sync["credentialsFile"].replace(CREDENTIALS_DIR, str(folder / "sync"), 1)
        for registry in sync["registries"]:
            if "certDir" in registry:
                registry["certDir"] = registry["certDir"].replace(CERTS_DIR, str(folder / "sync" / "certs"), 1)
    return config


def prepare(folder: Path, manifest: Manifest, routed: list[str] | None = None) -> LocalLayout:
    """Write key, TLS material, htpasswd and every member's config for `manifest` into `folder`.

    `routed`: the member list written into the configs, when it is not yet the manifest's (a change
    made in place: every member, the new ones too, starts with the list the cluster routes by, as a
    new pod starts with the ConfigMap of the moment)."""
    spec = manifest.ref.spec
    if spec.storage.mode != "local":
        raise ManifestError(
            "spec.storage.mode: local mode runs storage mode local only "
            "(each member keeps its repositories in the state folder)"
        )
    folder = folder.absolute()
    for sub in ("data", "logs", "members", "client-certs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    write_sample_image(folder)
    placed = local_members(spec)
    ordinals, members = [o for o, _ in placed], [m for _, m in placed]
    hash_key = _hash_key(folder, manifest)
    credentials = _htpasswd(folder, manifest)
    _sync_files(folder, manifest)
    _auth_files(folder, manifest)
    hosts = [*certificate_hosts(manifest.ref), *(member_address(o) for o in ordinals)]
    reissued = _tls(folder, manifest, list(dict.fromkeys(hosts)))
    (folder / "client-certs" / "ca.crt").write_bytes((folder / "tls" / "ca.crt").read_bytes())
    config_text = render_config(manifest.ref, hash_key, routed or members)
    (folder / "config.json").write_text(config_text)
    base = json.loads(config_text)
    configs: list[Path] = []
    for ordinal in ordinals:
        path = folder / "members" / f"member-{ordinal}.json"
        write_json(path, _member_config(base, folder, ordinal))
        configs.append(path)
    return LocalLayout(folder, manifest.ref, members, ordinals, configs, hash_key, credentials, reissued)


def supervisor_pid(folder: Path) -> int | None:
    """The pid of the `local up` that runs this folder, if it still runs."""
    pid = read_json(folder / "state.json").get("pid")
    if not isinstance(pid, int):
        return None
    try:
        cmdline = " ".join(psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    # A reused pid of another program is not our supervisor.
    return pid if "zot" in cmdline and "local" in cmdline else None
