"""The kubelet's probes under every auth mode, against real members (zot issues 1836 and 2932: probes on /v2/,
or needing credentials or a client certificate, fail once auth is on).

Each mode is a ZotCluster with its Secrets in one manifest, rendered by the operator as local mode renders it
(`prepare`: the operator's config with the mounts as files), loaded with the registry's loader and run as
two real member processes. Then what a kubelet does: HTTPS without verifying the server, no credentials, no
client certificate, on the paths the StatefulSet's probes name; and /v2/ without credentials, which must be
refused (auth is on), while the mode's own login works.

The LDAP modes need the registry's http.auth.ldap (a registry without it refuses the key at load). No LDAP
server is needed here: the probes and the refusals never reach it (tests/operator/test_operator_auth.py logs
users in against a real one)."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import yaml
from zot_operator.local.manifest import load_manifest
from zot_operator.local.state import LocalLayout, prepare
from zot_operator.names import ClusterRef
from zot_operator.render import render
from zot_registry.certs import KeyPair, make_ca, make_client_cert
from zot_registry.config import load_config

from tests.support.paths import REPO_ROOT
from tests.support.ports import free_port, port_free_on_all
from tests.support.registry import RegistryProcess, start_all, stop_all

AUTH_EXAMPLE = REPO_ROOT / "examples" / "zotcluster-auth.yaml"
USER, PASSWORD = "admin", "change-me"
CLIENTS_CA = make_ca("CI clients CA")
CI_USER = "ci-builder"
MEMBERS = 2
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")
DOCKER = "docker/27.3.1 go/go1.22.7 git-commit/41ca978 kernel/6.1.0 os/linux arch/amd64"


@dataclass
class Mode:
    auth: dict[str, Any]
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    # How a client of this mode logs in, for the check that auth is on and works (None: no way to log in).
    login: str | None = None
    # Some repository has an anonymousPolicy: /v2/ answers anonymous clients, but Docker's (zot's workaround).
    anonymous: bool = False


def htpasswd_secret() -> dict[str, dict[str, str]]:
    entry = f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
    return {"demo-htpasswd": {"htpasswd": entry}}


def ldap_settings(port: int) -> dict[str, Any]:
    # A port nothing listens on: neither a probe nor a refused request may need the LDAP server.
    return {
        "address": "127.0.0.1",
        "port": port,
        "insecure": True,
        "baseDN": "ou=Users,dc=example,dc=org",
        "userAttribute": "uid",
        "bindDN": "cn=searcher,dc=example,dc=org",
        "bindPasswordSecret": {"name": "ldap-bind", "key": "password"},
    }


NO_ANONYMOUS = {
    "repositories": {"**": {"policies": [{"users": [USER, CI_USER], "actions": ["read", "create"]}]}},
    "adminPolicy": {"users": [USER], "actions": ["read", "create", "update", "delete"]},
}
MTLS = {"caSecret": {"name": "ci-clients"}, "identityAttributes": ["CommonName"]}


def modes() -> dict[str, Mode]:
    ldap = ldap_settings(free_port())
    bind = {"ldap-bind": {"password": "searcher-pw"}}
    ci_ca = {"ci-clients": {"ca.crt": CLIENTS_CA.cert_pem.decode()}}
    example = yaml.safe_load(AUTH_EXAMPLE.read_text())["spec"]["auth"]
    # The example's LDAP server is one here where none listens (so in plain text, without the example's CA).
    example["ldap"] = {**ldap, "userGroupAttribute": "memberOf", "subtreeSearch": True}
    return {
        "htpasswd": Mode({"htpasswd": {"secretName": "demo-htpasswd"}}, htpasswd_secret(), login="basic"),
        "ldap": Mode({"ldap": ldap}, bind),
        "htpasswd-access-control": Mode(
            {"htpasswd": {"secretName": "demo-htpasswd"}, "accessControl": NO_ANONYMOUS}, htpasswd_secret(), "basic"
        ),
        "ldap-access-control": Mode({"ldap": ldap, "accessControl": NO_ANONYMOUS}, bind),
        "mtls-access-control": Mode({"mtls": MTLS, "accessControl": NO_ANONYMOUS}, ci_ca, login="certificate"),
        "mtls-alone": Mode({"mtls": MTLS}, ci_ca, login="certificate"),
        "the-auth-example": Mode(example, {**bind, **ci_ca}, login="certificate", anonymous=True),
    }


MODES = modes()


def manifest(folder: Path, mode: Mode, port: int) -> Path:
    document = {
        "apiVersion": "zot-operator.io/v1alpha1",
        "kind": "ZotCluster",
        "metadata": {"name": "probes", "namespace": "default"},
        "spec": {"replicas": MEMBERS, "port": port, "auth": mode.auth, "rebalance": {"mode": "Restart"}},
    }
    secrets = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}
        for name, data in mode.secrets.items()
    ]
    path = folder / "zotcluster.yaml"
    path.write_text(yaml.safe_dump_all([document, *secrets]))
    return path


@pytest.fixture(params=sorted(MODES))
def members(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Mode, LocalLayout]]:
    mode = MODES[request.param]
    port = port_free_on_all(MEMBERS)
    layout = prepare(tmp_path / "state", load_manifest(str(manifest(tmp_path, mode, port))))
    processes = []
    for ordinal, path in zip(layout.ordinals, layout.configs, strict=True):
        # The registry's own loader first: what it refuses, no member would run.
        load_config(path)
        config = json.loads(path.read_text())
        processes.append(RegistryProcess(path, config, tmp_path / f"member-{ordinal}.log", workers=1))
    start_all(processes)
    try:
        yield mode, layout
    finally:
        stop_all(processes)


def kubelet() -> httpx.Client:
    """What the kubelet's HTTPS probes are: no verification of the server, no client certificate, no header."""
    return httpx.Client(verify=False, timeout=5)


def test_probes_pass_and_v2_needs_a_login(members: tuple[Mode, LocalLayout]) -> None:
    mode, layout = members
    # The probes of the StatefulSet the operator renders for this spec.
    objects = render(ClusterRef("probes", "default", "", layout.ref.spec), "0123456789abcdef").objects
    [member] = next(o for o in objects if o["kind"] == "StatefulSet")["spec"]["template"]["spec"]["containers"]
    probes = [member[kind]["httpGet"] for kind in PROBES]
    assert all(p["scheme"] == "HTTPS" and not p["path"].startswith("/v2") and "httpHeaders" not in p for p in probes)
    with kubelet() as client:
        for index in range(MEMBERS):
            base = layout.url(index)
            for probe in probes:
                # /readyz: once the member found itself and its peers (start_all waited for /livez only).
                answer = _eventually_ok(client, f"{base}{probe['path']}")
                assert answer.status_code == 200, (probe["path"], answer.text)
            # Auth is on: without credentials (and without a certificate) /v2/ is refused, with the challenge;
            # with anonymous policies besides others, for Docker only (else it would never send its credentials).
            agent = {"User-Agent": DOCKER} if mode.anonymous else {}
            refused = client.get(f"{base}/v2/", headers=agent)
            assert refused.status_code == 401, refused.text
            assert refused.headers["WWW-Authenticate"].startswith("Basic")
            if mode.anonymous:
                assert client.get(f"{base}/v2/").status_code == 200
                assert client.get(f"{base}/v2/private/app/tags/list").status_code == 401
    trusted = ssl.create_default_context(cafile=str(layout.ca))
    if mode.login == "basic":
        with httpx.Client(verify=trusted, auth=(USER, PASSWORD), timeout=5) as client:
            assert client.get(f"{layout.url(0)}/v2/").status_code == 200
    if mode.login == "certificate":
        trusted.load_cert_chain(*_client_certificate(layout.folder, CLIENTS_CA, CI_USER))
        with httpx.Client(verify=trusted, timeout=5) as client:
            assert client.get(f"{layout.url(1)}/v2/").status_code == 200


def _eventually_ok(client: httpx.Client, url: str, timeout: float = 30.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get(url)
        if answer.status_code == 200 or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def _client_certificate(folder: Path, ca: KeyPair, name: str) -> tuple[str, str]:
    pair = make_client_cert(ca, name)
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    cert.write_bytes(pair.cert_pem)
    key.write_bytes(pair.key_pem)
    return str(cert), str(key)
