"""`spec.sync`: zot's extensions.sync stanza, and the files it names, mounted from Secrets. Pure, like `render`.

The stanza goes into the ConfigMap with paths only. What it points at comes from Secrets, as Secret
volumes of the member container (read-only, mode 0440 for the members' group):

    /etc/zot/sync/credentials/credentials.json   spec.sync.credentialsSecret (its key, renamed)
    /etc/zot/sync/certs/<i>/                     spec.sync.registries[i].certSecret: ca.crt, client.cert, client.key
    /var/lib/zot-sync                            with storage mode s3: an emptyDir, zot's downloadDir

A certSecret's keys decide which files its certDir holds (`cert_items`): ca.crt as it is, and a client
certificate as client.cert / client.key, or as tls.crt / tls.key (a kubernetes.io/tls Secret, cert-manager's),
mounted under zot's names. The operator reads those Secrets anyway (`secret_steps.check_referenced_secrets`),
and the members read the files only when they start: their resourceVersions roll the members (`start_secrets`).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from .models import ZotClusterSpec

SYNC_DIR = "/etc/zot/sync"
CREDENTIALS_DIR = f"{SYNC_DIR}/credentials"
CREDENTIALS_FILE = "credentials.json"
CERTS_DIR = f"{SYNC_DIR}/certs"
# zot's downloadDir, which it needs with remote storage (S3): where a member stages what it syncs.
DOWNLOAD_DIR = "/var/lib/zot-sync"

CA_FILE, CLIENT_CERT_FILE, CLIENT_KEY_FILE = "ca.crt", "client.cert", "client.key"
# A client certificate under zot's names, or a kubernetes.io/tls Secret's: the first complete pair is used.
CLIENT_PAIRS = ((CLIENT_CERT_FILE, CLIENT_KEY_FILE), ("tls.crt", "tls.key"))
# What a certSecret holds when its keys are not known (`zot-operator render`, without an API server).
ASSUMED_CERT_KEYS = frozenset({CA_FILE})

CREDENTIALS_VOLUME = "sync-credentials"
DOWNLOAD_VOLUME = "sync-download"
_SECRET_MODE = 0o440  # the members' group (fsGroup), as the htpasswd and TLS volumes


def cert_dir(index: int) -> str:
    return f"{CERTS_DIR}/{index}"


def cert_volume(index: int) -> str:
    return f"sync-certs-{index}"


def download_dir(spec: ZotClusterSpec) -> str | None:
    """zot's downloadDir: required with remote storage, where each member stages on an emptyDir; with storage
    local to each member, none (zot stages beside the repository, on the member's volume)."""
    return DOWNLOAD_DIR if spec.sync and spec.storage.mode == "s3" else None


def sync_stanza(spec: ZotClusterSpec) -> dict[str, Any] | None:
    """zot's extensions.sync for `spec`, or None without spec.sync. Paths only: no Secret's value."""
    if spec.sync is None:
        return None
    stanza: dict[str, Any] = {"enable": True}
    if spec.sync.credentials_secret is not None:
        stanza["credentialsFile"] = f"{CREDENTIALS_DIR}/{CREDENTIALS_FILE}"
    downloads = download_dir(spec)
    if downloads is not None:
        stanza["downloadDir"] = downloads
    stanza["registries"] = [
        registry.zot_stanza(cert_dir(index) if registry.cert_secret else None)
        for index, registry in enumerate(spec.sync.registries)
    ]
    return stanza


# The Secrets --------------------------------------------------------------------------------------


def cert_problem(keys: Collection[str]) -> str | None:
    """What keeps a certSecret with `keys` from being a certDir, in words that name keys only."""
    for cert, key in CLIENT_PAIRS:
        if (cert in keys) != (key in keys):
            has, lacks = (cert, key) if cert in keys else (key, cert)
            return f"has {has} without {lacks}: a client certificate needs both"
    if CA_FILE not in keys and not any(cert in keys for cert, _ in CLIENT_PAIRS):
        return (
            f"holds none of the keys of a certDir: {CA_FILE} (a CA bundle), or a client certificate as "
            f"{CLIENT_CERT_FILE} and {CLIENT_KEY_FILE} (or tls.crt and tls.key)"
        )
    return None


def cert_items(keys: Collection[str]) -> list[dict[str, str]]:
    """The Secret volume's items for a certSecret with `keys`: each key to its file in zot's certDir."""
    items = [{"key": CA_FILE, "path": CA_FILE}] if CA_FILE in keys else []
    pair = next(((cert, key) for cert, key in CLIENT_PAIRS if cert in keys and key in keys), None)
    if pair is not None:
        items += [{"key": pair[0], "path": CLIENT_CERT_FILE}, {"key": pair[1], "path": CLIENT_KEY_FILE}]
    return items


def credentials_problem(data: bytes) -> str | None:
    """What keeps `data` from being a sync credentials file the members load (zot's JSON, as
    zot_registry.config.load_credentials reads it), in words that quote no value: the operator says it
    in the status and an event, where a password must not appear."""
    example = 'a JSON object {"host:port": {"username": "...", "password": "..."}}'
    try:
        parsed = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return f"is not JSON: a credentials file is {example}"
    if not isinstance(parsed, dict):
        return f"is not {example}"
    seen: set[str] = set()
    for host, entry in parsed.items():
        if not host.strip() or "://" in host:
            return f"names a registry {json.dumps(host)}: write each as host:port, without a scheme"
        if host.lower() in seen:
            return f"names the registry {json.dumps(host)} twice (registry names are case-insensitive)"
        seen.add(host.lower())
        fields = {str(name).lower(): value for name, value in entry.items()} if isinstance(entry, dict) else {}
        if (
            not isinstance(entry, dict)
            or len(fields) != len(entry)
            or set(fields) != {"username", "password"}
            or not all(isinstance(value, str) for value in fields.values())
        ):
            return f"registry {json.dumps(host)}: needs a username and a password, both strings, and nothing else"
    return None


def sync_secrets(spec: ZotClusterSpec) -> list[str]:
    """The Secrets spec.sync mounts: the members read them when they start."""
    if spec.sync is None:
        return []
    names = [r.cert_secret.name for r in spec.sync.registries if r.cert_secret]
    if spec.sync.credentials_secret:
        names.append(spec.sync.credentials_secret.name)
    return names


# The volumes --------------------------------------------------------------------------------------


def sync_volumes(
    spec: ZotClusterSpec, secret_keys: Mapping[str, Collection[str]] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The member pod's volumes for spec.sync and the member container's mounts of them. `secret_keys`: the
    keys of each certSecret, as the operator read them (unknown: ASSUMED_CERT_KEYS)."""
    if spec.sync is None:
        return [], []
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    credentials = spec.sync.credentials_secret
    if credentials is not None:
        items = [{"key": credentials.key, "path": CREDENTIALS_FILE}]
        volumes.append(_secret_volume(CREDENTIALS_VOLUME, credentials.name, items))
        mounts.append({"name": CREDENTIALS_VOLUME, "mountPath": CREDENTIALS_DIR, "readOnly": True})
    for index, registry in enumerate(spec.sync.registries):
        if registry.cert_secret is None:
            continue
        keys = (secret_keys or {}).get(registry.cert_secret.name, ASSUMED_CERT_KEYS)
        volumes.append(_secret_volume(cert_volume(index), registry.cert_secret.name, cert_items(keys)))
        mounts.append({"name": cert_volume(index), "mountPath": cert_dir(index), "readOnly": True})
    downloads = download_dir(spec)
    if downloads is not None:
        volumes.append({"name": DOWNLOAD_VOLUME, "emptyDir": {}})
        mounts.append({"name": DOWNLOAD_VOLUME, "mountPath": downloads})
    return volumes, mounts


def _secret_volume(name: str, secret: str, items: list[dict[str, str]]) -> dict[str, Any]:
    return {"name": name, "secret": {"secretName": secret, "defaultMode": _SECRET_MODE, "items": items}}
