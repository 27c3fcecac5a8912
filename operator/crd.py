"""The ZotCluster CRD, generated from the pydantic models (never hand-edited).

pydantic writes JSON Schema with $refs and anyOf-null; Kubernetes wants a structural OpenAPI v3
schema: everything inlined, `nullable`, free-form maps marked x-kubernetes-preserve-unknown-fields.
CEL rules say what a schema cannot: immutable fields and cross-field limits.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from .models import (
    ACCESS_NEEDS_LOGINS,
    IN_PLACE_NEEDS_MANAGED_TLS,
    LDAP_ADDRESS_MESSAGE,
    LDAP_ADDRESS_PATTERN,
    LDAP_ATTRIBUTE_MESSAGE,
    LDAP_ATTRIBUTE_PATTERN,
    LDAP_BASE_DN_MESSAGE,
    LDAP_BIND_TOGETHER,
    LDAP_CA_NEEDS_TLS,
    LDAP_CA_WITH_SKIP_VERIFY,
    LDAP_SKIP_VERIFY_NEEDS_TLS,
    LDAP_START_TLS_NEEDS_INSECURE,
    MAX_DELAY_NEEDS_DELAY,
    MTLS_ATTRIBUTES_ONCE,
    MTLS_SAN_INDEX,
    MTLS_URI_ONLY,
    POLL_NEEDS_CONTENT,
    RETRIES_NEED_DELAY,
    STRIP_PREFIX_NEEDS_GLOB,
    SYNC_URL_MESSAGE,
    SYNC_URL_PATTERN,
    SYNCS_NOTHING,
    ZotClusterSpec,
    ZotClusterStatus,
)

GROUP = "zot-operator.io"
VERSION = "v1alpha1"
KIND = "ZotCluster"
PLURAL = "zotclusters"
SHORT_NAMES = ["zc"]


# A claim can grow, never shrink (the API server refuses a request below a claim's capacity): the operator
# grows each member's claim (volumes.py), so a smaller size could only be a mistake, refused at once.
SIZE_SHRINK_MESSAGE = (
    "storage.local.size cannot shrink: a volume can grow, never shrink (to use less, make a new cluster)"
)
# The Kubernetes quantity library of CEL (quantity(), isQuantity(); Kubernetes 1.29 and later). A size that is
# no quantity at all is left to the rest of the validation: a rule that errs would hide the real message.
SIZE_NEVER_SHRINKS = (
    "!isQuantity(self.size) || !isQuantity(oldSelf.size) || quantity(self.size).compareTo(quantity(oldSelf.size)) >= 0"
)


def _cel_pattern(pattern: str) -> str:
    """A regular expression as a CEL string literal (backslashes doubled)."""
    return pattern.replace(chr(92), chr(92) * 2)


def _none(field: str) -> str:
    """CEL: the optional list or map `field` is absent or empty (the API server fills no defaults below
    spec.auth, which has none itself)."""
    return f"(!has({field}) || size({field}) == 0)"


def _only_anonymous(access: str) -> str:
    """CEL of zot's ContainsOnlyAnonymousPolicy and ContainsOnlyMetricsAnonymousPolicy on `access`, as the
    registry's AccessControlConfig has them: what access control may say without a login method."""
    admin = f"{access}.adminPolicy"
    repositories = f"{access}.repositories"
    group = f"{repositories}[k]"
    admin_silent = f"(!has({admin}) || ({_none(f'{admin}.users')} && {_none(f'{admin}.actions')}))"
    names_no_one = (
        f"(!has({repositories}) || {repositories}.all(k, {_none(f'{group}.defaultPolicy')} && "
        f"(!has({group}.policies) || {group}.policies.all(p, {_none('p.users')} && {_none('p.actions')}))))"
    )
    some_anonymous = f"(has({repositories}) && {repositories}.exists(k, !{_none(f'{group}.anonymousPolicy')}))"
    only_metrics = (
        f"((!has({admin}) || ({_none(f'{admin}.users')} && {_none(f'{admin}.actions')} && "
        f"{_none(f'{admin}.groups')})) && {_none(repositories)} && {_none(f'{access}.groups')} && "
        f"has({access}.metrics) && has({access}.metrics.anonymousPolicy) && "
        f"'read' in {access}.metrics.anonymousPolicy)"
    )
    return f"({admin_silent} && {names_no_one} && {some_anonymous}) || {only_metrics}"


_ATTRIBUTE = _cel_pattern(LDAP_ATTRIBUTE_PATTERN)

# CEL validations, attached at the named path of the spec schema ("" is the spec itself, "a[]" the items of list a).
SPEC_RULES: dict[str, list[dict[str, str]]] = {
    "": [
        {
            "rule": "self.excludedMembers.all(m, m >= 0 && m < self.replicas)",
            "message": "excludedMembers must be ordinals of existing members: 0 to replicas-1",
        },
        {
            "rule": "size(self.excludedMembers) < self.replicas",
            "message": "excludedMembers cannot exclude every member",
        },
        {
            "rule": "has(self.hashKeySecret) == has(oldSelf.hashKeySecret) && "
            "(!has(self.hashKeySecret) || self.hashKeySecret == oldSelf.hashKeySecret)",
            "message": "hashKeySecret is immutable: a new hash key would move every repository to another member",
        },
        {
            "rule": "self.storage.mode != 's3' || has(self.storage.s3)",
            "message": "storage mode s3 needs storage.s3 (bucket, region, ...)",
        },
        {
            "rule": "!has(self.tls) || self.tls.mode != 'secret' || has(self.tls.secretName)",
            "message": "tls mode secret needs tls.secretName",
        },
        {
            "rule": "self.storage.mode != 's3' || has(self.cache)",
            "message": "storage mode s3 needs a shared cache: cache.redis or cache.dynamodb",
        },
        {
            "rule": "self.storage.mode == 's3' || !has(self.cache)",
            "message": "cache is only used with storage mode s3 (storage local to each member keeps its own)",
        },
        {
            "rule": "(has(self.routing) ? self.routing : 'Zot') == (has(oldSelf.routing) ? oldSelf.routing : 'Zot')",
            "message": "routing is immutable: another rule would give most repositories another owner at once",
        },
        {
            "rule": "!has(self.rebalance) || self.rebalance.mode != 'InPlace' || !has(self.tls) || "
            "self.tls.mode != 'secret'",
            "message": IN_PLACE_NEEDS_MANAGED_TLS,
        },
    ],
    "service": [
        {
            "rule": "!has(self.nodePort) || self.type != 'ClusterIP'",
            "message": "service.nodePort needs service.type NodePort or LoadBalancer",
        },
    ],
    "cache": [
        {"rule": "has(self.redis) != has(self.dynamodb)", "message": "cache needs exactly one of redis or dynamodb"},
    ],
    "cache.redis": [
        {"rule": "has(self.url) != has(self.urlSecret)", "message": "redis needs exactly one of url or urlSecret"},
    ],
    "storage": [
        {
            "rule": "self.mode == oldSelf.mode",
            "message": "storage.mode is immutable: moving repositories between local volumes and S3 is not automatic",
        },
    ],
    "storage.local": [{"rule": SIZE_NEVER_SHRINKS, "message": SIZE_SHRINK_MESSAGE}],
    # spec.sync: what the registry would refuse at start, and what would sync nothing. What CEL cannot check
    # (globs, regular expressions, durations, the credentials file) marks the cluster Degraded instead.
    "sync.registries[]": [
        {"rule": "self.onDemand || has(self.pollInterval)", "message": SYNCS_NOTHING},
        {
            "rule": "!has(self.pollInterval) || (has(self.content) && size(self.content) > 0)",
            "message": POLL_NEEDS_CONTENT,
        },
        {"rule": "!has(self.maxRetries) || has(self.retryDelay)", "message": RETRIES_NEED_DELAY},
        {"rule": "!has(self.maxRetryDelay) || has(self.retryDelay)", "message": MAX_DELAY_NEEDS_DELAY},
    ],
    "sync.registries[].urls[]": [
        {"rule": f"self.matches('{_cel_pattern(SYNC_URL_PATTERN)}')", "message": SYNC_URL_MESSAGE},
    ],
    "sync.registries[].content[]": [
        {
            "rule": "!self.stripPrefix || !has(self.destination) || self.destination != '/' || "
            "self.prefix.contains('/*')",
            "message": STRIP_PREFIX_NEEDS_GLOB,
        },
    ],
    # spec.auth: what zot would refuse at start (its validateLDAP, validateMTLS and validateAuthzPolicies) and
    # what would connect or identify no one. What CEL cannot check (globs, regular expressions, the case of
    # the maps' keys: the cost of a rule over unbounded keys is too high) marks the cluster Degraded instead.
    "auth": [
        {
            "rule": "!has(self.accessControl) || has(self.htpasswd) || has(self.ldap) || has(self.mtls) || "
            + _only_anonymous("self.accessControl"),
            "message": ACCESS_NEEDS_LOGINS,
        },
    ],
    "auth.ldap": [
        {"rule": f"self.address.matches('{_cel_pattern(LDAP_ADDRESS_PATTERN)}')", "message": LDAP_ADDRESS_MESSAGE},
        {"rule": "self.baseDN.contains('=')", "message": LDAP_BASE_DN_MESSAGE},
        {
            "rule": f"self.userAttribute.matches('{_ATTRIBUTE}')",
            "message": LDAP_ATTRIBUTE_MESSAGE.format(field="userAttribute", example="uid"),
        },
        {
            "rule": f"!has(self.userGroupAttribute) || self.userGroupAttribute.matches('{_ATTRIBUTE}')",
            "message": LDAP_ATTRIBUTE_MESSAGE.format(field="userGroupAttribute", example="memberOf"),
        },
        {"rule": "has(self.bindDN) == has(self.bindPasswordSecret)", "message": LDAP_BIND_TOGETHER},
        {"rule": "!self.startTLS || self.insecure", "message": LDAP_START_TLS_NEEDS_INSECURE},
        {"rule": "!has(self.caSecret) || !self.insecure || self.startTLS", "message": LDAP_CA_NEEDS_TLS},
        {"rule": "!self.skipVerify || !self.insecure || self.startTLS", "message": LDAP_SKIP_VERIFY_NEEDS_TLS},
        {"rule": "!has(self.caSecret) || !self.skipVerify", "message": LDAP_CA_WITH_SKIP_VERIFY},
    ],
    "auth.mtls": [
        {
            "rule": "self.identityAttributes.all(a, self.identityAttributes.exists_one(b, b == a))",
            "message": MTLS_ATTRIBUTES_ONCE,
        },
        {
            "rule": "!has(self.uriSanPattern) || 'URI' in self.identityAttributes",
            "message": MTLS_URI_ONLY.format(field="uriSanPattern"),
        },
        {
            "rule": "self.uriSanIndex == 0 || 'URI' in self.identityAttributes",
            "message": MTLS_URI_ONLY.format(field="uriSanIndex"),
        },
        {
            "rule": "self.dnsSanIndex == 0 || ('URI' in self.identityAttributes && "
            "'DNSName' in self.identityAttributes)",
            "message": MTLS_SAN_INDEX.format(field="dnsSanIndex", attribute="DNSName"),
        },
        {
            "rule": "self.emailSanIndex == 0 || ('URI' in self.identityAttributes && "
            "'Email' in self.identityAttributes)",
            "message": MTLS_SAN_INDEX.format(field="emailSanIndex", attribute="Email"),
        },
    ],
}


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        target = copy.deepcopy(defs[schema["$ref"].split("/")[-1]])
        extra = {k: v for k, v in schema.items() if k != "$ref"}
        return _resolve({**target, **extra}, defs)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("title", "$defs"):
            continue
        if key == "anyOf":
            options = [o for o in value if o.get("type") != "null"]
            if len(options) == 1:
                out.update(_resolve(options[0], defs))
                out["nullable"] = True
                continue
            out[key] = [_resolve(o, defs) for o in value]
        elif key == "properties":
            out[key] = {name: _resolve(prop, defs) for name, prop in value.items()}
        elif key == "items" or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = _resolve(value, defs)
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = value
    if out.get("type") == "object" and "properties" not in out:
        additional = out.get("additionalProperties")
        if not isinstance(additional, dict) or additional == {} or "type" not in additional:
            out.pop("additionalProperties", None)
            out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("type") == "array" and out.get("items") == {}:
        out["items"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if "default" in out and out["default"] is None:
        del out["default"]
    if out.get("additionalProperties") is False:
        del out["additionalProperties"]
    return out


def openapi_schema(model: type[Any]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _resolve(raw, raw.get("$defs", {}))


def _factory_defaults(schema: dict[str, Any], values: dict[str, Any]) -> None:
    """Fields with a default_factory get the model's own default (pydantic leaves it out of the schema),
    so the API server fills them and CEL rules can rely on them being there."""
    for name, prop in schema.get("properties", {}).items():
        if name not in values or values[name] is None:
            continue
        if prop.get("type") == "object" and "properties" in prop and isinstance(values[name], dict):
            _factory_defaults(prop, values[name])
        if "default" not in prop and prop.get("type") in ("object", "array"):
            prop["default"] = values[name]


def _spec_schema() -> dict[str, Any]:
    spec = openapi_schema(ZotClusterSpec)
    _factory_defaults(spec, ZotClusterSpec().model_dump(by_alias=True, exclude_none=True))
    for path, rules in SPEC_RULES.items():
        node = spec
        for part in filter(None, path.split(".")):
            # "name[]": the items of the list `name`
            node = node["properties"][part.removesuffix("[]")]
            if part.endswith("[]"):
                node = node["items"]
        node["x-kubernetes-validations"] = rules
    return spec


def crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": SHORT_NAMES,
                "categories": ["all"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": [
                        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                        {"name": "Ready", "type": "integer", "jsonPath": ".status.readyMembers"},
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        # A membership change made in place: its step and how far the copy got.
                        {"name": "Rebalance", "type": "string", "jsonPath": ".status.rebalance.step"},
                        {"name": "Progress", "type": "string", "jsonPath": ".status.rebalance.progress"},
                        {"name": "Epoch", "type": "integer", "jsonPath": ".status.epoch", "priority": 1},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A scale-out cluster of zot-compatible registries.",
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": {**_spec_schema(), "description": "The desired cluster."},
                                "status": {
                                    **openapi_schema(ZotClusterStatus),
                                    "description": "What the operator observed.",
                                },
                            },
                            "required": ["spec"],
                        }
                    },
                }
            ],
        },
    }


def crd_yaml() -> str:
    header = "# Generated by `zot-operator crd` from operator/models.py: do not edit by hand.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=120)
