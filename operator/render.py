"""Pure functions from a ZotCluster to every child object. Nothing here talks to the API server.

Reused by the kopf handlers, by `zot-operator render` and by local mode, and unit-tested alone.
The StatefulSet and its pod template are built in `statefulset`; names, labels and metadata come from `names`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from .auth import access_control_stanza, auth_stanza, tls_cacert
from .crd import GROUP
from .models import ZotClusterSpec
from .names import (
    ClusterRef,
    ca_secret_name,
    config_map_name,
    hash_key_secret_name,
    headless_service_name,
    object_metadata,
    selector,
    tls_secret_name,
)
from .rebalance_mode import rebalance_mode
from .statefulset import CONFIG_KEY, DATA_DIR, stateful_set
from .sync import sync_stanza

ROLE_LABEL = f"{GROUP}/role"

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
)


# Members -----------------------------------------------------------------------------------------


def member_ordinals(spec: ZotClusterSpec, failed: Iterable[int] = ()) -> list[int]:
    """The ordinals in the member list: every replica but those excluded by hand or by failover."""
    dropped = set(spec.excluded_members) | set(failed)
    ordinals = [i for i in range(spec.replicas) if i not in dropped]
    # Never an empty cluster: if failover would drop everyone, keep the list as the spec says.
    return ordinals or [i for i in range(spec.replicas) if i not in set(spec.excluded_members)]


def member_host(ref: ClusterRef, ordinal: int) -> str:
    domain = ref.spec.cluster_domain
    return f"{ref.name}-{ordinal}.{headless_service_name(ref.name)}.{ref.namespace}.svc.{domain}"


def member_address(ref: ClusterRef, ordinal: int) -> str:
    return f"{member_host(ref, ordinal)}:{ref.spec.port}"


def member_addresses(ref: ClusterRef, failed: Iterable[int] = ()) -> list[str]:
    return [member_address(ref, i) for i in member_ordinals(ref.spec, failed)]


def address_ordinal(ref: ClusterRef, address: str) -> int | None:
    """The ordinal of one of this cluster's member addresses (from a member list); None for another name."""
    pod, _, rest = address.partition(".")
    prefix, _, ordinal = pod.rpartition("-")
    if prefix != ref.name or not ordinal.isdigit() or not rest.startswith(f"{headless_service_name(ref.name)}."):
        return None
    return int(ordinal)


def certificate_hosts(ref: ClusterRef) -> list[str]:
    """Wildcards for the members, so a resize needs no new certificate; both Services by every name."""
    domain, ns, name = ref.spec.cluster_domain, ref.namespace, ref.name
    headless = headless_service_name(name)
    return [
        f"*.{headless}.{ns}.svc.{domain}",
        f"*.{headless}.{ns}.svc",
        f"{headless}.{ns}.svc.{domain}",
        f"{name}.{ns}.svc.{domain}",
        f"{name}.{ns}.svc",
        f"{name}.{ns}",
        name,
        "localhost",
        "127.0.0.1",
    ]


# The zot config ----------------------------------------------------------------------------------


def render_config(ref: ClusterRef, hash_key: str, members: list[str]) -> str:
    spec = ref.spec
    text = _templates.get_template("config.json.j2").render(
        spec=spec,
        members=members,
        hash_key=hash_key,
        root_directory=DATA_DIR,
        sync=sync_stanza(spec),
        auth=auth_stanza(spec),
        tls_cacert=tls_cacert(spec),
        access_control=access_control_stanza(spec),
    )
    # Parse and dump: the template must produce JSON, and one canonical form keeps the checksum stable.
    return json.dumps(json.loads(text), indent=2) + "\n"


def checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def config_checksum(config_text: str, in_place: bool) -> str:
    """The pod template's config checksum: a new one rolls every member. Made in place, a membership change
    reaches the members through their control API, not a restart, so the list is left out of it."""
    if not in_place:
        return checksum(config_text)
    config = json.loads(config_text)
    config.get("cluster", {}).pop("members", None)
    return checksum(json.dumps(config, indent=2) + "\n")


# Children ----------------------------------------------------------------------------------------


def config_map(ref: ClusterRef, config_text: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_metadata(ref, config_map_name(ref.name)),
        "data": {CONFIG_KEY: config_text},
    }


def hash_key_secret(ref: ClusterRef, hash_key: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": object_metadata(ref, hash_key_secret_name(ref)),
        "stringData": {"hashKey": hash_key},
    }


def ca_secret(ref: ClusterRef, cert_pem: bytes, key_pem: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": object_metadata(ref, ca_secret_name(ref.name)),
        "stringData": {"ca.crt": cert_pem.decode(), "ca.key": key_pem.decode()},
    }


def tls_secret(ref: ClusterRef, cert_pem: bytes, key_pem: bytes, ca_pem: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": object_metadata(ref, tls_secret_name(ref)),
        "stringData": {"tls.crt": cert_pem.decode(), "tls.key": key_pem.decode(), "ca.crt": ca_pem.decode()},
    }


def headless_service(ref: ClusterRef) -> dict[str, Any]:
    # The role label lets a ServiceMonitor scrape every member once (the client Service would repeat them).
    meta = object_metadata(ref, headless_service_name(ref.name), extra_labels={ROLE_LABEL: "members"})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector(ref.name),
            "ports": [{"name": "registry", "port": ref.spec.port, "targetPort": "registry"}],
        },
    }


def client_service(ref: ClusterRef) -> dict[str, Any]:
    service = ref.spec.service
    port: dict[str, Any] = {"name": "registry", "port": ref.spec.port, "targetPort": "registry"}
    if service.node_port and service.type != "ClusterIP":
        port["nodePort"] = service.node_port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_metadata(ref, ref.name, annotations=dict(service.annotations) or None),
        "spec": {"type": service.type, "selector": selector(ref.name), "ports": [port]},
    }


def pod_disruption_budget(ref: ClusterRef) -> dict[str, Any] | None:
    pdb = ref.spec.pod_disruption_budget
    if not pdb.enabled:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": object_metadata(ref, ref.name),
        "spec": {"maxUnavailable": pdb.max_unavailable, "selector": {"matchLabels": selector(ref.name)}},
    }


@dataclass
class Rendered:
    """Every child but the Secrets that are generated once (hash key, CA, TLS)."""

    config_text: str
    members: list[str]
    objects: list[dict[str, Any]]
    config_checksum: str


def render(
    ref: ClusterRef,
    hash_key: str,
    failed: Iterable[int] = (),
    secret_versions: dict[str, str] | None = None,
    members: list[str] | None = None,
    replicas: int | None = None,
    secret_keys: Mapping[str, Collection[str]] | None = None,
) -> Rendered:
    """`secret_versions`: resourceVersion of each of `start_secrets`, when the caller read them;
    `secret_keys`: the keys of each Secret whose keys decide its volume's files (spec.sync's certSecrets).
    `members` and `replicas`, while a membership change is made in place: the list the members route by
    until it is done (the spec's comes after), and a StatefulSet that keeps every member of both lists."""
    in_place = rebalance_mode(ref.spec).in_place
    members = members if members is not None else member_addresses(ref, failed)
    config_text = render_config(ref, hash_key, members)
    config_sum = config_checksum(config_text, in_place)
    objects = [
        config_map(ref, config_text),
        headless_service(ref),
        client_service(ref),
        # In place, the list a pod routes by changes without a restart: it is no property of the template
        # (the operator annotates each pod with it instead).
        stateful_set(ref, config_sum, None if in_place else members, secret_versions, replicas, secret_keys),
    ]
    pdb = pod_disruption_budget(ref)
    if pdb:
        objects.append(pdb)
    return Rendered(config_text, members, objects, config_sum)
