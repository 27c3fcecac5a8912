"""spec.auth (ldap, mtls, accessControl) rendered into zot's http.auth, http.tls.cacert and http.accessControl,
its files mounted from Secrets, the operator's LDAP credentials Secret, and the rules: pure, no API server.

The rendered config must load through the registry's own validation (`parse_config`), with the files it
names where the member's volumes put them (`project`, as a kubelet would: the registry reads the LDAP
credentials file when it loads the config). The LDAP tests need the registry's http.auth.ldap: a registry
without it refuses the key (UNSUPPORTED_KEYS)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from zot_operator.auth import bind_password, ca_problem, ldap_credentials_file, ldap_credentials_secret
from zot_operator.cli import _load_cluster
from zot_operator.crd import SPEC_RULES, crd_yaml
from zot_operator.local.manifest import ManifestError, load_manifest
from zot_operator.local.state import prepare
from zot_operator.member_control import MemberApi
from zot_operator.models import (
    ACCESS_NEEDS_LOGINS,
    LDAP_ADDRESS_MESSAGE,
    LDAP_BASE_DN_MESSAGE,
    LDAP_BIND_TOGETHER,
    LDAP_CA_NEEDS_TLS,
    LDAP_CA_WITH_SKIP_VERIFY,
    LDAP_FILTER_MESSAGE,
    LDAP_SKIP_VERIFY_NEEDS_TLS,
    LDAP_START_TLS_NEEDS_INSECURE,
    MTLS_ATTRIBUTES_ONCE,
    ZotClusterSpec,
)
from zot_operator.names import ClusterRef
from zot_operator.reconcile import reconcile
from zot_operator.render import render
from zot_operator.statefulset import SECRETS_ANNOTATION, start_secrets
from zot_operator.status import as_patch
from zot_registry.certs import KeyPair, make_ca
from zot_registry.config import AccessControlConfig, parse_config

from tests.support.memory_kube import MemoryKube
from tests.support.paths import REPO_ROOT
from tests.support.pod_runner import remap_paths

AUTH_EXAMPLE = REPO_ROOT / "examples" / "zotcluster-auth.yaml"
KEY = "0123456789abcdef"
BIND_PASSWORD = "s3archer-pw"
CA_PEM = make_ca("unit test client CA").cert_pem

LDAP: dict[str, Any] = {
    "address": "ldap.example.org",
    "baseDN": "ou=Users,dc=example,dc=org",
    "userAttribute": "uid",
    "bindDN": "cn=searcher,dc=example,dc=org",
    "bindPasswordSecret": {"name": "ldap-bind", "key": "password"},
}
MTLS: dict[str, Any] = {"caSecret": {"name": "ci-clients"}}
ACCESS: dict[str, Any] = {
    "repositories": {"**": {"policies": [{"users": ["alice"], "actions": ["read", "create"]}]}},
    "adminPolicy": {"users": ["admin"], "actions": ["read", "create", "update", "delete"]},
}


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind)


def cluster(auth: dict[str, Any], uid: str = "", **spec: Any) -> ClusterRef:
    return ClusterRef("demo", "default", uid, ZotClusterSpec.model_validate({"auth": auth, **spec}))


def http_of(ref: ClusterRef) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(render(ref, KEY).config_text)["http"]
    return found


def pod_of(ref: ClusterRef, versions: dict[str, str] | None = None) -> dict[str, Any]:
    found: dict[str, Any] = by_kind(render(ref, KEY, secret_versions=versions).objects, "StatefulSet")["spec"][
        "template"
    ]
    return found


# Rendering ----------------------------------------------------------------------------------------


def test_the_auth_example_renders_zots_keys_with_paths_only() -> None:
    ref = _load_cluster(str(AUTH_EXAMPLE))
    rendered = render(ref, KEY)
    http = json.loads(rendered.config_text)["http"]
    assert http["tls"] == {
        "cert": "/etc/zot/tls/tls.crt",
        "key": "/etc/zot/tls/tls.key",
        "cacert": "/etc/zot/mtls/ca.crt",
    }
    assert http["auth"] == {
        "ldap": {
            "address": "ldap.example.org",
            "port": 636,
            "insecure": False,
            "startTLS": False,
            "skipVerify": False,
            "subtreeSearch": True,
            "baseDN": "ou=Users,dc=example,dc=org",
            "userAttribute": "uid",
            "userGroupAttribute": "memberOf",
            "credentialsFile": "/etc/zot/ldap/credentials/credentials.json",
            "caCert": "/etc/zot/ldap/ca/ca.crt",
        },
        "mtls": {"identityAttributes": ["CommonName"]},
    }
    access = http["accessControl"]
    assert set(access["repositories"]) == {"**", "ci/**", "public/**"}
    assert access["repositories"]["public/**"] == {"anonymousPolicy": ["read"], "defaultPolicy": ["read"]}
    assert access["adminPolicy"] == {
        "groups": ["cn=registry-admins,ou=Groups,dc=example,dc=org"],
        "actions": ["read", "create", "update", "delete"],
    }
    # The registry's own model takes the stanza as it is (no value of a Secret in it, nor the bind DN's).
    assert AccessControlConfig.model_validate(access).only_anonymous_policies() is False
    assert "ldap-searcher" not in rendered.config_text
    pod = by_kind(rendered.objects, "StatefulSet")["spec"]["template"]["spec"]
    volumes = {
        v["name"]: v["secret"] for v in pod["volumes"] if v["name"] in ("ldap-credentials", "ldap-ca", "mtls-ca")
    }
    assert volumes == {
        "ldap-credentials": {
            "secretName": "registry-ldap-credentials",
            "defaultMode": 0o440,
            "items": [{"key": "credentials.json", "path": "credentials.json"}],
        },
        "ldap-ca": {"secretName": "ldap-ca", "defaultMode": 0o440, "items": [{"key": "ca.crt", "path": "ca.crt"}]},
        "mtls-ca": {"secretName": "ci-clients", "defaultMode": 0o440, "items": [{"key": "ca.crt", "path": "ca.crt"}]},
    }
    [member] = pod["containers"]
    assert [m for m in member["volumeMounts"] if m["name"] in volumes] == [
        {"name": "ldap-credentials", "mountPath": "/etc/zot/ldap/credentials", "readOnly": True},
        {"name": "ldap-ca", "mountPath": "/etc/zot/ldap/ca", "readOnly": True},
        {"name": "mtls-ca", "mountPath": "/etc/zot/mtls", "readOnly": True},
    ]
    assert "env" not in member and "initContainers" not in pod  # nothing of the Secrets elsewhere
    # The CAs are read when a member starts (a new CA rolls them); the password through the operator's Secret.
    assert start_secrets(ref.spec) == ["ci-clients", "ldap-ca"]


def test_htpasswd_alone_renders_as_before() -> None:
    http = http_of(cluster({"htpasswd": {"secretName": "demo-htpasswd"}}))
    assert http["auth"] == {"htpasswd": {"path": "/etc/zot/auth/htpasswd"}}
    assert "cacert" not in http["tls"] and "accessControl" not in http
    pod = pod_of(cluster({"htpasswd": {"secretName": "demo-htpasswd", "key": "users"}}))
    assert {
        "name": "auth",
        "secret": {
            "secretName": "demo-htpasswd",
            "defaultMode": 0o440,
            "items": [{"key": "users", "path": "htpasswd"}],
        },
    } in pod["spec"]["volumes"]
    assert {"name": "auth", "mountPath": "/etc/zot/auth", "readOnly": True} in pod["spec"]["containers"][0][
        "volumeMounts"
    ]


@pytest.mark.parametrize(
    ("ldap", "port"),
    [({}, 636), ({"insecure": True}, 389), ({"insecure": True, "startTLS": True}, 389), ({"port": 3269}, 3269)],
)
def test_the_ldap_port_is_the_one_of_the_connection_zot_makes(ldap: dict[str, Any], port: int) -> None:
    assert http_of(cluster({"ldap": {**LDAP, **ldap}}))["auth"]["ldap"]["port"] == port


def test_ldap_without_a_bind_dn_binds_anonymously_and_mounts_no_credentials() -> None:
    ldap = {k: v for k, v in LDAP.items() if k not in ("bindDN", "bindPasswordSecret")}
    ref = cluster({"ldap": {**ldap, "userFilter": "(!(nsaccountlock=TRUE))"}})
    stanza = http_of(ref)["auth"]["ldap"]
    assert "credentialsFile" not in stanza and stanza["userFilter"] == "(!(nsaccountlock=TRUE))"
    assert not [v for v in pod_of(ref)["spec"]["volumes"] if v["name"].startswith("ldap")]


def test_mtls_renders_the_ca_as_http_tls_cacert_with_the_server_certificate_in_either_tls_mode() -> None:
    """zot's IsMTLSAuthEnabled: http.tls has cert, key and cacert. The members always serve HTTPS (spec.tls
    has no mode without TLS), so mTLS always has what it needs."""
    mtls = {**MTLS, "identityAttributes": ["URI", "CommonName"], "uriSanPattern": "spiffe://example.org/ci/(.*)"}
    for tls in ({"mode": "managed"}, {"mode": "secret", "secretName": "own-tls"}):
        http = http_of(cluster({"mtls": mtls}, tls=tls))
        assert set(http["tls"]) == {"cert", "key", "cacert"} and http["tls"]["cacert"] == "/etc/zot/mtls/ca.crt"
        assert http["auth"] == {
            "mtls": {"identityAttributes": ["URI", "CommonName"], "uriSanPattern": "spiffe://example.org/ci/(.*)"}
        }
    indexes = {**MTLS, "identityAttributes": ["URI", "DNSName"], "uriSanIndex": 1, "dnsSanIndex": 2}
    assert http_of(cluster({"mtls": indexes}))["auth"]["mtls"] == {
        "identityAttributes": ["URI", "DNSName"],
        "uriSanIndex": 1,
        "dnsSanIndex": 2,
    }


def test_every_auth_mode_keeps_the_kubelets_probes_outside_v2_and_without_credentials() -> None:
    """zot issues 1836 and 2932: probes on /v2/ (or needing a certificate) fail once auth is on. The probes
    are the same in every mode: HTTPS GETs of /startupz, /livez, /readyz, no header, no certificate."""
    modes = [
        {},
        {"htpasswd": {"secretName": "demo-htpasswd"}},
        {"ldap": LDAP},
        {"htpasswd": {"secretName": "demo-htpasswd"}, "accessControl": ACCESS},
        {"mtls": MTLS, "accessControl": ACCESS},
        json.loads(json.dumps(yaml.safe_load(AUTH_EXAMPLE.read_text())["spec"]["auth"])),
    ]
    for auth in modes:
        [member] = pod_of(cluster(auth) if auth else ClusterRef("demo", "default"))["spec"]["containers"]
        probes = {kind: member[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
        assert probes == {
            "startupProbe": {"path": "/startupz", "port": "registry", "scheme": "HTTPS"},
            "livenessProbe": {"path": "/livez", "port": "registry", "scheme": "HTTPS"},
            "readinessProbe": {"path": "/readyz", "port": "registry", "scheme": "HTTPS"},
        }, auth


# The registry loads what the operator renders ----------------------------------------------------------


def test_htpasswd_with_access_control_loads_in_the_registry() -> None:
    ref = cluster({"htpasswd": {"secretName": "demo-htpasswd"}, "accessControl": ACCESS})
    loaded = parse_config(render(ref, KEY).config_text, "rendered config.json").config.http
    assert loaded.access_control is not None and loaded.access_control.admin_policy.users == ["admin"]
    assert loaded.auth is not None and loaded.auth.htpasswd is not None


def test_anonymous_only_access_control_loads_without_a_login_method() -> None:
    ref = cluster({"accessControl": {"repositories": {"public/**": {"anonymousPolicy": ["read"]}}}})
    loaded = parse_config(render(ref, KEY).config_text, "rendered config.json").config.http
    assert loaded.auth is None and loaded.access_control is not None


def project(ref: ClusterRef, secrets: dict[str, dict[str, bytes]], root: Path) -> str:
    """The member container's config as it would read it: the Secret volumes of `secrets` (and the operator's
    LDAP credentials Secret) made into files under `root` with their items, as a kubelet projects them, and
    the in-pod paths mapped onto them (the other volumes as empty folders)."""
    rendered = render(ref, KEY)
    if ref.spec.auth and ref.spec.auth.ldap and ref.spec.auth.ldap.bind_password_secret:
        derived = ldap_credentials_secret(ref, BIND_PASSWORD)
        secrets = {**secrets, derived["metadata"]["name"]: {k: base64.b64decode(v) for k, v in derived["data"].items()}}
    pod = by_kind(rendered.objects, "StatefulSet")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    for volume in pod["volumes"]:
        folder = root / volume["name"]
        folder.mkdir(parents=True)
        if "secret" in volume and volume["secret"]["secretName"] in secrets:
            data = secrets[volume["secret"]["secretName"]]
            for item in volume["secret"]["items"]:
                (folder / item["path"]).write_bytes(data[item["key"]])
    mounts = {m["mountPath"]: root / m["name"] / m.get("subPath", "") for m in container["volumeMounts"]}
    return json.dumps(remap_paths(json.loads(rendered.config_text), mounts))


def test_ldap_with_access_control_loads_in_the_registry(tmp_path: Path) -> None:
    """Waits for the registry's http.auth.ldap (refused until then): with the files where the volumes put them,
    the operator's credentials file among them."""
    ref = cluster(
        {"ldap": {**LDAP, "userGroupAttribute": "memberOf", "caSecret": {"name": "ldap-ca"}}, "accessControl": ACCESS}
    )
    config = project(ref, {"ldap-ca": {"ca.crt": CA_PEM}}, tmp_path)
    loaded = parse_config(config, "member config.json").config.http
    assert loaded.auth is not None and loaded.access_control is not None


def test_mtls_with_access_control_loads_in_the_registry(tmp_path: Path) -> None:
    """Waits for the registry's http.auth.mtls and http.tls.cacert (refused until then)."""
    ref = cluster({"mtls": MTLS, "accessControl": ACCESS})
    assert parse_config(render(ref, KEY).config_text, "rendered config.json").config.http.tls is not None
    loaded = parse_config(project(ref, {"ci-clients": {"ca.crt": CA_PEM}}, tmp_path), "member config.json")
    assert loaded.config.http.tls is not None and loaded.config.http.tls.cacert == str(tmp_path / "mtls-ca" / "ca.crt")


# Validation ---------------------------------------------------------------------------------------


# 40 x 40 alternatives: more than the registry expands (zot_registry.globs.MAX_ALTERNATIVES).
TEAMS = ",".join(f"team{i}" for i in range(40))


def ldap(**settings: Any) -> dict[str, Any]:
    return {"ldap": {**LDAP, **settings}}


def mtls(**settings: Any) -> dict[str, Any]:
    return {"mtls": {**MTLS, **settings}}


INVALID: list[tuple[dict[str, Any], str]] = [
    (ldap(address="ldap://ldap.example.org"), LDAP_ADDRESS_MESSAGE),
    (ldap(address="ldap.example.org:389"), LDAP_ADDRESS_MESSAGE),
    (ldap(address="ldap.example.org/"), LDAP_ADDRESS_MESSAGE),
    (ldap(baseDN="Users"), LDAP_BASE_DN_MESSAGE),
    (ldap(userAttribute="u id"), "userAttribute must be an LDAP attribute name"),
    (ldap(userGroupAttribute="member Of"), "userGroupAttribute must be an LDAP attribute name"),
    (ldap(userFilter="(!(nsaccountlock=TRUE)"), LDAP_FILTER_MESSAGE),
    (ldap(userFilter=")(uid=*"), LDAP_FILTER_MESSAGE),
    (ldap(port=0), "greater than or equal to 1"),
    (ldap(port=65536), "less than or equal to 65535"),
    (ldap(bindDN=None), LDAP_BIND_TOGETHER),
    ({"ldap": {k: v for k, v in LDAP.items() if k != "bindPasswordSecret"}}, LDAP_BIND_TOGETHER),
    (ldap(startTLS=True), LDAP_START_TLS_NEEDS_INSECURE),
    (ldap(insecure=True, caSecret={"name": "ldap-ca"}), LDAP_CA_NEEDS_TLS),
    (ldap(insecure=True, skipVerify=True), LDAP_SKIP_VERIFY_NEEDS_TLS),
    (ldap(skipVerify=True, caSecret={"name": "ldap-ca"}), LDAP_CA_WITH_SKIP_VERIFY),
    ({"ldap": {k: v for k, v in LDAP.items() if k != "userAttribute"}}, "Field required"),
    (ldap(bindDn="cn=x"), "Extra inputs are not permitted"),
    (mtls(identityAttributes=["CN"]), "Input should be 'CommonName', 'Subject', 'Email', 'URI' or 'DNSName'"),
    (mtls(identityAttributes=[]), "at least 1 item"),
    (mtls(identityAttributes=["URI", "URI"]), MTLS_ATTRIBUTES_ONCE),
    (mtls(uriSanPattern="spiffe://x/(.*)"), "uriSanPattern applies to the URI identity attribute only"),
    (mtls(uriSanIndex=1), "uriSanIndex applies to the URI identity attribute only"),
    (mtls(identityAttributes=["DNSName"], dnsSanIndex=1), "URI too (zot 2.1.20 accepts dnsSanIndex only with URI"),
    (mtls(identityAttributes=["URI"], emailSanIndex=1), "emailSanIndex picks among the Email SANs"),
    (mtls(identityAttributes=["URI"], uriSanPattern="spiffe://(x"), "is not a valid regular expression"),
    (mtls(identityAttributes=["URI"], uriSanPattern="spiffe://x/.*"), "needs a group"),
    (mtls(uriSanIndex=-1), "greater than or equal to 0"),
    ({"mtls": {}}, "Field required"),
    ({"accessControl": ACCESS}, ACCESS_NEEDS_LOGINS),
    ({"accessControl": {"repositories": {"**": {"defaultPolicy": ["read"]}}}}, ACCESS_NEEDS_LOGINS),
    (
        {"accessControl": {"repositories": {"**": {"anonymousPolicy": ["read"]}}, "adminPolicy": {"users": ["a"]}}},
        ACCESS_NEEDS_LOGINS,
    ),
    # what only the registry's own checks find (CEL cannot): they run on the operator's side too
    ({**mtls(), "accessControl": {"repositories": {"team/[abc": {}}}}, "is not a valid glob pattern"),
    ({**mtls(), "accessControl": {"repositories": {"": {}}}}, "an empty pattern matches no repository"),
    ({**mtls(), "accessControl": {"repositories": {"Team/**": {}}}}, "repository patterns are lower-cased by zot"),
    ({**mtls(), "accessControl": {"groups": {"Admins": {"users": ["a"]}}}}, "group names are lower-cased by zot"),
    ({**mtls(), "accessControl": {"adminPolicy": {"actions": ["push"]}}}, "Input should be 'read'"),
    ({**mtls(), "accessControl": {"adminPolicy": {"users": [""]}}}, "at least 1 character"),
    (
        {**mtls(), "accessControl": {"repositories": {"**": {"policies": [{"actions": ["read"], "conditions": []}]}}}},
        "Extra inputs are not permitted",
    ),
    (
        {**mtls(), "accessControl": {"repositories": {f"{{{TEAMS}}}/{{{TEAMS}}}": {}}}},
        "alternatives expand to",
    ),
]


@pytest.mark.parametrize(("auth", "message"), INVALID)
def test_invalid_auth_specs_say_why(auth: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        ZotClusterSpec.model_validate({"auth": auth})
    assert message in str(err.value)


@pytest.mark.parametrize(
    "auth",
    [
        # what the login rule lets through: a login method, or only anonymous policies (zot's rule)
        {"ldap": LDAP, "accessControl": ACCESS},
        {"mtls": MTLS, "accessControl": ACCESS},
        {"accessControl": {"repositories": {"**": {"anonymousPolicy": ["read"], "policies": [{"groups": ["g"]}]}}}},
        {"accessControl": {"metrics": {"anonymousPolicy": ["read"]}}},
        # zot's SAN rules, satisfied
        mtls(identityAttributes=["URI", "DNSName"], dnsSanIndex=1),
        mtls(identityAttributes=["Email", "URI"], emailSanIndex=2, uriSanPattern="spiffe://x/(.*)"),
        # StartTLS, as zot 2.1.20 makes it: a plain connection upgraded, with its CA
        ldap(insecure=True, startTLS=True, caSecret={"name": "ldap-ca"}),
        ldap(insecure=True),
        ldap(address="[2001:db8::10]", userAttribute="sAMAccountName", userGroupAttribute="memberOf;lang-en"),
        ldap(address="192.0.2.10", userAttribute="0.9.2342.19200300.100.1.1", userFilter="(objectClass=person)"),
    ],
)
def test_valid_auth_specs_pass(auth: dict[str, Any]) -> None:
    assert ZotClusterSpec.model_validate({"auth": auth}).auth is not None


def test_the_crd_carries_the_auth_rules_and_offers_nothing_the_registry_refuses() -> None:
    spec = yaml.safe_load(crd_yaml())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    auth = spec["properties"]["auth"]
    assert auth["x-kubernetes-validations"] == SPEC_RULES["auth"]
    assert auth["x-kubernetes-validations"][0]["message"] == ACCESS_NEEDS_LOGINS
    ldap_schema, mtls_schema = auth["properties"]["ldap"], auth["properties"]["mtls"]
    assert ldap_schema["x-kubernetes-validations"] == SPEC_RULES["auth.ldap"]
    assert ldap_schema["required"] == ["address", "baseDN", "userAttribute"]
    assert ldap_schema["properties"]["port"]["minimum"] == 1 and ldap_schema["properties"]["port"]["maximum"] == 65535
    assert "credentialsFile" not in ldap_schema["properties"]  # the operator's, not the spec's
    assert mtls_schema["x-kubernetes-validations"] == SPEC_RULES["auth.mtls"]
    assert mtls_schema["properties"]["identityAttributes"]["items"]["enum"] == [
        "CommonName",
        "Subject",
        "Email",
        "URI",
        "DNSName",
    ]
    assert mtls_schema["properties"]["identityAttributes"]["default"] == ["CommonName"]
    policy = auth["properties"]["accessControl"]["properties"]["repositories"]["additionalProperties"]
    assert policy["properties"]["policies"]["items"]["properties"]["actions"]["items"]["enum"] == [
        "read",
        "create",
        "update",
        "delete",
    ]
    # CEL conditions and detectManifestCollision are refused by the registry: not offered.
    assert set(policy["properties"]["policies"]["items"]["properties"]) == {"users", "groups", "actions"}


# The Secrets ---------------------------------------------------------------------------------------


def test_the_bind_password_is_one_line_and_the_credentials_file_is_zots() -> None:
    assert bind_password(b"pw\n") == "pw" and bind_password(b"p w\r\n") == "p w"
    assert bind_password(b"") is None and bind_password(b"\n") is None and bind_password(b"a\nb") is None
    assert bind_password(b"\xff") is None
    assert json.loads(ldap_credentials_file("cn=x", 'p"w')) == {"bindDN": "cn=x", "bindPassword": 'p"w'}
    assert ca_problem(CA_PEM) is None and ca_problem(CA_PEM + CA_PEM) is None
    found = ca_problem(b"-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n")
    assert found is not None and "holds no PEM certificate" in found and "not one" not in found


class VersionedKube(MemoryKube):
    """MemoryKube with the API server's resourceVersion on every write, as the pod template uses it."""

    def __init__(self) -> None:
        super().__init__()
        self.version = 100

    def _stamp(self, kind: str, name: str) -> dict[str, Any]:
        self.version += 1
        stored = self.objects[(kind, "default", name)]
        stored["metadata"]["resourceVersion"] = str(self.version)
        return dict(stored)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        super().create(body)
        return self._stamp(body["kind"], body["metadata"]["name"])

    def patch(self, kind: str, namespace: str, name: str, patch: dict[str, Any], sub: str = "") -> dict[str, Any]:
        super().patch(kind, namespace, name, patch, sub)
        return self._stamp(kind, name)


def add_secret(kube: MemoryKube, name: str, data: dict[str, bytes], version: str = "1", **meta: Any) -> None:
    kube.objects[("Secret", "default", name)] = {
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": version, **meta},
        "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
    }


def reconcile_once(
    kube: MemoryKube, auth: dict[str, Any], events: list[tuple[str, str, str]] | None = None
) -> dict[str, Any]:
    body = {
        "metadata": {"name": "demo", "namespace": "default", "uid": "u-1", "generation": 1},
        "spec": {"replicas": 3, "auth": auth},
    }
    outcome = reconcile(kube, body, lambda *e: (events if events is not None else []).append(e), connect=no_members)
    return as_patch(outcome.status)


def no_members(ca: KeyPair) -> MemberApi:
    raise AssertionError("a member was asked something")


def degraded(status: dict[str, Any]) -> tuple[str, str]:
    condition = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert status["phase"] == "Degraded" and condition["status"] == "True"
    return condition["reason"], condition["message"]


def credentials_of(kube: MemoryKube) -> dict[str, Any]:
    secret = kube.objects[("Secret", "default", "demo-ldap-credentials")]
    found: dict[str, Any] = json.loads(base64.b64decode(secret["data"]["credentials.json"]))
    return found


def test_missing_or_wrong_auth_secrets_degrade_the_cluster_and_nothing_is_created() -> None:
    kube = VersionedKube()
    auth = {**ldap(caSecret={"name": "ldap-ca"}), "mtls": MTLS}
    events: list[tuple[str, str, str]] = []
    assert degraded(reconcile_once(kube, auth, events)) == (
        "LDAPBindPasswordSecretMissing",
        "Secret ldap-bind with key password (spec.auth.ldap.bindPasswordSecret) does not exist",
    )
    assert ("Warning", "LDAPBindPasswordSecretMissing") in {(e[0], e[1]) for e in events}
    add_secret(kube, "ldap-bind", {"password": b"\n"})
    assert degraded(reconcile_once(kube, auth)) == (
        "LDAPCASecretMissing",
        "Secret ldap-ca with key ca.crt (spec.auth.ldap.caSecret) does not exist",
    )
    add_secret(kube, "ldap-ca", {"ca.crt": b"not a certificate"})
    assert degraded(reconcile_once(kube, auth)) == (
        "MTLSCASecretMissing",
        "Secret ci-clients with key ca.crt (spec.auth.mtls.caSecret) does not exist",
    )
    add_secret(kube, "ci-clients", {"ca.crt": CA_PEM})
    reason, message = degraded(reconcile_once(kube, auth))
    assert reason == "LDAPCASecretInvalid" and "not a certificate" not in message
    assert message.startswith("Secret ldap-ca key ca.crt (spec.auth.ldap.caSecret) holds no PEM certificate")
    add_secret(kube, "ldap-ca", {"ca.crt": CA_PEM})
    assert degraded(reconcile_once(kube, auth)) == (
        "LDAPBindPasswordInvalid",
        "Secret ldap-bind key password (spec.auth.ldap.bindPasswordSecret) must hold the password of bindDN as one "
        "line of UTF-8 text, and is empty or is not",
    )
    assert not [k for k in kube.objects if k[0] in ("StatefulSet", "ConfigMap") or k[2] == "demo-ldap-credentials"]


def test_the_operator_keeps_the_ldap_credentials_file_in_its_own_secret_and_rolls_the_members_on_a_change() -> None:
    kube = VersionedKube()
    auth = {**ldap(), "accessControl": ACCESS}
    add_secret(kube, "ldap-bind", {"password": f"{BIND_PASSWORD}\n".encode()}, version="7")
    events: list[tuple[str, str, str]] = []
    assert reconcile_once(kube, auth, events)["phase"] == "Creating"
    secret = kube.objects[("Secret", "default", "demo-ldap-credentials")]
    assert credentials_of(kube) == {"bindDN": "cn=searcher,dc=example,dc=org", "bindPassword": BIND_PASSWORD}
    assert secret["type"] == "Opaque" and secret["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert (
        "Normal",
        "Created",
        "created Secret demo-ldap-credentials (the LDAP credentials file of the members)",
    ) in events
    assert not [e for e in events if BIND_PASSWORD in e[2]]
    template = kube.objects[("StatefulSet", "default", "demo")]["spec"]["template"]
    first = template["metadata"]["annotations"][SECRETS_ANNOTATION]
    assert first == f"demo-ldap-credentials={secret['metadata']['resourceVersion']}"  # not the user's Secret's
    config = kube.objects[("ConfigMap", "default", "demo-config")]["data"]["config.json"]
    assert BIND_PASSWORD not in config and "cn=searcher" not in config
    assert BIND_PASSWORD not in json.dumps(template)

    # Unchanged: no write (the file is compared as the API server stores it).
    writes = kube.writes
    reconcile_once(kube, auth)
    assert kube.writes == writes
    # A new password or another bindDN: the Secret is rewritten, and its new version rolls the members.
    add_secret(kube, "ldap-bind", {"password": b"new-pw"}, version="8")
    reconcile_once(kube, auth)
    assert credentials_of(kube)["bindPassword"] == "new-pw"
    second = kube.objects[("StatefulSet", "default", "demo")]["spec"]["template"]["metadata"]["annotations"]
    assert second[SECRETS_ANNOTATION] != first
    reconcile_once(kube, {**ldap(bindDN="cn=other,dc=example,dc=org"), "accessControl": ACCESS})
    assert credentials_of(kube) == {"bindDN": "cn=other,dc=example,dc=org", "bindPassword": "new-pw"}
    # A key added by hand is removed again: only the file belongs there.
    kube.objects[("Secret", "default", "demo-ldap-credentials")]["data"]["extra"] = "eA=="
    reconcile_once(kube, auth)
    assert set(kube.objects[("Secret", "default", "demo-ldap-credentials")]["data"]) == {"credentials.json"}
    # Without a bind DN the file is not mounted, and the Secret with the password goes.
    anonymous = {k: v for k, v in LDAP.items() if k not in ("bindDN", "bindPasswordSecret")}
    events.clear()
    reconcile_once(kube, {"ldap": anonymous}, events)
    assert ("Secret", "default", "demo-ldap-credentials") not in kube.objects
    assert (
        "Normal",
        "Deleted",
        "deleted Secret demo-ldap-credentials: spec.auth.ldap has no bindDN any more",
    ) in events
    volumes = kube.objects[("StatefulSet", "default", "demo")]["spec"]["template"]["spec"]["volumes"]
    assert not [v for v in volumes if v["name"] == "ldap-credentials"]


def test_a_users_secret_named_like_the_credentials_secret_is_never_overwritten() -> None:
    kube = VersionedKube()
    add_secret(kube, "ldap-bind", {"password": BIND_PASSWORD.encode()})
    add_secret(kube, "demo-ldap-credentials", {"mine": b"keep"})
    assert degraded(reconcile_once(kube, ldap())) == (
        "LDAPCredentialsSecretConflict",
        "Secret demo-ldap-credentials exists and is not this ZotCluster's: the operator keeps the members' LDAP "
        "credentials file there; rename or delete that Secret",
    )
    assert kube.objects[("Secret", "default", "demo-ldap-credentials")]["data"] == {"mine": "a2VlcA=="}
    # Nor deleted when the spec has no bind DN.
    reconcile_once(kube, {"htpasswd": {"secretName": "demo-htpasswd"}} | {})
    assert ("Secret", "default", "demo-ldap-credentials") in kube.objects


# Local mode ----------------------------------------------------------------------------------------


def test_local_mode_writes_the_auth_files_from_the_manifests_secrets(tmp_path: Path) -> None:
    document = yaml.safe_load(AUTH_EXAMPLE.read_text())
    document["spec"]["replicas"] = 2
    secrets = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}
        for name, data in (
            ("ldap-bind", {"password": BIND_PASSWORD}),
            ("ldap-ca", {"ca.crt": CA_PEM.decode()}),
            ("ci-clients", {"ca.crt": CA_PEM.decode()}),
        )
    ]
    manifest_path = tmp_path / "zc.yaml"
    manifest_path.write_text(yaml.safe_dump_all([document, *secrets]))
    state = (tmp_path / "state").absolute()
    layout = prepare(state, load_manifest(str(manifest_path)))
    http = json.loads(layout.configs[1].read_text())["http"]
    assert http["tls"] == {
        "cert": str(state / "tls" / "tls.crt"),
        "key": str(state / "tls" / "tls.key"),
        "cacert": str(state / "mtls" / "ca.crt"),
    }
    assert http["auth"]["ldap"]["credentialsFile"] == str(state / "ldap" / "credentials.json")
    assert http["auth"]["ldap"]["caCert"] == str(state / "ldap" / "ca.crt")
    assert json.loads((state / "ldap" / "credentials.json").read_text())["bindPassword"] == BIND_PASSWORD
    assert (state / "mtls" / "ca.crt").read_bytes() == CA_PEM and layout.credentials is None
    assert (state / "ldap" / "credentials.json").stat().st_mode & 0o077 == 0
    # The ConfigMap's counterpart keeps the in-pod paths, and no value.
    shared = (state / "config.json").read_text()
    assert "/etc/zot/ldap/credentials/credentials.json" in shared and BIND_PASSWORD not in shared
    # A Secret the manifest lacks is named.
    manifest_path.write_text(yaml.safe_dump_all([document, *secrets[:2]]))
    with pytest.raises(ManifestError, match=r"spec\.auth\.mtls\.caSecret: local mode needs Secret 'ci-clients'"):
        prepare(state, load_manifest(str(manifest_path)))


def test_the_cluster_ca_is_refused_as_the_users_ca() -> None:
    """The registry refuses it at start (its preflight): users' certificates of the CA that issues the members'
    could vouch for any identity in the cluster. Found by the operator first, before a member fails."""
    kube = VersionedKube()
    add_secret(kube, "demo-ca", {"ca.crt": CA_PEM, "ca.key": b"key"})
    add_secret(kube, "ci-clients", {"ca.crt": make_ca("another CA").cert_pem + CA_PEM})
    assert degraded(reconcile_once(kube, {"mtls": MTLS})) == (
        "MTLSCASecretInvalid",
        "Secret ci-clients key ca.crt (spec.auth.mtls.caSecret) holds the cluster CA (Secret demo-ca), which issues "
        "the members' certificates: users' client certificates need a CA of their own",
    )
