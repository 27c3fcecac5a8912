"""The Secret steps of a reconciliation: make the hash key and the TLS Secrets once, and check that every
Secret the spec names exists with its keys. A Secret that only a user can provide is never created: its
absence raises `Degraded`, which the reconciliation turns into status and an event.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zot_registry.certs import KeyPair
from zot_registry.cluster.hashing import new_hash_key

from .auth import (
    BIND_PASSWORD_PROBLEM,
    LDAP_CREDENTIALS_FILE,
    bind_password,
    ca_problem,
    ldap_credentials_secret,
    shares_certificate,
)
from .kube import Kube, is_subset
from .names import ClusterRef, ca_secret_name, hash_key_secret_name, ldap_credentials_secret_name, tls_secret_name
from .render import ca_secret, certificate_hosts, hash_key_secret, tls_secret
from .statefulset import start_secrets
from .sync import cert_problem, credentials_problem
from .tls_secrets import plan_tls

Event = Callable[[str, str, str], None]  # (type Normal/Warning, reason, message)


class Degraded(Exception):
    """A step cannot go on until a user acts (a Secret is missing or wrong); nothing is deleted."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def decode_secret_data(data: dict[str, str] | None) -> dict[str, bytes]:
    return {key: base64.b64decode(value) for key, value in (data or {}).items()}


def ensure_hash_key(kube: Kube, ref: ClusterRef, event: Event) -> str:
    name = hash_key_secret_name(ref)
    secret = kube.get("Secret", ref.namespace, name)
    if secret is None:
        if ref.spec.hash_key_secret:
            raise Degraded("HashKeySecretMissing", f"Secret {name} (spec.hashKeySecret) does not exist")
        key = new_hash_key()
        kube.create(hash_key_secret(ref, key))
        event("Normal", "HashKeyCreated", f"generated the routing hash key in Secret {name}")
        return key
    value = decode_secret_data(secret.get("data")).get("hashKey", b"")
    if len(value) != 16:
        raise Degraded("HashKeyInvalid", f"Secret {name} key hashKey must hold exactly 16 bytes, has {len(value)}")
    return value.decode("latin-1")


def ensure_tls(kube: Kube, ref: ClusterRef, event: Event, now: datetime.datetime) -> KeyPair | None:
    """The cluster CA the operator keeps (with its key: the operator authenticates to the members' control
    API with it), after writing what must be; None with tls mode secret, where it holds no CA."""
    if ref.spec.tls.mode == "secret":
        name = tls_secret_name(ref)
        secret = kube.get("Secret", ref.namespace, name)
        keys = set((secret or {}).get("data") or {})
        if secret is None or not {"tls.crt", "tls.key", "ca.crt"} <= keys:
            raise Degraded(
                "TLSSecretMissing",
                f"Secret {name} (spec.tls.secretName) must exist with keys tls.crt, tls.key and ca.crt",
            )
        return None
    ca = kube.get("Secret", ref.namespace, ca_secret_name(ref.name))
    server = kube.get("Secret", ref.namespace, tls_secret_name(ref))
    plan = plan_tls(
        decode_secret_data((ca or {}).get("data")),
        decode_secret_data((server or {}).get("data")),
        certificate_hosts(ref),
        now,
    )
    for changed, existing, body, what in (
        (plan.ca_changed, ca, ca_secret(ref, plan.ca.cert_pem, plan.ca.key_pem), "cluster CA"),
        (
            plan.server_changed,
            server,
            tls_secret(ref, plan.server.cert_pem, plan.server.key_pem, plan.ca.cert_pem),
            "server certificate",
        ),
    ):
        if not changed:
            continue
        if existing is None:
            kube.create(body)
            event("Normal", "CertificateCreated", f"created the {what} in Secret {body['metadata']['name']}")
        else:
            kube.patch("Secret", ref.namespace, body["metadata"]["name"], {"stringData": body["stringData"]})
            event("Normal", "CertificateRenewed", f"renewed the {what} in Secret {body['metadata']['name']}")
    return plan.ca


@dataclass(frozen=True)
class ReferencedSecrets:
    """What the check of the referenced Secrets read that rendering needs (never a value)."""

    versions: dict[str, str]  # resourceVersion of each Secret the members read only at start (`start_secrets`)
    keys: dict[str, frozenset[str]]  # the keys of each Secret whose keys decide its volume (sync certSecrets)


def check_referenced_secrets(kube: Kube, ref: ClusterRef) -> ReferencedSecrets:
    """Every Secret the pods would mount or read must exist with its keys, or no pod could start; and what
    the members would refuse at start (a sync credentials file that is not one) is found here first."""
    spec = ref.spec
    wanted: list[tuple[str, str, str, str]] = []  # (secret, key, spec field, reason)
    if spec.auth and spec.auth.htpasswd:
        wanted.append(
            (spec.auth.htpasswd.secret_name, spec.auth.htpasswd.key, "spec.auth.htpasswd", "HtpasswdSecretMissing")
        )
    if spec.storage.mode == "s3" and spec.storage.s3 and spec.storage.s3.credentials_secret:
        for key in ("accessKey", "secretKey"):
            wanted.append(
                (
                    spec.storage.s3.credentials_secret,
                    key,
                    "spec.storage.s3.credentialsSecret",
                    "S3CredentialsSecretMissing",
                )
            )
    if spec.cache and spec.cache.redis and spec.cache.redis.url_secret:
        url = spec.cache.redis.url_secret
        wanted.append((url.name, url.key, "spec.cache.redis.urlSecret", "RedisURLSecretMissing"))
    auth = spec.auth
    cas: list[tuple[str, str, str, str]] = []  # (secret, key, spec field, reason prefix): PEM CA certificates
    if auth and auth.ldap and auth.ldap.bind_password_secret:
        bind = auth.ldap.bind_password_secret
        wanted.append((bind.name, bind.key, "spec.auth.ldap.bindPasswordSecret", "LDAPBindPasswordSecretMissing"))
    if auth and auth.ldap and auth.ldap.ca_secret:
        cas.append((auth.ldap.ca_secret.name, auth.ldap.ca_secret.key, "spec.auth.ldap.caSecret", "LDAPCASecret"))
    if auth and auth.mtls:
        cas.append((auth.mtls.ca_secret.name, auth.mtls.ca_secret.key, "spec.auth.mtls.caSecret", "MTLSCASecret"))
    wanted += [(name, key, spec_field, f"{reason}Missing") for name, key, spec_field, reason in cas]
    sync_credentials = spec.sync.credentials_secret if spec.sync else None
    if sync_credentials:
        wanted.append(
            (sync_credentials.name, sync_credentials.key, "spec.sync.credentialsSecret", "SyncCredentialsSecretMissing")
        )
    secrets: dict[str, dict[str, Any] | None] = {}

    def read(name: str) -> dict[str, Any] | None:
        if name not in secrets:
            secrets[name] = kube.get("Secret", ref.namespace, name)
        return secrets[name]

    for name, key, spec_field, reason in wanted:
        secret = read(name)
        if secret is None or key not in (secret.get("data") or {}):
            raise Degraded(reason, f"Secret {name} with key {key} ({spec_field}) does not exist")
    # A CA the members cannot load stops them at start (zot: "failed to append certs from pem"): said here first.
    for name, key, spec_field, reason in cas:
        problem = ca_problem(decode_secret_data((read(name) or {}).get("data"))[key])
        if problem:
            raise Degraded(f"{reason}Invalid", f"Secret {name} key {key} ({spec_field}) {problem}")
    if auth and auth.mtls:
        _check_users_ca(ref, auth.mtls.ca_secret.name, auth.mtls.ca_secret.key, read)
    if sync_credentials:
        data = decode_secret_data((read(sync_credentials.name) or {}).get("data"))
        problem = credentials_problem(data[sync_credentials.key])
        if problem:
            raise Degraded(
                "SyncCredentialsInvalid",
                f"Secret {sync_credentials.name} key {sync_credentials.key} (spec.sync.credentialsSecret) {problem}",
            )
    keys: dict[str, frozenset[str]] = {}
    for index, registry in enumerate(spec.sync.registries if spec.sync else []):
        if registry.cert_secret is None:
            continue
        name, spec_field = registry.cert_secret.name, f"spec.sync.registries[{index}].certSecret"
        secret = read(name)
        if secret is None:
            raise Degraded("SyncCertSecretMissing", f"Secret {name} ({spec_field}) does not exist")
        keys[name] = frozenset(secret.get("data") or {})
        problem = cert_problem(keys[name])
        if problem:
            raise Degraded("SyncCertSecretInvalid", f"Secret {name} ({spec_field}) {problem}")
    versions = {
        name: str((secrets[name] or {}).get("metadata", {}).get("resourceVersion", ""))
        for name in start_secrets(spec)
        if name in secrets
    }
    return ReferencedSecrets(versions, keys)


def _check_users_ca(ref: ClusterRef, name: str, key: str, read: Callable[[str], dict[str, Any] | None]) -> None:
    """The mTLS CA must not be the cluster's (`auth.shares_certificate`); the cluster CA is <name>-ca's with
    managed TLS (none yet on a first pass: the one made then is new), else the TLS Secret's ca.crt."""
    cluster = ca_secret_name(ref.name) if ref.spec.tls.mode == "managed" else tls_secret_name(ref)
    cluster_ca = decode_secret_data((read(cluster) or {}).get("data")).get("ca.crt")
    users_ca = decode_secret_data((read(name) or {}).get("data"))[key]
    if cluster_ca and shares_certificate(users_ca, cluster_ca):
        raise Degraded(
            "MTLSCASecretInvalid",
            f"Secret {name} key {key} (spec.auth.mtls.caSecret) holds the cluster CA (Secret {cluster}), which "
            "issues the members' certificates: users' client certificates need a CA of their own",
        )


def _owned_by(secret: dict[str, Any], ref: ClusterRef) -> bool:
    owners = (secret.get("metadata") or {}).get("ownerReferences") or []
    return any(owner.get("uid") == ref.uid for owner in owners)


def ensure_ldap_credentials(kube: Kube, ref: ClusterRef, event: Event) -> dict[str, str]:
    """zot's LDAP credentials file, {"bindDN", "bindPassword"}, in the operator's Secret <name>-ldap-credentials
    (auth.py says why), from spec.auth.ldap.bindDN and the user's bindPasswordSecret; written only when it
    differs. Returns that Secret's resourceVersion by name, for the pod template (the members read the file
    when they start); nothing without a bind DN. Reads the user's Secret itself: `check_referenced_secrets`
    keeps no value, and found it there already."""
    ldap = ref.spec.auth.ldap if ref.spec.auth else None
    if ldap is None or ldap.bind_password_secret is None:
        return {}
    source, spec_field = ldap.bind_password_secret, "spec.auth.ldap.bindPasswordSecret"
    value = decode_secret_data((kube.get("Secret", ref.namespace, source.name) or {}).get("data")).get(source.key)
    if value is None:  # deleted since the check
        raise Degraded(
            "LDAPBindPasswordSecretMissing", f"Secret {source.name} with key {source.key} ({spec_field}) does not exist"
        )
    password = bind_password(value)
    if password is None:
        raise Degraded(
            "LDAPBindPasswordInvalid", f"Secret {source.name} key {source.key} ({spec_field}) {BIND_PASSWORD_PROBLEM}"
        )
    body = ldap_credentials_secret(ref, password)
    name = body["metadata"]["name"]
    existing = kube.get("Secret", ref.namespace, name)
    if existing is None:
        created = kube.create(body)
        event("Normal", "Created", f"created Secret {name} (the LDAP credentials file of the members)")
        return {name: _version(created)}
    if ref.uid and not _owned_by(existing, ref):
        # A Secret of the user's that happens to have this name: never overwritten.
        raise Degraded(
            "LDAPCredentialsSecretConflict",
            f"Secret {name} exists and is not this ZotCluster's: the operator keeps the members' LDAP credentials "
            "file there; rename or delete that Secret",
        )
    meta = {k: v for k, v in body["metadata"].items() if k in ("labels", "ownerReferences")}
    wanted = {"metadata": meta, "data": body["data"]}
    if is_subset(wanted, existing) and set(existing.get("data") or {}) == {LDAP_CREDENTIALS_FILE}:
        return {name: _version(existing)}
    # Keys of the Secret's other than the file's are removed (null, in a merge patch): only the file is mounted.
    patch = {"metadata": meta, "data": {**{k: None for k in existing.get("data") or {}}, **body["data"]}}
    patched = kube.patch("Secret", ref.namespace, name, patch)
    event("Normal", "Updated", f"updated Secret {name} (the LDAP credentials file of the members)")
    return {name: _version(patched)}


def forget_ldap_credentials(kube: Kube, ref: ClusterRef, event: Event) -> list[str]:
    """Without a bind DN in the spec (any more), the operator's credentials Secret is deleted: no password
    stays behind. Called after the children are written, so that no pod template still mounts it."""
    ldap = ref.spec.auth.ldap if ref.spec.auth else None
    if (ldap is not None and ldap.bind_password_secret is not None) or not ref.uid:
        return []
    name = ldap_credentials_secret_name(ref.name)
    existing = kube.get("Secret", ref.namespace, name)
    if existing is None or not _owned_by(existing, ref):
        return []
    kube.delete("Secret", ref.namespace, name)
    event("Normal", "Deleted", f"deleted Secret {name}: spec.auth.ldap has no bindDN any more")
    return [f"deleted Secret {name}"]


def _version(secret: dict[str, Any]) -> str:
    return str((secret.get("metadata") or {}).get("resourceVersion", ""))
