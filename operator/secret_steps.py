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

from .kube import Kube
from .names import ClusterRef, ca_secret_name, hash_key_secret_name, tls_secret_name
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
