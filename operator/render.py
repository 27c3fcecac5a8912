"""Pure functions from a ZotCluster to every child object. Nothing here talks to the API server.

Reused by the kopf handlers, by `zot-operator render` and by local mode, and unit-tested alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from .crd import GROUP, KIND, VERSION
from .materialize import secret_values
from .models import ZotClusterSpec

CONFIG_KEY = "config.json"
CONFIG_MOUNT = "/etc/zot/config.json"
# When the config takes values from Secrets: the ConfigMap's config (without them) is mounted in the
# init container only, which writes the complete config into an in-memory volume for the member.
TEMPLATE_DIR = "/etc/zot/template"
RUNTIME_DIR = "/etc/zot/runtime"
RUNTIME_CONFIG = f"{RUNTIME_DIR}/{CONFIG_KEY}"
DATA_DIR = "/var/lib/zot"
CHECKSUM_ANNOTATION = f"{GROUP}/config-checksum"
MEMBERS_ANNOTATION = f"{GROUP}/members"
SECRETS_ANNOTATION = f"{GROUP}/secret-versions"
ROLE_LABEL = f"{GROUP}/role"
RUN_AS = 10001
# The environment variables the registry reads its credentials from (AWS's standard names for S3 and DynamoDB).
AWS_ACCESS_KEY_ENV = "AWS_ACCESS_KEY_ID"
AWS_SECRET_KEY_ENV = "AWS_SECRET_ACCESS_KEY"

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class ClusterRef:
    """Identity of the ZotCluster that owns the children."""

    name: str
    namespace: str
    uid: str = ""
    spec: ZotClusterSpec = field(default_factory=ZotClusterSpec)

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


# Names -------------------------------------------------------------------------------------------


def headless_service_name(name: str) -> str:
    return f"{name}-members"


def config_map_name(name: str) -> str:
    return f"{name}-config"


def hash_key_secret_name(ref: ClusterRef) -> str:
    return ref.spec.hash_key_secret or f"{ref.name}-hashkey"


def ca_secret_name(name: str) -> str:
    return f"{name}-ca"


def tls_secret_name(ref: ClusterRef) -> str:
    if ref.spec.tls.mode == "secret" and ref.spec.tls.secret_name:
        return ref.spec.tls.secret_name
    return f"{ref.name}-tls"


def labels(name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "zot",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": "zot-operator",
    }


def selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "zot", "app.kubernetes.io/instance": name}


def selector_string(name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in selector(name).items())


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


def member_addresses(ref: ClusterRef, failed: Iterable[int] = ()) -> list[str]:
    return [f"{member_host(ref, i)}:{ref.spec.port}" for i in member_ordinals(ref.spec, failed)]


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
    text = _templates.get_template("config.json.j2").render(
        spec=ref.spec, members=members, hash_key=hash_key, root_directory=DATA_DIR
    )
    # Parse and dump: the template must produce JSON, and one canonical form keeps the checksum stable.
    return json.dumps(json.loads(text), indent=2) + "\n"


def checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# Children ----------------------------------------------------------------------------------------


def _metadata(
    ref: ClusterRef, name: str, extra_labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": ref.namespace,
        "labels": {**labels(ref.name), **(extra_labels or {})},
    }
    if ref.uid:
        meta["ownerReferences"] = [ref.owner_reference()]
    if annotations:
        meta["annotations"] = annotations
    return meta


def config_map(ref: ClusterRef, config_text: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(ref, config_map_name(ref.name)),
        "data": {CONFIG_KEY: config_text},
    }


def hash_key_secret(ref: ClusterRef, hash_key: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _metadata(ref, hash_key_secret_name(ref)),
        "stringData": {"hashKey": hash_key},
    }


def ca_secret(ref: ClusterRef, cert_pem: bytes, key_pem: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _metadata(ref, ca_secret_name(ref.name)),
        "stringData": {"ca.crt": cert_pem.decode(), "ca.key": key_pem.decode()},
    }


def tls_secret(ref: ClusterRef, cert_pem: bytes, key_pem: bytes, ca_pem: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": _metadata(ref, tls_secret_name(ref)),
        "stringData": {"tls.crt": cert_pem.decode(), "tls.key": key_pem.decode(), "ca.crt": ca_pem.decode()},
    }


def headless_service(ref: ClusterRef) -> dict[str, Any]:
    # The role label lets a ServiceMonitor scrape every member once (the client Service would repeat them).
    meta = _metadata(ref, headless_service_name(ref.name), extra_labels={ROLE_LABEL: "members"})
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
        "metadata": _metadata(ref, ref.name, annotations=dict(service.annotations) or None),
        "spec": {"type": service.type, "selector": selector(ref.name), "ports": [port]},
    }


def pod_disruption_budget(ref: ClusterRef) -> dict[str, Any] | None:
    pdb = ref.spec.pod_disruption_budget
    if not pdb.enabled:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(ref, ref.name),
        "spec": {"maxUnavailable": pdb.max_unavailable, "selector": {"matchLabels": selector(ref.name)}},
    }


def _probe(path: str, port: int, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "registry", "scheme": "HTTPS"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 3,
    }


def _default_affinity(name: str) -> dict[str, Any]:
    # Members prefer distinct nodes: one node's failure should take as few members as possible.
    return {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": selector(name)},
                    },
                }
            ]
        }
    }


def _from_secret(variable: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": variable, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def secret_environment(spec: ZotClusterSpec) -> list[dict[str, Any]]:
    """Credentials that zot takes from its environment (the AWS SDK's variables) reach the members as
    environment variables from Secrets, never through the ConfigMap. What zot only reads from its
    config (the redis URL) goes through the init container instead: see `init_container`."""
    env: list[dict[str, Any]] = []
    s3 = spec.storage.s3 if spec.storage.mode == "s3" else None
    if s3 and s3.credentials_secret:
        env += [
            _from_secret(AWS_ACCESS_KEY_ENV, s3.credentials_secret, "accessKey"),
            _from_secret(AWS_SECRET_KEY_ENV, s3.credentials_secret, "secretKey"),
        ]
    return env


def start_secrets(spec: ZotClusterSpec) -> list[str]:
    """Secrets whose values a member reads only when it starts (environment, the init container's
    config): a new value needs new pods, so the operator puts their versions in the pod template."""
    names = [v.secret.name for v in secret_values(spec)]
    if spec.storage.mode == "s3" and spec.storage.s3 and spec.storage.s3.credentials_secret:
        names.append(spec.storage.s3.credentials_secret)
    return sorted(set(names))


def _security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }


def init_container(spec: ZotClusterSpec) -> dict[str, Any] | None:
    """Writes the ConfigMap's config plus the values from Secrets into the in-memory `config` volume,
    mode 0600 for the members' user: zot reads them there (`zot-operator materialize-config`)."""
    values = secret_values(spec)
    if not values:
        return None
    container: dict[str, Any] = {
        "name": "config",
        "image": spec.init_image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["zot-operator", "materialize-config"],
        "args": [f"{TEMPLATE_DIR}/{CONFIG_KEY}", RUNTIME_CONFIG, *(f"--from-env={v.dotted}={v.env}" for v in values)],
        "env": [_from_secret(v.env, v.secret.name, v.secret.key) for v in values],
        "volumeMounts": [
            {"name": "config-template", "mountPath": TEMPLATE_DIR, "readOnly": True},
            {"name": "config", "mountPath": RUNTIME_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": _security_context(),
    }
    if spec.resources:  # it runs before the member, so the pod asks for no more than the member does
        container["resources"] = spec.resources
    return container


def stateful_set(
    ref: ClusterRef, config_checksum: str, members: list[str], secret_versions: dict[str, str] | None = None
) -> dict[str, Any]:
    spec = ref.spec
    init = init_container(spec)
    config_volumes: list[dict[str, Any]] = (
        [
            {"name": "config-template", "configMap": {"name": config_map_name(ref.name)}},
            # In memory: the complete config holds Secrets' values, which must not land on a node's disk.
            {"name": "config", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        ]
        if init
        else [{"name": "config", "configMap": {"name": config_map_name(ref.name)}}]
    )
    config_path = RUNTIME_CONFIG if init else CONFIG_MOUNT
    volumes: list[dict[str, Any]] = [
        *config_volumes,
        {"name": "tls", "secret": {"secretName": tls_secret_name(ref), "defaultMode": 0o440}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": RUNTIME_DIR, "readOnly": True}
        if init
        else {"name": "config", "mountPath": CONFIG_MOUNT, "subPath": CONFIG_KEY, "readOnly": True},
        {"name": "tls", "mountPath": "/etc/zot/tls", "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "data", "mountPath": DATA_DIR},
    ]
    if spec.auth and spec.auth.htpasswd:
        volumes.append(
            {
                "name": "auth",
                "secret": {
                    "secretName": spec.auth.htpasswd.secret_name,
                    "defaultMode": 0o440,
                    "items": [{"key": spec.auth.htpasswd.key, "path": "htpasswd"}],
                },
            }
        )
        mounts.append({"name": "auth", "mountPath": "/etc/zot/auth", "readOnly": True})
    env = secret_environment(spec)
    container: dict[str, Any] = {
        "name": "zot",
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "args": ["serve", config_path],
        "ports": [{"name": "registry", "containerPort": spec.port, "protocol": "TCP"}],
        "volumeMounts": mounts,
        "startupProbe": _probe("/startupz", spec.port, 2, 60),
        "livenessProbe": _probe("/livez", spec.port, 10, 3),
        "readinessProbe": _probe("/readyz", spec.port, 5, 2),
        "securityContext": _security_context(),
    }
    if env:
        container["env"] = env
    if spec.resources:
        container["resources"] = spec.resources
    pod_spec: dict[str, Any] = {
        **({"initContainers": [init]} if init else {}),
        "containers": [container],
        "volumes": volumes,
        "securityContext": {"runAsNonRoot": True, "fsGroup": RUN_AS, "seccompProfile": {"type": "RuntimeDefault"}},
        "affinity": spec.affinity or _default_affinity(ref.name),
        "terminationGracePeriodSeconds": 40,
    }
    for key, value in (
        ("nodeSelector", spec.node_selector),
        ("tolerations", spec.tolerations),
        ("priorityClassName", spec.priority_class_name),
        ("serviceAccountName", spec.service_account_name),
    ):
        if value:
            pod_spec[key] = value
    pod_annotations = {
        **spec.pod_annotations,
        CHECKSUM_ANNOTATION: config_checksum,
        MEMBERS_ANNOTATION: ",".join(members),
    }
    if secret_versions:
        # Versions, not values (nor hashes of values, which anyone who may read pods could test guesses
        # against): a changed Secret changes the template, and the members roll one at a time.
        pod_annotations[SECRETS_ANNOTATION] = ",".join(f"{n}={v}" for n, v in sorted(secret_versions.items()))
    claim: dict[str, Any] = {
        "metadata": {"name": "data", "labels": selector(ref.name)},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": spec.storage.local.size}}},
    }
    if spec.storage.local.storage_class_name:
        claim["spec"]["storageClassName"] = spec.storage.local.storage_class_name
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(ref, ref.name),
        "spec": {
            "replicas": spec.replicas,
            "serviceName": headless_service_name(ref.name),
            "podManagementPolicy": "Parallel",
            # The operator decides when each pod restarts (all together on a membership change).
            "updateStrategy": {"type": "OnDelete"},
            "selector": {"matchLabels": selector(ref.name)},
            "template": {"metadata": {"labels": labels(ref.name), "annotations": pod_annotations}, "spec": pod_spec},
        },
    }
    if spec.storage.mode == "local":
        body["spec"]["volumeClaimTemplates"] = [claim]
        body["spec"]["persistentVolumeClaimRetentionPolicy"] = {
            "whenScaled": spec.storage.local.when_scaled,
            "whenDeleted": spec.storage.local.when_deleted,
        }
    else:
        volumes.append({"name": "data", "emptyDir": {}})
    return body


@dataclass
class Rendered:
    """Every child but the Secrets that are generated once (hash key, CA, TLS)."""

    config_text: str
    members: list[str]
    objects: list[dict[str, Any]]

    @property
    def config_checksum(self) -> str:
        return checksum(self.config_text)


def render(
    ref: ClusterRef, hash_key: str, failed: Iterable[int] = (), secret_versions: dict[str, str] | None = None
) -> Rendered:
    """`secret_versions`: resourceVersion of each of `start_secrets`, when the caller read them."""
    members = member_addresses(ref, failed)
    config_text = render_config(ref, hash_key, members)
    objects = [
        config_map(ref, config_text),
        headless_service(ref),
        client_service(ref),
        stateful_set(ref, checksum(config_text), members, secret_versions),
    ]
    pdb = pod_disruption_budget(ref)
    if pdb:
        objects.append(pdb)
    return Rendered(config_text, members, objects)
