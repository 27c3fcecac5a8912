"""The ZotCluster API: pydantic models of spec and status, the one source of truth.

The CRD's OpenAPI schema is generated from these models (`zot-operator crd`, crds/zotclusters.yaml),
so every field carries its default and description here and nowhere else.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from zot_registry.config import AccessControlConfig as ZotAccessControl
from zot_registry.config import SyncRegistry as ZotSyncRegistry
from zot_registry.config.messages import dotted, fail, raise_all, validation_problems
from zot_registry.durations import parse_duration
from zot_registry.version import VERSION

from .kube_values import quantity_problem, resources_problems, tolerations_problems

IMAGE_REPOSITORY = "ghcr.io/zot-operator/zot-operator"
DEFAULT_IMAGE = f"{IMAGE_REPOSITORY}:{VERSION}"


# The operator authenticates to the members' control API with a client certificate from the cluster CA.
def image_repository(image: str) -> str:
    """An image reference without its tag and digest: ghcr.io/a/b:1.0@sha256:... -> ghcr.io/a/b.
    A colon in the last path segment is a tag; one before it is a registry's port."""
    name = image.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    if ":" in last:
        last = last.split(":", 1)[0]
    return f"{head}/{last}" if head else last


ROUTING_NEEDS_OUR_IMAGE = (
    "routing Rendezvous needs members that all run this project's image: zot routes by its own rule only"
)
IN_PLACE_NEEDS_MANAGED_TLS = (
    "rebalance mode InPlace needs tls mode managed: with tls mode secret the operator holds no CA key "
    "to authenticate to the members"
)


def _go_duration(value: str) -> str:
    """A duration as zot and Go write it (30s, 5m, 1h30m, 1.5h); kept as text, zot reads it."""
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise ValueError("must be a duration like 30s, 5m or 1h") from None
    if seconds < 0:
        raise ValueError("must not be negative")
    return value


def _exactly_one(first: object, second: object, message: str) -> None:
    """Two alternatives: one is set, not both, not neither (the CRD's CEL rules in `crd.py` say it too)."""
    if (first is None) == (second is None):
        raise ValueError(message)


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class SecretKeyRef(_Model):
    name: str = Field(description="Name of a Secret in the ZotCluster's namespace.")
    key: str = Field(description="Key inside the Secret.")


class LocalStorage(_Model):
    size: str = Field("10Gi", description="Size of each member's PersistentVolumeClaim.")
    storage_class_name: str | None = Field(
        None, alias="storageClassName", description="StorageClass of the claims; the cluster default when unset."
    )
    when_scaled: Literal["Retain", "Delete"] = Field(
        "Retain", alias="whenScaled", description="What happens to a removed member's claim on scale-down."
    )
    when_deleted: Literal["Retain", "Delete"] = Field(
        "Retain", alias="whenDeleted", description="What happens to the claims when the ZotCluster is deleted."
    )

    @field_validator("size")
    @classmethod
    def _quantity(cls, value: str) -> str:
        # The API server would refuse the claims, not the ZotCluster: said here first (kube_values).
        problem = quantity_problem(value, positive=True)
        if problem:
            raise fail(problem)
        return value


class S3Storage(_Model):
    bucket: str = Field(description="Bucket holding every member's repositories.")
    region: str = Field("us-east-1", description="Region of the bucket.")
    endpoint: str | None = Field(None, description="S3 endpoint (host:port) for S3-compatible stores.")
    root_directory: str = Field("/zot", alias="rootDirectory", description="Key prefix inside the bucket.")
    secure: bool = Field(True, description="Use HTTPS to reach the endpoint.")
    skip_verify: bool = Field(
        False, alias="skipVerify", description="Do not verify the endpoint's TLS certificate (test setups only)."
    )
    credentials_secret: str | None = Field(
        None,
        alias="credentialsSecret",
        description="Secret with keys accessKey and secretKey, given to the members as AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY (also used by a DynamoDB cache); the pod's ambient credentials when unset.",
    )


class StorageSpec(_Model):
    mode: Literal["local", "s3"] = Field(
        "local",
        description="local: each member stores the repositories it owns on its own volume; "
        "s3: all members share one bucket and a cache.",
    )
    local: LocalStorage = Field(default_factory=LocalStorage, description="Settings of mode local.")
    s3: S3Storage | None = Field(None, description="Settings of mode s3 (required with it).")
    dedupe: bool = Field(True, description="Store each blob once.")
    gc: bool = Field(True, description="Collect blobs no manifest references.")
    gc_delay: str = Field("1h", alias="gcDelay", description="Minimum age of a blob before collection.")
    gc_interval: str = Field(
        "1h", alias="gcInterval", description="How often each member collects garbage in the repositories it owns."
    )

    @field_validator("gc_delay", "gc_interval")
    @classmethod
    def _duration(cls, value: str) -> str:
        return _go_duration(value)


class RedisCache(_Model):
    url: str | None = Field(
        None,
        pattern=r"^rediss?://[^@]+$",
        description="redis:// or rediss:// URL without credentials, e.g. redis://redis:6379/0, "
        "written into the config; or use urlSecret.",
    )
    url_secret: SecretKeyRef | None = Field(
        None,
        alias="urlSecret",
        description="Secret key holding the whole redis URL (with its password). Never written into the "
        "ConfigMap: an init container (spec.initImage) writes it as storage.cacheDriver.url, where "
        "zot reads it, into each member's config in an in-memory volume.",
    )
    key_prefix: str = Field("zot", alias="keyPrefix", description="Prefix of every cache key.")

    @model_validator(mode="after")
    def _one_url(self) -> RedisCache:
        _exactly_one(self.url, self.url_secret, "redis needs exactly one of url or urlSecret")
        return self


class DynamoDBCache(_Model):
    region: str = Field("us-east-1", description="Region of the tables.")
    endpoint: str | None = Field(None, description="DynamoDB endpoint URL for compatible services.")
    cache_table_name: str = Field("ZotBlobTable", alias="cacheTableName", description="Table of blob locations.")
    repo_meta_table_name: str = Field(
        "ZotRepoMetadataTable", alias="repoMetaTableName", description="Table of repository metadata."
    )
    image_meta_table_name: str = Field(
        "ZotImageMetaTable", alias="imageMetaTableName", description="Table of image metadata."
    )
    repo_blobs_info_table_name: str = Field(
        "ZotRepoBlobsInfoTable", alias="repoBlobsInfoTableName", description="Table of the blobs of each repository."
    )
    user_data_table_name: str = Field("ZotUserDataTable", alias="userDataTableName", description="Table of user data.")
    version_table_name: str = Field("ZotVersion", alias="versionTableName", description="Table of the schema version.")
    api_key_table_name: str = Field("ZotApiKeyTable", alias="apiKeyTableName", description="Table of API keys.")


class CacheSpec(_Model):
    redis: RedisCache | None = Field(None, description="A redis cache shared by all members.")
    dynamodb: DynamoDBCache | None = Field(None, description="DynamoDB tables shared by all members.")

    @model_validator(mode="after")
    def _exactly_one(self) -> CacheSpec:
        _exactly_one(self.redis, self.dynamodb, "cache needs exactly one of redis or dynamodb")
        return self


class TLSSpec(_Model):
    mode: Literal["managed", "secret"] = Field(
        "managed",
        description="managed: the operator keeps a CA and a server certificate; "
        "secret: use secretName (keys tls.crt, tls.key, ca.crt).",
    )
    secret_name: str | None = Field(None, alias="secretName", description="Existing TLS Secret for mode secret.")


class HtpasswdAuth(_Model):
    secret_name: str = Field(alias="secretName", description="Secret holding an htpasswd file (bcrypt entries).")
    key: str = Field("htpasswd", description="Key of the htpasswd file in the Secret.")


# Authentication and access control (zot's http.auth.ldap, http.auth.mtls with http.tls.cacert, and
# http.accessControl; rendered by auth.py) -------------------------------------------------------------

# What zot 2.1.20 dials: "<address>:<port>" (pkg/api/ldap.go), and the TLS server name is the address: a
# host name or an IPv4 address, nothing else (a scheme or a port in it makes an address that never connects).
LDAP_ADDRESS_PATTERN = r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])$"
LDAP_ADDRESS_MESSAGE = (
    "address must be the LDAP server's host name or address, without a scheme or a port (the port goes in "
    "port), e.g. ldap.example.org, 192.0.2.10 or [2001:db8::10]"
)
# The registry's checks of http.auth.ldap (zot_registry.config.ldap), in the spec's words: a typo in an attribute
# name or the base DN must not turn into a search that finds other entries, or none.
LDAP_ATTRIBUTE_PATTERN = r"^([A-Za-z][A-Za-z0-9-]*|[0-9]+(\.[0-9]+)+)(;[A-Za-z0-9-]+)*$"
LDAP_ATTRIBUTE_MESSAGE = "{field} must be an LDAP attribute name (letters, digits and '-', or an OID), e.g. {example}"
LDAP_BASE_DN_MESSAGE = "baseDN must be the DN under which the users are, e.g. ou=people,dc=example,dc=org"
LDAP_FILTER_MESSAGE = (
    "userFilter's parentheses do not balance: write one LDAP filter, e.g. (!(nsaccountlock=TRUE)) or "
    "(objectClass=person)"
)
LDAP_BIND_TOGETHER = (
    "bindDN and bindPasswordSecret go together: the members bind as bindDN with that password to look users "
    "up; leave both out to look users up with an anonymous bind"
)
# zot 2.1.20 (pkg/api/authn.go, ldap.go): UseSSL = !insecure, SkipTLS = !startTLS. Without insecure it dials
# LDAPS and never sends StartTLS; StartTLS upgrades a plain connection only with insecure: true.
LDAP_START_TLS_NEEDS_INSECURE = (
    "startTLS needs insecure: true: unless insecure is set zot connects with LDAPS (TLS from the first byte, "
    "usually port 636) and never sends StartTLS; insecure with startTLS connects in plain text (usually "
    "port 389) and upgrades the connection with StartTLS before any password is sent"
)
LDAP_CA_NEEDS_TLS = (
    "caSecret is only used over TLS: with insecure: true and no startTLS the LDAP connection is plain text; "
    "set startTLS: true, or leave insecure out for LDAPS"
)
LDAP_SKIP_VERIFY_NEEDS_TLS = (
    "skipVerify is only used over TLS: with insecure: true and no startTLS the LDAP connection is plain text; "
    "set startTLS: true, or leave insecure out for LDAPS"
)
LDAP_CA_WITH_SKIP_VERIFY = (
    "caSecret is unused with skipVerify: true (the LDAP server's certificate is not checked at all): "
    "keep caSecret and drop skipVerify"
)
# The login rule of zot's validateAuthzPolicies, as the registry has it (zot_registry.config.access.NEEDS_LOGINS),
# in the spec's words.
ACCESS_NEEDS_LOGINS = (
    "accessControl needs a way to authenticate users: auth.htpasswd, auth.ldap or auth.mtls, unless it has "
    "only anonymousPolicy policies (and no adminPolicy users or actions, no defaultPolicy, no policy that "
    "names users or actions)"
)
MTLS_URI_ONLY = "{field} applies to the URI identity attribute only: add URI to identityAttributes"
# zot 2.1.20's validateMTLS refuses dnsSanIndex and emailSanIndex unless URI is among the identity
# attributes, although each picks among its own SANs: both are needed for zot to start.
MTLS_SAN_INDEX = (
    "{field} picks among the {attribute} SANs: list {attribute} in identityAttributes, and URI too "
    "(zot 2.1.20 accepts {field} only with URI among the identity attributes)"
)
MTLS_ATTRIBUTES_ONCE = "identityAttributes lists each attribute once"
LOWER_CASE_KEYS = "{what} are lower-cased by zot (its config keys are case-insensitive): write {examples} in lower case"

Action = Literal["read", "create", "update", "delete"]
IdentityAttribute = Literal["CommonName", "Subject", "Email", "URI", "DNSName"]
# A user or group name in a policy: not empty (zot would match an empty user name to anonymous requests).
PolicyName = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class CASecret(_Model):
    name: str = Field(description="Name of a Secret in the ZotCluster's namespace.")
    key: str = Field("ca.crt", description="Key holding the PEM CA certificates (a bundle may hold several).")


class LDAPAuth(_Model):
    address: str = Field(
        max_length=253,
        description="Host name or address of the LDAP server (no scheme, no port), e.g. ldap.example.org.",
    )
    port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Port of the LDAP server; 636 (LDAPS) when unset, 389 with insecure: true.",
    )
    insecure: bool = Field(
        False,
        description="Connect without TLS (plain LDAP); with startTLS, a plain connection upgraded by StartTLS. "
        "Unset: LDAPS, TLS from the first byte.",
    )
    start_tls: bool = Field(
        False,
        alias="startTLS",
        description="With insecure: true, upgrade the plain connection with StartTLS before binding (as zot 2.1.20: "
        "without insecure the connection is LDAPS and StartTLS is not used).",
    )
    skip_verify: bool = Field(
        False,
        alias="skipVerify",
        description="Do not verify the LDAP server's TLS certificate (test setups only).",
    )
    subtree_search: bool = Field(
        False,
        alias="subtreeSearch",
        description="Search the whole subtree under baseDN for users; false: only baseDN's direct children.",
    )
    base_dn: str = Field(
        alias="baseDN",
        min_length=1,
        max_length=1024,
        description="Where users are searched, e.g. ou=Users,dc=example,dc=org.",
    )
    user_attribute: str = Field(
        alias="userAttribute",
        min_length=1,
        max_length=256,
        description="Attribute that holds the login name, e.g. uid or sAMAccountName.",
    )
    user_group_attribute: str | None = Field(
        None,
        alias="userGroupAttribute",
        max_length=256,
        description="Attribute whose values are the user's groups (e.g. memberOf), as accessControl policies "
        "name them.",
    )
    user_filter: str | None = Field(
        None,
        alias="userFilter",
        max_length=1024,
        description="LDAP filter users must also match, e.g. (!(nsaccountlock=TRUE)), as zot combines it with "
        "the login name's.",
    )
    bind_dn: str | None = Field(
        None,
        alias="bindDN",
        min_length=1,
        max_length=1024,
        description="DN the members bind as to look users up (with bindPasswordSecret); an anonymous bind when unset.",
    )
    bind_password_secret: SecretKeyRef | None = Field(
        None,
        alias="bindPasswordSecret",
        description="Secret key holding bindDN's password (one line; a trailing newline is dropped). Never written "
        "into the ConfigMap: the operator keeps zot's credentials file (bindDN and this password) in the Secret "
        "<name>-ldap-credentials, mounted into the members.",
    )
    ca_secret: CASecret | None = Field(
        None,
        alias="caSecret",
        description="CA certificates that signed the LDAP server's certificate, mounted into the members (zot's "
        "caCert); the system's CAs when unset. Only over TLS.",
    )

    @property
    def uses_tls(self) -> bool:
        """Whether zot talks TLS to the server: LDAPS, or a plain connection upgraded with StartTLS."""
        return not self.insecure or self.start_tls

    @property
    def effective_port(self) -> int:
        # zot has no default (its port 0 never connects): the well-known port of the connection zot makes.
        if self.port is not None:
            return self.port
        return 389 if self.insecure else 636

    @model_validator(mode="after")
    def _consistent(self) -> LDAPAuth:
        # The CRD's CEL rules (crd.py), for what never passes the API server (local mode, render).
        if not re.fullmatch(LDAP_ADDRESS_PATTERN, self.address):
            raise ValueError(LDAP_ADDRESS_MESSAGE)
        if "=" not in self.base_dn:
            raise ValueError(LDAP_BASE_DN_MESSAGE)
        for field, value, example in (
            ("userAttribute", self.user_attribute, "uid"),
            ("userGroupAttribute", self.user_group_attribute, "memberOf"),
        ):
            if value is not None and not re.fullmatch(LDAP_ATTRIBUTE_PATTERN, value):
                raise ValueError(LDAP_ATTRIBUTE_MESSAGE.format(field=field, example=example))
        if self.user_filter is not None and not _balanced(self.user_filter):
            raise ValueError(LDAP_FILTER_MESSAGE)
        if (self.bind_dn is None) != (self.bind_password_secret is None):
            raise ValueError(LDAP_BIND_TOGETHER)
        if self.start_tls and not self.insecure:
            raise ValueError(LDAP_START_TLS_NEEDS_INSECURE)
        if self.ca_secret is not None and not self.uses_tls:
            raise ValueError(LDAP_CA_NEEDS_TLS)
        if self.skip_verify and not self.uses_tls:
            raise ValueError(LDAP_SKIP_VERIFY_NEEDS_TLS)
        if self.ca_secret is not None and self.skip_verify:
            raise ValueError(LDAP_CA_WITH_SKIP_VERIFY)
        return self


def _balanced(text: str) -> bool:
    """Whether the parentheses of an LDAP filter balance (those in values are escaped, \\28 and \\29)."""
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


class AccessPolicySpec(_Model):
    users: list[PolicyName] = Field(default_factory=list, max_length=1024, description="User names (logins).")
    groups: list[PolicyName] = Field(
        default_factory=list,
        max_length=1024,
        description="Groups: of accessControl.groups, or the user's LDAP groups (userGroupAttribute's values).",
    )
    actions: list[Action] = Field(default_factory=list, max_length=4, description="What they may do.")


class RepositoryAccess(_Model):
    policies: list[AccessPolicySpec] = Field(
        default_factory=list, max_length=64, description="Who may do what in the repositories the pattern matches."
    )
    default_policy: list[Action] = Field(
        default_factory=list, alias="defaultPolicy", max_length=4, description="What any authenticated user may do."
    )
    anonymous_policy: list[Action] = Field(
        default_factory=list,
        alias="anonymousPolicy",
        max_length=4,
        description="What requests without credentials (or client certificate) may do.",
    )


class AccessGroupSpec(_Model):
    users: list[PolicyName] = Field(default_factory=list, max_length=1024, description="The group's members.")


class MetricsAccessSpec(_Model):
    users: list[PolicyName] = Field(default_factory=list, max_length=1024, description="Users who may read /metrics.")
    anonymous_policy: list[Action] = Field(
        default_factory=list,
        alias="anonymousPolicy",
        max_length=4,
        description="read: anyone may read /metrics without credentials.",
    )


class AccessControlSpec(_Model):
    repositories: dict[str, RepositoryAccess] = Field(
        default_factory=dict,
        max_length=256,
        description="Repository glob pattern (**, team/*, team/**, {a,b}/**) -> its policies; the longest "
        "matching pattern decides. Patterns are lower case.",
    )
    admin_policy: AccessPolicySpec | None = Field(
        None, alias="adminPolicy", description="Users and groups allowed their actions in every repository."
    )
    groups: dict[str, AccessGroupSpec] = Field(
        default_factory=dict,
        max_length=256,
        description="Group name (lower case) -> its users, for policies' groups.",
    )
    metrics: MetricsAccessSpec | None = Field(None, description="Who may read /metrics.")

    @model_validator(mode="after")
    def _as_the_registry_has_it(self) -> AccessControlSpec:
        # zot lower-cases both maps' keys (viper): a group spelled with capitals would match no policy that
        # names it as written, and two patterns differing in case would be one.
        for what, keys, examples in (
            ("repository patterns", self.repositories, "every pattern"),
            ("group names", self.groups, "every group name (and name the groups so in policies)"),
        ):
            upper = sorted(k for k in keys if k != k.lower())
            if upper:
                found = ", ".join(json.dumps(k) for k in upper)
                raise ValueError(LOWER_CASE_KEYS.format(what=what, examples=examples) + f": {found}")
        # The registry's own checks (globs, the expansion bound of {a,b}, empty names), which CEL cannot say: a
        # spec that breaks them is Degraded (InvalidSpec), never a member that cannot start.
        self.zot_config()
        return self

    def zot_config(self) -> ZotAccessControl:
        """This accessControl as the registry validates it (zot_registry.config.AccessControlConfig)."""
        try:
            return ZotAccessControl.model_validate(self.zot_stanza())
        except ValidationError as err:
            found = [f"{dotted(path)}: {text}" if path else text for path, text in validation_problems(err)]
            raise ValueError("; ".join(found)) from None

    def zot_stanza(self) -> dict[str, Any]:
        """zot's http.accessControl; what is empty is left out (zot's zero values)."""
        stanza: dict[str, Any] = {
            "repositories": {pattern: _policy_group(group) for pattern, group in self.repositories.items()}
        }
        if self.admin_policy is not None:
            stanza["adminPolicy"] = _policy(self.admin_policy)
        if self.groups:
            stanza["groups"] = {name: {"users": list(group.users)} for name, group in self.groups.items()}
        if self.metrics is not None:
            metrics: dict[str, Any] = {}
            if self.metrics.users:
                metrics["users"] = list(self.metrics.users)
            if self.metrics.anonymous_policy:
                metrics["anonymousPolicy"] = list(self.metrics.anonymous_policy)
            stanza["metrics"] = metrics
        return stanza


def _policy(policy: AccessPolicySpec) -> dict[str, Any]:
    return {
        key: list(values)
        for key, values in (("users", policy.users), ("groups", policy.groups), ("actions", policy.actions))
        if values
    }


def _policy_group(group: RepositoryAccess) -> dict[str, Any]:
    stanza: dict[str, Any] = {}
    if group.policies:
        stanza["policies"] = [_policy(policy) for policy in group.policies]
    if group.default_policy:
        stanza["defaultPolicy"] = list(group.default_policy)
    if group.anonymous_policy:
        stanza["anonymousPolicy"] = list(group.anonymous_policy)
    return stanza


class MTLSAuth(_Model):
    ca_secret: CASecret = Field(
        alias="caSecret",
        description="CA certificates whose client certificates identify users (zot's http.tls.cacert), mounted "
        "into the members. A client without a certificate is anonymous, so the kubelet's probes still pass.",
    )
    identity_attributes: list[IdentityAttribute] = Field(
        default=["CommonName"],
        alias="identityAttributes",
        min_length=1,
        max_length=5,
        description="Where the user name is taken from, tried in order: the certificate's CommonName, its whole "
        "Subject, or its first Email, URI or DNSName SAN (see the SAN indexes).",
    )
    uri_san_pattern: str | None = Field(
        None,
        alias="uriSanPattern",
        min_length=1,
        max_length=1024,
        description="Regular expression (RE2) over the URI SAN whose first group is the user name, e.g. "
        "spiffe://example.org/workload/(.*); the whole URI when unset. Needs URI in identityAttributes.",
    )
    uri_san_index: int = Field(
        0, alias="uriSanIndex", ge=0, le=1024, description="Which URI SAN to use (0: the first)."
    )
    dns_san_index: int = Field(
        0, alias="dnsSanIndex", ge=0, le=1024, description="Which DNSName SAN to use (0: the first)."
    )
    email_san_index: int = Field(
        0, alias="emailSanIndex", ge=0, le=1024, description="Which Email SAN to use (0: the first)."
    )

    @field_validator("uri_san_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            groups = re.compile(value).groups
        except re.error as err:
            raise ValueError(f"is not a valid regular expression: {err}") from None
        if groups < 1:
            # zot takes the first group as the identity: a pattern without one identifies no one.
            raise ValueError("needs a group, e.g. spiffe://example.org/workload/(.*): its first group is the user name")
        return value

    @model_validator(mode="after")
    def _zot_rules(self) -> MTLSAuth:
        # The CRD's CEL rules (crd.py), which are zot 2.1.20's validateMTLS.
        attributes = self.identity_attributes
        if len(set(attributes)) != len(attributes):
            raise ValueError(MTLS_ATTRIBUTES_ONCE)
        if self.uri_san_pattern is not None and "URI" not in attributes:
            raise ValueError(MTLS_URI_ONLY.format(field="uriSanPattern"))
        if self.uri_san_index and "URI" not in attributes:
            raise ValueError(MTLS_URI_ONLY.format(field="uriSanIndex"))
        for field, attribute, index in (
            ("dnsSanIndex", "DNSName", self.dns_san_index),
            ("emailSanIndex", "Email", self.email_san_index),
        ):
            if index and not {"URI", attribute} <= set(attributes):
                raise ValueError(MTLS_SAN_INDEX.format(field=field, attribute=attribute))
        return self

    def zot_stanza(self) -> dict[str, Any]:
        """zot's http.auth.mtls (the CA is http.tls.cacert); indexes of 0 left out, as zot's omitempty."""
        stanza: dict[str, Any] = {"identityAttributes": list(self.identity_attributes)}
        if self.uri_san_pattern is not None:
            stanza["uriSanPattern"] = self.uri_san_pattern
        for key, value in (
            ("uriSanIndex", self.uri_san_index),
            ("dnsSanIndex", self.dns_san_index),
            ("emailSanIndex", self.email_san_index),
        ):
            if value:
                stanza[key] = value
        return stanza


class AuthSpec(_Model):
    htpasswd: HtpasswdAuth | None = Field(None, description="Basic authentication from an htpasswd Secret.")
    ldap: LDAPAuth | None = Field(
        None, description="Basic authentication against an LDAP server (with htpasswd: either may log a user in)."
    )
    mtls: MTLSAuth | None = Field(
        None,
        description="Users identified by client certificates of a CA (mutual TLS); requests without one are "
        "anonymous. Every member serves HTTPS (spec.tls), which mTLS needs.",
    )
    access_control: AccessControlSpec | None = Field(
        None,
        alias="accessControl",
        description="Who may do what, in zot's http.accessControl shape: without it, whoever authenticates may do "
        "everything.",
    )

    @model_validator(mode="after")
    def _logins_for_policies(self) -> AuthSpec:
        # zot's validateAuthzPolicies (the registry's NEEDS_LOGINS rule), on the registry's own model.
        if self.access_control is None or self.htpasswd or self.ldap or self.mtls:
            return self
        zot = self.access_control.zot_config()
        if not (zot.only_anonymous_policies() or zot.only_anonymous_metrics()):
            raise ValueError(ACCESS_NEEDS_LOGINS)
        return self


class FailoverSpec(_Model):
    automatic: bool = Field(False, description="Drop a member that stays not ready, re-admit it once ready.")
    after: str = Field(
        "5m",
        description="How long a member must be not ready (or ready again) first, as a Go-style duration: 30s, 5m, 1h.",
    )

    @field_validator("after")
    @classmethod
    def _duration(cls, value: str) -> str:
        return _go_duration(value)


class RebalanceSpec(_Model):
    mode: Literal["Auto", "InPlace", "Restart"] = Field(
        "Auto",
        description="How a membership change (a resize, a failover drop or re-admission, excludedMembers) is made. "
        "InPlace: the members stay up; each copies the repositories that change owner to their new owner, "
        "writes to them wait briefly while the rest is copied, then every member switches to the new list "
        "(needs this project's image and tls mode managed). Restart: every member restarts with the new list "
        "and no repository is copied. Auto: InPlace when spec.image is this project's image and tls mode is "
        "managed, else Restart.",
    )
    keep_old_copies_for: str = Field(
        "0s",
        alias="keepOldCopiesFor",
        description="How long a moved repository's copy stays on its old member after the switch before its "
        "space is reclaimed, as a Go-style duration: 0s, 1h, 24h.",
    )

    @field_validator("keep_old_copies_for")
    @classmethod
    def _duration(cls, value: str) -> str:
        return _go_duration(value)


# Sync (zot's extensions.sync) ------------------------------------------------------------------

# An upstream's origin: http:// or https://, a host (and port), no path, and no credentials (they would
# land in the ConfigMap: they belong in credentialsSecret).
SYNC_URL_PATTERN = r"^https?://[^/?#\s@]+/?$"
SYNC_URL_MESSAGE = (
    "each of urls must be an http:// or https:// URL of a registry, host[:port] without a path or credentials, "
    "e.g. https://registry-1.docker.io"
)
POLL_NEEDS_CONTENT = (
    "pollInterval needs content: zot polls nothing without content rules; add e.g. content: [{prefix: library/**}]"
)
SYNCS_NOTHING = "this registry syncs nothing: set onDemand: true, or a pollInterval with content"
RETRIES_NEED_DELAY = "retryDelay is required when using maxRetries: add e.g. retryDelay: 5m"
MAX_DELAY_NEEDS_DELAY = "retryDelay is required when using maxRetryDelay: add e.g. retryDelay: 5m"
STRIP_PREFIX_NEEDS_GLOB = (
    "can not use stripPrefix true and destination '/' without using glob patterns in prefix: "
    'end the prefix with "/*" or "/**", or set another destination'
)

SyncURL = Annotated[str, StringConstraints(max_length=2048)]


class SyncTags(_Model):
    regex: str | None = Field(
        None, max_length=1024, description="Only tags this regular expression matches (RE2, unanchored)."
    )
    exclude_regex: str | None = Field(
        None, alias="excludeRegex", max_length=1024, description="Leave out tags this regular expression matches."
    )
    semver: bool = Field(False, description="Only tags that are semantic versions (v1.2.3, 1.2).")


class SyncContent(_Model):
    prefix: str = Field(
        min_length=1,
        max_length=1024,
        description="Upstream repositories this rule covers, a glob: library/** (everything under library/), "
        "team/*, ** (all).",
    )
    destination: str | None = Field(
        None, max_length=1024, description="Local name the repositories are stored under, e.g. /docker."
    )
    strip_prefix: bool = Field(
        False,
        alias="stripPrefix",
        description="Drop the prefix's fixed part from the name before adding destination.",
    )
    tags: SyncTags | None = Field(None, description="Which tags periodic sync takes (on demand, the asked one).")


class SyncCertSecret(_Model):
    name: str = Field(
        description="Secret in the ZotCluster's namespace mounted as this registry's certDir: ca.crt (CA bundle "
        "trusted besides the system CAs) and, for a client certificate, client.cert and client.key, or else "
        "tls.crt and tls.key (mounted as client.cert and client.key). At least ca.crt or a client pair."
    )


class SyncCredentialsSecret(_Model):
    name: str = Field(description="Name of a Secret in the ZotCluster's namespace.")
    key: str = Field(
        "credentials.json",
        description='Key holding zot\'s credentials file: JSON {"host:port": {"username": ..., "password": ...}}.',
    )


class SyncRegistry(_Model):
    urls: list[SyncURL] = Field(
        min_length=1,
        max_length=16,
        description="The upstream, then mirrors tried in order: http:// or https:// URLs, e.g. "
        "https://registry-1.docker.io.",
    )
    on_demand: bool = Field(
        False,
        alias="onDemand",
        description="Pull-through: a pull of an image not stored (or a tag that moved upstream) syncs it first.",
    )
    poll_interval: str | None = Field(
        None,
        alias="pollInterval",
        description="Sync the repositories content covers this often (a Go duration: 30m, 6h); needs content.",
    )
    tls_verify: bool = Field(True, alias="tlsVerify", description="Verify the upstream's TLS certificate.")
    cert_secret: SyncCertSecret | None = Field(
        None,
        alias="certSecret",
        description="CA bundle and client certificate for this upstream, from a Secret mounted as its certDir.",
    )
    max_retries: int | None = Field(
        None, alias="maxRetries", ge=0, le=100, description="Attempts after a failed request; needs retryDelay."
    )
    retry_delay: str | None = Field(
        None, alias="retryDelay", description="Wait between attempts (a Go duration: 5s, 5m)."
    )
    max_retry_delay: str | None = Field(
        None,
        alias="maxRetryDelay",
        description="Upper bound of the wait as it doubles (a Go duration, at least retryDelay); needs retryDelay.",
    )
    sync_timeout: str | None = Field(
        None,
        alias="syncTimeout",
        description="Bound of each upstream request and of how long a pull waits for a sync (a Go duration: 30m).",
    )
    content: list[SyncContent] = Field(
        default_factory=list,
        max_length=64,
        description="Which upstream repositories are synced and under which local name; first match wins. "
        "Empty: everything, on demand.",
    )

    @field_validator("poll_interval", "retry_delay", "max_retry_delay", "sync_timeout")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        return None if value is None else _go_duration(value)

    @model_validator(mode="after")
    def _syncs_something(self) -> SyncRegistry:
        # The CEL rules of the CRD, for what never passes the API server (local mode, render) ...
        if not all(re.fullmatch(SYNC_URL_PATTERN, url) for url in self.urls):
            raise ValueError(SYNC_URL_MESSAGE)
        if self.poll_interval is not None and not self.content:
            raise ValueError(POLL_NEEDS_CONTENT)
        if not self.on_demand and self.poll_interval is None:
            raise ValueError(SYNCS_NOTHING)
        if self.max_retries is not None and self.retry_delay is None:
            raise ValueError(RETRIES_NEED_DELAY)
        if self.max_retry_delay is not None and self.retry_delay is None:
            raise ValueError(MAX_DELAY_NEEDS_DELAY)
        # ... and the registry's own checks of the stanza (globs, regular expressions, zot's rules), which CEL
        # cannot say: a spec that breaks them is Degraded (InvalidSpec), never a member that cannot start.
        try:
            ZotSyncRegistry.model_validate(self.zot_stanza(None))
        except ValidationError as err:
            found = [f"{dotted(path)}: {text}" if path else text for path, text in validation_problems(err)]
            raise ValueError("; ".join(found)) from None
        return self

    def zot_stanza(self, cert_dir: str | None) -> dict[str, Any]:
        """This registry in zot's extensions.sync.registries, its certDir at `cert_dir`."""
        stanza: dict[str, Any] = {"urls": list(self.urls), "onDemand": self.on_demand, "tlsVerify": self.tls_verify}
        if cert_dir is not None:
            stanza["certDir"] = cert_dir
        for key, value in (
            ("pollInterval", self.poll_interval),
            ("maxRetries", self.max_retries),
            ("retryDelay", self.retry_delay),
            ("maxRetryDelay", self.max_retry_delay),
            ("syncTimeout", self.sync_timeout),
        ):
            if value is not None:
                stanza[key] = value
        if self.content:
            stanza["content"] = [_content_stanza(rule) for rule in self.content]
        return stanza


def _content_stanza(rule: SyncContent) -> dict[str, Any]:
    stanza: dict[str, Any] = {"prefix": rule.prefix}
    if rule.destination is not None:
        stanza["destination"] = rule.destination
    if rule.strip_prefix:
        stanza["stripPrefix"] = True
    if rule.tags is not None:
        tags: dict[str, Any] = {}
        if rule.tags.regex is not None:
            tags["regex"] = rule.tags.regex
        if rule.tags.exclude_regex is not None:
            tags["excludeRegex"] = rule.tags.exclude_regex
        if rule.tags.semver:
            tags["semver"] = True
        stanza["tags"] = tags
    return stanza


class SyncSpec(_Model):
    registries: list[SyncRegistry] = Field(
        min_length=1,
        max_length=16,
        description="Upstream registries; on demand, the first whose content covers a name and has it serves it.",
    )
    credentials_secret: SyncCredentialsSecret | None = Field(
        None,
        alias="credentialsSecret",
        description="Secret key holding the upstreams' credentials (zot's credentials file). Never written into "
        "the ConfigMap: mounted read-only into each member, and its path set as credentialsFile.",
    )


class ServiceSpec(_Model):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field("ClusterIP", description="Client Service type.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations of the client Service.")
    node_port: int | None = Field(
        None,
        alias="nodePort",
        ge=30000,
        le=32767,
        description="Fixed node port (type NodePort or LoadBalancer); assigned when unset.",
    )


class PodDisruptionBudgetSpec(_Model):
    enabled: bool = Field(True, description="Create a PodDisruptionBudget.")
    max_unavailable: int = Field(1, alias="maxUnavailable", ge=0, description="Members that may be down at once.")


class ZotClusterSpec(_Model):
    replicas: int = Field(3, ge=1, le=256, description="Number of members.")
    image: str = Field(DEFAULT_IMAGE, description="Registry image; an upstream zot image works too.")
    init_image: str = Field(
        DEFAULT_IMAGE,
        alias="initImage",
        description="Image of the members' init container, which writes their complete config (the ConfigMap's "
        "plus values from Secrets, such as cache.redis.urlSecret) into an in-memory volume. It runs "
        "`zot-operator`, so it is this project's image also when spec.image is an upstream zot image. "
        "Only used when the config takes a value from a Secret.",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", alias="imagePullPolicy", description="Image pull policy of the members."
    )
    port: int = Field(5000, ge=1, le=65535, description="Port every member listens on.")
    cluster_domain: str = Field("cluster.local", alias="clusterDomain", description="DNS domain of the cluster.")
    storage: StorageSpec = Field(default_factory=StorageSpec, description="Where repositories are stored.")
    cache: CacheSpec | None = Field(
        None, description="Cache shared by all members: required with storage mode s3, unused with local storage."
    )
    tls: TLSSpec = Field(default_factory=TLSSpec, description="TLS of clients and between members.")
    auth: AuthSpec | None = Field(None, description="Client authentication.")
    sync: SyncSpec | None = Field(
        None,
        description="Sync images from upstream registries (zot's extensions.sync): a pull-through cache "
        "(onDemand) or mirrors polled periodically. With storage mode s3, the members stage downloads in an "
        "emptyDir at /var/lib/zot-sync (zot's downloadDir).",
    )
    hash_key_secret: str | None = Field(
        None,
        alias="hashKeySecret",
        description="Secret (key hashKey, 16 bytes) with the routing key; generated as <name>-hashkey when unset. "
        "Immutable: a new key moves every repository.",
    )
    excluded_members: list[int] = Field(
        default_factory=list,
        alias="excludedMembers",
        max_length=256,
        description="Ordinals dropped from the member list by hand.",
    )
    failover: FailoverSpec = Field(default_factory=FailoverSpec, description="Dropping members that stay down.")
    rebalance: RebalanceSpec = Field(
        default_factory=RebalanceSpec, description="How membership changes move repositories to their new owners."
    )
    routing: Literal["Zot", "Rendezvous"] = Field(
        "Zot",
        description="Which member owns a repository. Zot: zot's rule, SipHash of the name modulo the number of "
        "members (a resize moves most repositories: 3 -> 4 members, 75%). Rendezvous: each member scores "
        "SipHash of the name and its address, the highest owns it (a resize moves about 1/(N+1): 3 -> 4, "
        "25%); only with this project's image on every member. Immutable: set it when the cluster is created.",
    )
    log_level: Literal["debug", "info", "warn", "error"] = Field(
        "info", alias="logLevel", description="Registry log level."
    )
    resources: dict[str, Any] = Field(default_factory=dict, description="Container resources of the members.")
    node_selector: dict[str, str] = Field(default_factory=dict, alias="nodeSelector", description="Pod nodeSelector.")
    tolerations: list[dict[str, Any]] = Field(default_factory=list, description="Pod tolerations.")
    affinity: dict[str, Any] | None = Field(None, description="Pod affinity; by default members prefer distinct nodes.")
    pod_annotations: dict[str, str] = Field(
        default_factory=dict, alias="podAnnotations", description="Annotations of the member pods."
    )
    priority_class_name: str | None = Field(None, alias="priorityClassName", description="Pod priority class.")
    service_account_name: str | None = Field(None, alias="serviceAccountName", description="Pod service account.")
    service: ServiceSpec = Field(default_factory=ServiceSpec, description="The client Service.")
    pod_disruption_budget: PodDisruptionBudgetSpec = Field(
        default_factory=PodDisruptionBudgetSpec, alias="podDisruptionBudget", description="Voluntary disruptions."
    )

    # Kubernetes' own types, free-form in the CRD: checked as the API server checks the pod template (kube_values).
    @field_validator("resources")
    @classmethod
    def _resources(cls, value: dict[str, Any]) -> dict[str, Any]:
        raise_all("resources", list(resources_problems(value)))
        return value

    @field_validator("tolerations")
    @classmethod
    def _tolerations(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise_all("tolerations", list(tolerations_problems(value)))
        return value

    @model_validator(mode="after")
    def _storage_needs(self) -> ZotClusterSpec:
        # The same rules as the CRD's CEL validations, for what never passes the API server (local mode, render).
        if self.storage.mode == "s3" and self.storage.s3 is None:
            raise ValueError("storage mode s3 needs storage.s3 (bucket, region, ...)")
        if self.storage.mode == "s3" and self.cache is None:
            raise ValueError("storage mode s3 needs a shared cache: cache.redis or cache.dynamodb")
        if self.storage.mode == "local" and self.cache is not None:
            raise ValueError("cache is only used with storage mode s3 (storage local to each member keeps its own)")
        if self.rebalance.mode == "InPlace" and self.tls.mode == "secret":
            raise ValueError(IN_PLACE_NEEDS_MANAGED_TLS)
        if self.routing == "Rendezvous" and image_repository(self.image) != IMAGE_REPOSITORY:
            raise ValueError(ROUTING_NEEDS_OUR_IMAGE)
        return self


Phase = Literal["Pending", "Creating", "Running", "Restarting", "Degraded", "Paused"]


class Condition(_Model):
    type: str = Field(
        description="Ready, Progressing, Degraded, Rebalancing, RepositoriesMoved, VolumesAtSize or Paused."
    )
    status: Literal["True", "False", "Unknown"] = Field(description="Condition status.")
    reason: str = Field("", description="One CamelCase word.")
    message: str = Field("", description="What a human should know.")
    last_transition_time: str | None = Field(None, alias="lastTransitionTime", description="RFC 3339 time.")


class RebalanceProgress(_Model):
    done: int = Field(0, description="Done so far.")
    total: int = Field(0, description="To do in all (it grows while members find more to copy).")


class RebalanceStatus(_Model):
    epoch: int = Field(description="The epoch of the change: the members' list epoch once it is done.")
    from_members: list[str] = Field(alias="from", description="The member list before the change.")
    to_members: list[str] = Field(alias="to", description="The member list after the change.")
    step: Literal["copy", "freeze", "switch"] = Field(
        description="The step every member is asked for: copy, freeze (writes to moving repositories wait), switch."
    )
    started_at: str = Field(alias="startedAt", description="RFC 3339 time the change (at this epoch) started.")
    repositories: RebalanceProgress = Field(
        default_factory=RebalanceProgress, description="Repositories copied to their new owner, summed over members."
    )
    bytes: RebalanceProgress = Field(
        default_factory=RebalanceProgress, description="Bytes copied to new owners, summed over members."
    )
    failures: int = Field(0, description="Copies that failed and were retried, summed over members.")
    progress: str = Field("", description="Repositories and bytes done, for `kubectl get zc`.")
    reason: str = Field("", description="The reason of the Rebalancing condition.")
    message: str = Field("", description="What the change waits for, or the last copy failure.")
    waiting_for: list[str] = Field(
        default_factory=list,
        alias="waitingFor",
        description="Members the step waits for: not answering, or not able to.",
    )
    waiting_since: str = Field(
        "", alias="waitingSince", description="RFC 3339 time the change started waiting for members; empty if not."
    )
    last_warning: str = Field(
        "", alias="lastWarning", description="The reason of the last RebalanceFailing event, sent once per reason."
    )


VolumeState = Literal["Expanding", "FileSystemResizePending", "ExpansionFailed", "ExpansionNotAllowed", "ClaimPending"]


class VolumeStatus(_Model):
    """A member whose claim is below storage.local.size, and why (volumes.py)."""

    member: int = Field(description="The member's ordinal.")
    claim: str = Field(description="Its PersistentVolumeClaim.")
    requested: str = Field("", description="What the claim asks for (spec.resources.requests.storage).")
    capacity: str = Field("", description="What its volume has (status.capacity.storage); empty while unbound.")
    state: VolumeState = Field(
        description="Expanding: the storage driver grows the volume. FileSystemResizePending: the volume has "
        "grown, its file system grows on the member's node. ExpansionFailed: the driver or the node reported "
        "an error. ExpansionNotAllowed: the claim's StorageClass does not allow expansion (or the API server "
        "refused it). ClaimPending: the claim is not bound yet, and only a bound claim can be expanded."
    )
    message: str = Field("", description="What a human should know.")


class ZotClusterStatus(_Model):
    observed_generation: int | None = Field(
        None, alias="observedGeneration", description="The generation of the spec last acted on."
    )
    members: list[str] = Field(default_factory=list, description="The ordered member list every pod runs with.")
    epoch: int = Field(0, description="The epoch of that list: each membership change made in place adds one.")
    replicas: int = Field(0, description="Pods of the StatefulSet (for the scale subresource).")
    ready_members: int = Field(0, alias="readyMembers", description="Members that pass their readiness probe.")
    phase: Phase = Field("Pending", description="Summary of the conditions.")
    selector: str = Field("", description="Label selector of the member pods (for the scale subresource).")
    hash_key_secret: str | None = Field(None, alias="hashKeySecret", description="The hash key Secret in use.")
    failed_members: list[int] = Field(
        default_factory=list, alias="failedMembers", description="Ordinals dropped by automatic failover."
    )
    not_ready_since: dict[str, str] = Field(
        default_factory=dict, alias="notReadySince", description="Member ordinal -> when it was first seen not ready."
    )
    running_since: dict[str, str] = Field(
        default_factory=dict,
        alias="runningSince",
        description="Dropped ordinal -> since when its container runs again.",
    )
    moved_repositories: str | None = Field(
        None,
        alias="movedRepositories",
        description="On the last membership change with local storage: the share of repositories whose owner changed.",
    )
    rebalance: RebalanceStatus | None = Field(
        None, description="The membership change under way (spec.rebalance mode InPlace); none when there is none."
    )
    volumes: list[VolumeStatus] = Field(
        default_factory=list,
        description="With storage local to each member: the members whose claim is below storage.local.size, "
        "and why; empty when every member's volume has it.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Progressing, Degraded, Rebalancing, RepositoriesMoved, VolumesAtSize, Paused.",
    )
