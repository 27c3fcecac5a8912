"""The StatefulSet of a ZotCluster and its pod template: the member container, the init container that
writes the config with values from Secrets, probes, security contexts, affinity and volumes. Pure, like `render`."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from .annotations import RESTARTED_AT_ANNOTATION
from .auth import auth_start_secrets, auth_volumes
from .crd import GROUP
from .materialize import secret_values
from .models import ZotClusterSpec
from .names import (
    ClusterRef,
    config_map_name,
    headless_service_name,
    labels,
    object_metadata,
    selector,
    tls_secret_name,
)
from .sync import sync_secrets, sync_volumes

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
DATA_CLAIM = "data"  # the volumeClaimTemplate: member i's claim is data-<name>-<i>
RUN_AS = 10001
# The environment variables the registry reads its credentials from (AWS's standard names for S3 and DynamoDB).
AWS_ACCESS_KEY_ENV = "AWS_ACCESS_KEY_ID"
AWS_SECRET_KEY_ENV = "AWS_SECRET_ACCESS_KEY"


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
    config): a new value needs new pods, so the operator puts their versions in the pod template.
    (The operator's own <name>-ldap-credentials is one too: `secret_steps.ensure_ldap_credentials`.)"""
    names = [v.secret.name for v in secret_values(spec)]
    if spec.storage.mode == "s3" and spec.storage.s3 and spec.storage.s3.credentials_secret:
        names.append(spec.storage.s3.credentials_secret)
    # Mounted, but read by the registry only when it starts (the sync credentials file and certDirs, the
    # CAs of spec.auth).
    names += sync_secrets(spec)
    names += auth_start_secrets(spec)
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
    ref: ClusterRef,
    config_checksum: str,
    members: list[str] | None,
    secret_versions: dict[str, str] | None = None,
    replicas: int | None = None,
    secret_keys: Mapping[str, Collection[str]] | None = None,
) -> dict[str, Any]:
    """`members`: the list in the members annotation of the template (None: none, the operator annotates
    the pods); `replicas`: the StatefulSet's, when it must keep more pods than the spec has members;
    `secret_keys`: the keys of spec.sync's certSecrets (`sync.sync_volumes`)."""
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
    auth_volume_list, auth_mounts = auth_volumes(ref)
    volumes += auth_volume_list
    mounts += auth_mounts
    sync_volume_list, sync_mounts = sync_volumes(spec, secret_keys)
    volumes += sync_volume_list
    mounts += sync_mounts
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
    pod_annotations = {**spec.pod_annotations, CHECKSUM_ANNOTATION: config_checksum}
    if members is not None:
        pod_annotations[MEMBERS_ANNOTATION] = ",".join(members)
    if secret_versions:
        # Versions, not values (nor hashes of values, which anyone who may read pods could test guesses
        # against): a changed Secret changes the template, and the members roll one at a time.
        pod_annotations[SECRETS_ANNOTATION] = ",".join(f"{n}={v}" for n, v in sorted(secret_versions.items()))
    if ref.restarted_at:
        # What `kubectl rollout restart` does, with the operator's key: a new value is a new template, and
        # the members roll one at a time (plans.plan_restarts), as for any other change of the template.
        pod_annotations[RESTARTED_AT_ANNOTATION] = ref.restarted_at
    claim: dict[str, Any] = {
        "metadata": {"name": DATA_CLAIM, "labels": selector(ref.name)},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": spec.storage.local.size}}},
    }
    if spec.storage.local.storage_class_name:
        claim["spec"]["storageClassName"] = spec.storage.local.storage_class_name
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": object_metadata(ref, ref.name),
        "spec": {
            "replicas": spec.replicas if replicas is None else replicas,
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
