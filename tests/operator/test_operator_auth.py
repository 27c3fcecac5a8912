"""spec.auth against a real API server: the CRD's CEL rules refuse what zot would (`kubectl apply --dry-run=server`),
the operator waits for the Secrets it mounts (Degraded, naming them), keeps zot's LDAP credentials file in a
Secret of its own owned by the ZotCluster, renders http.auth, http.tls.cacert and http.accessControl with
paths only, mounts the Secrets read-only, and rolls the members when the bind password changes. Members run
from what it wrote (tests.support.pod_runner plays the kubelet) then log users in: by client certificate,
and against a real slapd with the bind DN and password of the operator's Secret."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from zot_operator.models import (
    ACCESS_NEEDS_LOGINS,
    LDAP_ADDRESS_MESSAGE,
    LDAP_BASE_DN_MESSAGE,
    LDAP_BIND_TOGETHER,
    LDAP_CA_NEEDS_TLS,
    LDAP_CA_WITH_SKIP_VERIFY,
    LDAP_SKIP_VERIFY_NEEDS_TLS,
    LDAP_START_TLS_NEEDS_INSECURE,
    MTLS_ATTRIBUTES_ONCE,
)
from zot_registry.certs import make_ca, make_client_cert

from tests.support.control_plane import ControlPlane
from tests.support.kubectl import Namespaces, create_secret, get, merge_patch, wait_for
from tests.support.operators import OPERATOR_RESYNC_SECONDS
from tests.support.paths import REPO_ROOT
from tests.support.pod_runner import PodRunner
from tests.support.ports import port_free_on_all
from tests.support.zotclusters import apply_cluster, apply_document, example_cluster, wait_for_phase, write_document

pytestmark = pytest.mark.usefixtures("volumes")

AUTH_EXAMPLE = REPO_ROOT / "examples" / "zotcluster-auth.yaml"
VERSIONS = "zot-operator.io/secret-versions"
BIND_DN = "cn=ldap-searcher,ou=Users,dc=example,dc=org"
CLIENTS_CA = make_ca("CI clients CA")


def auth_cluster(namespace: str, tolerate: bool = True, **auth: Any) -> dict[str, Any]:
    """The auth example in `namespace` on the pre-made volumes, 2 members, its auth keys replaced (None: removed)."""
    document = example_cluster(namespace, "registry", example=AUTH_EXAMPLE, tolerate=tolerate)
    spec = document["spec"]
    spec.update(replicas=2, rebalance={"mode": "Restart"})
    spec["storage"]["local"].update(storageClassName="manual", size="1Gi")
    spec["auth"].update(auth)
    spec["auth"] = {key: value for key, value in spec["auth"].items() if value is not None}
    return document


def dry_run(cp: ControlPlane, document: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = write_document(cp, document, "auth-dry-run.yaml")
    result: subprocess.CompletedProcess[str] = cp.kubectl("apply", "--dry-run=server", "-f", str(path), check=False)
    return result


def ldap_of(**settings: Any) -> dict[str, Any]:
    ldap: dict[str, Any] = {
        "address": "ldap.example.org",
        "baseDN": "ou=Users,dc=example,dc=org",
        "userAttribute": "uid",
        "bindDN": BIND_DN,
        "bindPasswordSecret": {"name": "ldap-bind", "key": "password"},
        **settings,
    }
    return {key: value for key, value in ldap.items() if value is not None}


def mtls_of(**settings: Any) -> dict[str, Any]:
    return {"caSecret": {"name": "ci-clients"}, **settings}


NAMES_USERS = {"repositories": {"**": {"policies": [{"users": ["alice"], "actions": ["read"]}]}}}


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ({"ldap": ldap_of(address="ldaps://ldap.example.org")}, LDAP_ADDRESS_MESSAGE),
        ({"ldap": ldap_of(address="ldap.example.org:636")}, LDAP_ADDRESS_MESSAGE),
        ({"ldap": ldap_of(baseDN="Users")}, LDAP_BASE_DN_MESSAGE),
        ({"ldap": ldap_of(userAttribute="u id")}, "userAttribute must be an LDAP attribute name"),
        ({"ldap": ldap_of(userGroupAttribute="member of")}, "userGroupAttribute must be an LDAP attribute name"),
        ({"ldap": ldap_of(port=70000)}, "should be less than or equal to 65535"),
        ({"ldap": ldap_of(bindPasswordSecret=None)}, LDAP_BIND_TOGETHER),
        ({"ldap": ldap_of(bindDN=None)}, LDAP_BIND_TOGETHER),
        ({"ldap": ldap_of(startTLS=True)}, LDAP_START_TLS_NEEDS_INSECURE),
        ({"ldap": ldap_of(insecure=True, caSecret={"name": "ldap-ca"})}, LDAP_CA_NEEDS_TLS),
        ({"ldap": ldap_of(insecure=True, skipVerify=True)}, LDAP_SKIP_VERIFY_NEEDS_TLS),
        ({"ldap": ldap_of(skipVerify=True, caSecret={"name": "ldap-ca"})}, LDAP_CA_WITH_SKIP_VERIFY),
        ({"ldap": ldap_of(userAttribute=None)}, "spec.auth.ldap.userAttribute: Required value"),
        ({"ldap": ldap_of(credentialsFile="/etc/creds.json")}, 'unknown field "spec.auth.ldap.credentialsFile"'),
        ({"mtls": mtls_of(identityAttributes=["CN"])}, 'Unsupported value: "CN"'),
        ({"mtls": mtls_of(identityAttributes=["URI", "CommonName", "URI"])}, MTLS_ATTRIBUTES_ONCE),
        (
            {"mtls": mtls_of(uriSanPattern="spiffe://example.org/(.*)")},
            "uriSanPattern applies to the URI identity attribute only",
        ),
        ({"mtls": mtls_of(uriSanIndex=1)}, "uriSanIndex applies to the URI identity attribute only"),
        (
            {"mtls": mtls_of(identityAttributes=["DNSName"], dnsSanIndex=1)},
            "zot 2.1.20 accepts dnsSanIndex only with URI among the identity attributes",
        ),
        ({"mtls": mtls_of(identityAttributes=["URI"], emailSanIndex=1)}, "emailSanIndex picks among the Email SANs"),
        ({"mtls": mtls_of(dnsSanIndex=-1)}, "should be greater than or equal to 0"),
        ({"mtls": {"identityAttributes": ["CommonName"]}}, "spec.auth.mtls.caSecret: Required value"),
        # accessControl without a login method, unless only anonymous policies (zot's validateAuthzPolicies)
        ({"ldap": None, "mtls": None, "accessControl": NAMES_USERS}, ACCESS_NEEDS_LOGINS),
        (
            {"ldap": None, "mtls": None, "accessControl": {"repositories": {"**": {"defaultPolicy": ["read"]}}}},
            ACCESS_NEEDS_LOGINS,
        ),
        (
            {
                "ldap": None,
                "mtls": None,
                "accessControl": {
                    "repositories": {"**": {"anonymousPolicy": ["read"]}},
                    "adminPolicy": {"users": ["admin"], "actions": ["delete"]},
                },
            },
            ACCESS_NEEDS_LOGINS,
        ),
        (
            {"accessControl": {"repositories": {"**": {"policies": [{"users": ["a"], "actions": ["push"]}]}}}},
            'Unsupported value: "push"',
        ),
        ({"accessControl": {"adminPolicy": {"users": [""], "actions": ["read"]}}}, "at least 1 chars long"),
        (
            {"accessControl": {"repositories": {"**": {"policies": [{"users": ["a"], "conditions": []}]}}}},
            "unknown field",
        ),
    ],
)
def test_invalid_auth_is_rejected_by_the_api_server(
    control_plane: ControlPlane, crd: None, module_namespaces: Namespaces, auth: dict[str, Any], message: str
) -> None:
    ns = module_namespaces.create("zot-auth-invalid", htpasswd=False, exist_ok=True)
    result = dry_run(control_plane, auth_cluster(ns, tolerate=False, **auth))
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize(
    "auth",
    [
        {},  # the example itself: LDAP, mTLS and access control
        {"ldap": ldap_of(insecure=True, startTLS=True, caSecret={"name": "ldap-ca"}, port=3389)},
        {"ldap": ldap_of(address="[2001:db8::10]", userAttribute="sAMAccountName", userGroupAttribute="memberOf")},
        {"ldap": ldap_of(bindDN=None, bindPasswordSecret=None, insecure=True), "mtls": None},
        {"mtls": mtls_of(identityAttributes=["URI", "DNSName"], dnsSanIndex=1, uriSanPattern="spiffe://x/(.*)")},
        # only anonymous policies, or only anonymous metrics: no login method needed
        {"ldap": None, "mtls": None, "accessControl": {"repositories": {"public/**": {"anonymousPolicy": ["read"]}}}},
        {"ldap": None, "mtls": None, "accessControl": {"metrics": {"anonymousPolicy": ["read"]}}},
    ],
)
def test_valid_auth_is_accepted_by_the_api_server(
    control_plane: ControlPlane, crd: None, module_namespaces: Namespaces, auth: dict[str, Any]
) -> None:
    ns = module_namespaces.create("zot-auth-valid", htpasswd=False, exist_ok=True)
    result = dry_run(control_plane, auth_cluster(ns, tolerate=False, **auth))
    assert result.returncode == 0, result.stderr


def degraded(cp: ControlPlane, ns: str, reason: str) -> dict[str, Any]:
    def condition() -> dict[str, Any] | None:
        conditions = ((get(cp, "-n", ns, "zc", "registry") or {}).get("status") or {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == "Degraded" and c["reason"] == reason), None)

    found: dict[str, Any] = wait_for(f"Degraded {reason}", condition)
    return found


def credentials_file(cp: ControlPlane, ns: str) -> dict[str, Any] | None:
    secret = get(cp, "-n", ns, "secret", "registry-ldap-credentials")
    if secret is None:
        return None
    found: dict[str, Any] = json.loads(base64.b64decode(secret["data"]["credentials.json"]))
    return found


def test_auth_waits_for_its_secrets_keeps_the_ldap_credentials_and_rolls_on_a_new_password(
    control_plane: ControlPlane, operator: subprocess.Popen[str], namespaces: Namespaces
) -> None:
    cp, ns = control_plane, namespaces.create("zot-auth", htpasswd=False)
    apply_document(cp, auth_cluster(ns), "auth.yaml")
    assert degraded(cp, ns, "LDAPBindPasswordSecretMissing")["message"] == (
        "Secret ldap-bind with key password (spec.auth.ldap.bindPasswordSecret) does not exist"
    )
    events = get(cp, "-n", ns, "events")["items"]
    assert any(e["reason"] == "LDAPBindPasswordSecretMissing" and e["type"] == "Warning" for e in events)
    create_secret(cp, ns, "ldap-bind", password="searcher-secret-1")
    assert degraded(cp, ns, "LDAPCASecretMissing")["message"] == (
        "Secret ldap-ca with key ca.crt (spec.auth.ldap.caSecret) does not exist"
    )
    create_secret(cp, ns, "ldap-ca", **{"ca.crt": "not a certificate"})
    assert degraded(cp, ns, "MTLSCASecretMissing")["message"] == (
        "Secret ci-clients with key ca.crt (spec.auth.mtls.caSecret) does not exist"
    )
    create_secret(cp, ns, "ci-clients", **{"ca.crt": CLIENTS_CA.cert_pem.decode()})
    invalid = degraded(cp, ns, "LDAPCASecretInvalid")["message"]
    assert invalid.startswith("Secret ldap-ca key ca.crt (spec.auth.ldap.caSecret) holds no PEM certificate")
    assert get(cp, "-n", ns, "statefulset", "registry") is None
    merge_patch(cp, ns, "secret", "ldap-ca", {"stringData": {"ca.crt": make_ca("LDAP CA").cert_pem.decode()}})
    wait_for_phase(cp, ns, "Running", name="registry", timeout=90)

    # The operator's Secret: zot's credentials file, owned by the ZotCluster.
    secret = get(cp, "-n", ns, "secret", "registry-ldap-credentials")
    zc = get(cp, "-n", ns, "zc", "registry")
    assert credentials_file(cp, ns) == {"bindDN": BIND_DN, "bindPassword": "searcher-secret-1"}
    [owner] = secret["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("ZotCluster", "registry", zc["metadata"]["uid"])
    assert secret["type"] == "Opaque" and set(secret["data"]) == {"credentials.json"}

    config_text = get(cp, "-n", ns, "configmap", "registry-config")["data"]["config.json"]
    assert "searcher-secret" not in config_text and BIND_DN not in config_text
    http = json.loads(config_text)["http"]
    assert http["tls"]["cacert"] == "/etc/zot/mtls/ca.crt"
    assert http["auth"]["ldap"]["credentialsFile"] == "/etc/zot/ldap/credentials/credentials.json"
    assert http["auth"]["ldap"]["caCert"] == "/etc/zot/ldap/ca/ca.crt" and http["auth"]["ldap"]["port"] == 636
    assert http["auth"]["mtls"] == {"identityAttributes": ["CommonName"]}
    assert http["accessControl"]["repositories"]["public/**"] == {
        "anonymousPolicy": ["read"],
        "defaultPolicy": ["read"],
    }

    template = get(cp, "-n", ns, "statefulset", "registry")["spec"]["template"]
    volumes = {v["name"]: v.get("secret") for v in template["spec"]["volumes"]}
    assert volumes["ldap-credentials"] == {
        "secretName": "registry-ldap-credentials",
        "defaultMode": 0o440,
        "items": [{"key": "credentials.json", "path": "credentials.json"}],
    }
    assert volumes["ldap-ca"] == {
        "secretName": "ldap-ca",
        "defaultMode": 0o440,
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    assert volumes["mtls-ca"] == {
        "secretName": "ci-clients",
        "defaultMode": 0o440,
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    [member] = template["spec"]["containers"]
    mounts = {m["name"]: m for m in member["volumeMounts"]}
    assert all(mounts[name]["readOnly"] for name in ("ldap-credentials", "ldap-ca", "mtls-ca"))
    # The kubelet's probes: outside /v2/, HTTPS, no credentials (the registry keeps them open in every mode).
    assert [member[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe", "readinessProbe")] == [
        "/startupz",
        "/livez",
        "/readyz",
    ]
    assert "searcher-secret" not in json.dumps(template)
    versions = dict(v.split("=") for v in template["metadata"]["annotations"][VERSIONS].split(","))
    assert set(versions) == {"ci-clients", "ldap-ca", "registry-ldap-credentials"}  # not ldap-bind itself
    assert versions["registry-ldap-credentials"] == secret["metadata"]["resourceVersion"]

    # A new bind password: the operator rewrites its Secret, whose new version rolls the members.
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in get(cp, "-n", ns, "pods")["items"]}
    merge_patch(cp, ns, "secret", "ldap-bind", {"stringData": {"password": "searcher-secret-2"}})
    wait_for(
        "the new password in the operator's Secret",
        lambda: (credentials_file(cp, ns) or {}).get("bindPassword") == "searcher-secret-2",
    )

    def rolled() -> bool:
        current = get(cp, "-n", ns, "statefulset", "registry")["spec"]["template"]["metadata"]["annotations"]
        pods = get(cp, "-n", ns, "pods")["items"]
        return (
            current[VERSIONS] != template["metadata"]["annotations"][VERSIONS]
            and len(pods) == 2
            and all(
                p["metadata"]["uid"] != before.get(p["metadata"]["name"])
                and p["metadata"]["annotations"].get(VERSIONS) == current[VERSIONS]
                for p in pods
            )
        )

    wait_for("both members restarted with the new credentials' version", rolled, timeout=120)

    # Unchanged checks write nothing: not the StatefulSet, the ConfigMap, nor the operator's Secret.
    def written() -> list[str]:
        return [
            get(cp, "-n", ns, kind, name)["metadata"]["resourceVersion"]
            for kind, name in (
                ("statefulset", "registry"),
                ("configmap", "registry-config"),
                ("secret", "registry-ldap-credentials"),
            )
        ]

    wait_for_phase(cp, ns, "Running", name="registry", timeout=60)
    time.sleep(3)
    settled = written()
    time.sleep(2 * OPERATOR_RESYNC_SECONDS + 2)  # two drift checks
    assert written() == settled

    # Without a bind DN the file goes, and with it the Secret that held the password.
    merge_patch(cp, ns, "zc", "registry", {"spec": {"auth": {"ldap": {"bindDN": None, "bindPasswordSecret": None}}}})
    wait_for("the operator's Secret deleted", lambda: get(cp, "-n", ns, "secret", "registry-ldap-credentials") is None)
    ldap = json.loads(get(cp, "-n", ns, "configmap", "registry-config")["data"]["config.json"])["http"]["auth"]["ldap"]
    assert "credentialsFile" not in ldap


def test_a_users_secret_with_the_operators_name_is_left_alone(
    control_plane: ControlPlane, operator: subprocess.Popen[str], namespaces: Namespaces
) -> None:
    cp, ns = control_plane, namespaces.create("zot-auth-conflict", htpasswd=False)
    create_secret(cp, ns, "ldap-bind", password="pw")
    create_secret(cp, ns, "registry-ldap-credentials", mine="keep")
    apply_document(cp, auth_cluster(ns, mtls=None, ldap=ldap_of()), "conflict.yaml")
    message = degraded(cp, ns, "LDAPCredentialsSecretConflict")["message"]
    assert message.startswith("Secret registry-ldap-credentials exists and is not this ZotCluster's")
    assert get(cp, "-n", ns, "secret", "registry-ldap-credentials")["data"] == {"mine": "a2VlcA=="}


def test_members_from_the_mounted_files_log_users_in_by_client_certificate(
    control_plane: ControlPlane, operator: subprocess.Popen[str], namespaces: Namespaces, tmp_path: Path
) -> None:
    """mTLS with access control: the members get the users' CA only from the Secret the operator mounts. The
    probes pass without a certificate; a certificate of the users' CA logs its CommonName in, on any member."""
    cp, ns = control_plane, namespaces.create("zot-auth-mtls")
    create_secret(cp, ns, "ci-clients", **{"ca.crt": CLIENTS_CA.cert_pem.decode()})
    port = port_free_on_all(2)
    auth = {
        "htpasswd": {"secretName": "demo-htpasswd"},
        "mtls": {"caSecret": {"name": "ci-clients"}},
        "accessControl": {
            "repositories": {"ci/**": {"policies": [{"users": ["ci-builder"], "actions": ["read", "create"]}]}},
            "adminPolicy": {"users": ["admin"], "actions": ["read", "create", "update", "delete"]},
        },
    }
    apply_cluster(cp, ns, port=port, replicas=2, auth=auth)
    pair = make_client_cert(CLIENTS_CA, "ci-builder")
    cert, key = tmp_path / "ci.crt", tmp_path / "ci.key"
    cert.write_bytes(pair.cert_pem)
    key.write_bytes(pair.key_pem)
    with PodRunner(cp, ns, workdir=tmp_path, port=port, ordinals=2) as runner:
        runner.wait_running([0, 1])
        for i in range(2):
            runner.wait_ready(i)  # /readyz without a certificate, as the kubelet asks
        assert Path(runner.member(0).config["http"]["tls"]["cacert"]).read_bytes() == CLIENTS_CA.cert_pem
        for i in range(2):
            with runner.client(i, auth=None) as anonymous:
                assert anonymous.get("/v2/").status_code == 401
                assert anonymous.get("/livez").status_code == 200
            context = runner.ssl_context(i)
            context.load_cert_chain(str(cert), str(key))
            with httpx.Client(base_url=runner.url(i), verify=context, timeout=30) as client:
                assert client.get("/v2/").status_code == 200
                # Its repositories, owner or not; nothing else.
                assert client.get("/v2/ci/app/tags/list").status_code == 404  # allowed, not there
                assert client.get("/v2/other/app/tags/list").status_code == 403


def test_members_from_the_mounted_files_log_users_in_against_a_real_ldap_server(
    control_plane: ControlPlane, operator: subprocess.Popen[str], namespaces: Namespaces, tmp_path: Path
) -> None:
    """LDAP with StartTLS and access control by LDAP group: the members find users with the bind DN and password
    of the operator's <name>-ldap-credentials and check the server's certificate with the mounted caSecret."""
    from tests.support import ldap as slapd_peer

    cp, ns = control_plane, namespaces.create("zot-auth-ldap", htpasswd=False)
    with slapd_peer.running_slapd(tmp_path / "slapd") as slapd:
        create_secret(cp, ns, "ldap-bind", password=slapd_peer.SEARCHER_PASSWORD)
        create_secret(cp, ns, "ldap-ca", **{"ca.crt": slapd.certs.ca.read_text()})
        port = port_free_on_all(2)
        readers = slapd_peer.group_dn("readers")
        auth = {
            "ldap": {
                "address": slapd.host,
                "port": slapd.port,
                "insecure": True,
                "startTLS": True,
                "caSecret": {"name": "ldap-ca"},
                "baseDN": slapd_peer.PEOPLE,
                "userAttribute": "uid",
                "userGroupAttribute": "memberOf",
                "subtreeSearch": True,
                "bindDN": slapd_peer.SEARCHER_DN,
                "bindPasswordSecret": {"name": "ldap-bind", "key": "password"},
            },
            "accessControl": {"repositories": {"**": {"policies": [{"groups": [readers], "actions": ["read"]}]}}},
        }
        apply_cluster(cp, ns, port=port, replicas=2, auth=auth)
        alice, dave = slapd_peer.USERS["alice"], slapd_peer.USERS["dave"]
        with PodRunner(cp, ns, workdir=tmp_path / "pods", port=port, ordinals=2) as runner:
            runner.wait_running([0, 1])
            for i in range(2):
                runner.wait_ready(i)
            credentials = json.loads(
                Path(runner.member(0).config["http"]["auth"]["ldap"]["credentialsFile"]).read_text()
            )
            assert credentials == {"bindDN": slapd_peer.SEARCHER_DN, "bindPassword": slapd_peer.SEARCHER_PASSWORD}
            for i in range(2):
                with runner.client(i, auth=(alice.uid, alice.password)) as client:
                    assert client.get("/v2/").status_code == 200
                    assert client.get("/v2/any/repo/tags/list").status_code == 404  # readers may read
                with runner.client(i, auth=(alice.uid, "wrong")) as client:
                    assert client.get("/v2/").status_code == 401
                with runner.client(i, auth=(dave.uid, dave.password)) as client:
                    assert client.get("/v2/any/repo/tags/list").status_code == 403  # in no group


def test_the_operators_secret_goes_with_the_zotcluster(
    control_plane: ControlPlane, operator: subprocess.Popen[str], namespaces: Namespaces
) -> None:
    cp, ns = control_plane, namespaces.create("zot-auth-delete", htpasswd=False)
    create_secret(cp, ns, "ldap-bind", password="pw")
    apply_document(cp, auth_cluster(ns, mtls=None, ldap=ldap_of(), accessControl=None), "delete.yaml")
    wait_for("the operator's Secret", lambda: credentials_file(cp, ns))
    cp.kubectl("-n", ns, "delete", "zc", "registry")
    # kube-controller-manager's garbage collector follows the owner reference.
    wait_for("the operator's Secret deleted", lambda: get(cp, "-n", ns, "secret", "registry-ldap-credentials") is None)
    assert get(cp, "-n", ns, "secret", "ldap-bind") is not None  # the user's stays
