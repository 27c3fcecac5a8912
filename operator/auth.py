"""`spec.auth`: zot's http.auth (htpasswd, ldap, mtls), http.tls.cacert and http.accessControl, and the files
they name, mounted from Secrets. Pure, like `render`.

The ConfigMap holds paths only. Each file is a Secret volume of the member container (read-only, mode 0440
for the members' group), its key renamed to a fixed file name by the volume's items:

    /etc/zot/auth/htpasswd                       spec.auth.htpasswd (its key)
    /etc/zot/ldap/credentials/credentials.json   the Secret <name>-ldap-credentials (below): credentialsFile
    /etc/zot/ldap/ca/ca.crt                      spec.auth.ldap.caSecret: caCert
    /etc/zot/mtls/ca.crt                         spec.auth.mtls.caSecret: http.tls.cacert

The LDAP credentials file. zot reads the bind DN and its password only from a JSON file,
{"bindDN": "...", "bindPassword": "..."} (its credentialsFile, both keys required), while the spec takes the
DN as a plain field and the password from the user's Secret (`bindPasswordSecret`). The operator joins
them: it reads the user's Secret (it reads every referenced Secret anyway, `secret_steps`), and keeps the
file in a Secret of its own, `<name>-ldap-credentials` (key credentials.json), owned by the ZotCluster so
that it goes with it, written only when its content differs. Nothing of it reaches the ConfigMap, the pod
spec, an environment variable, a log or the status (a message names the Secret and key, never a value).
zot reads the file when it starts, so that Secret's resourceVersion is among the pod template's secret
versions (`secret_steps.ensure_ldap_credentials`; the user's Secret's is not: only the file counts): a new
password, or another bindDN, rolls the members one at a time. A Secret of that name that this ZotCluster
does not own is never overwritten (Degraded instead), and the operator deletes its own once the spec has
no bindDN. The password is then held in two Secrets of the namespace, readable by the same people;
the other way, an init container writing the file from the user's Secret into memory (as the redis URL's,
`materialize`), would add a container to every pod and make the file exist only inside them.

Probes: /livez, /readyz and /startupz are outside /v2/ and outside authentication in zot and in this
registry, and with mTLS a client without a certificate (the kubelet) is anonymous, not refused at the TLS
handshake (zot 2.1.12 and later; older zot required a certificate of every client, zot issue 2932): so
every auth mode keeps the probes of `statefulset` working as they are, HTTPS without credentials.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography import x509

from .models import LDAPAuth, ZotClusterSpec
from .names import ClusterRef, ldap_credentials_secret_name, object_metadata

HTPASSWD_DIR = "/etc/zot/auth"
HTPASSWD_FILE = "htpasswd"
LDAP_DIR = "/etc/zot/ldap"
LDAP_CREDENTIALS_DIR = f"{LDAP_DIR}/credentials"
LDAP_CREDENTIALS_FILE = "credentials.json"  # also the key of <name>-ldap-credentials
LDAP_CA_DIR = f"{LDAP_DIR}/ca"
MTLS_DIR = "/etc/zot/mtls"
CA_FILE = "ca.crt"

HTPASSWD_VOLUME = "auth"
LDAP_CREDENTIALS_VOLUME = "ldap-credentials"
LDAP_CA_VOLUME = "ldap-ca"
MTLS_CA_VOLUME = "mtls-ca"
_SECRET_MODE = 0o440  # the members' group (fsGroup), as the TLS and sync volumes


def auth_stanza(spec: ZotClusterSpec) -> dict[str, Any] | None:
    """zot's http.auth for `spec`, or None without a login method. Paths only: no Secret's value."""
    auth = spec.auth
    if auth is None or not (auth.htpasswd or auth.ldap or auth.mtls):
        return None
    stanza: dict[str, Any] = {}
    if auth.htpasswd is not None:
        stanza["htpasswd"] = {"path": f"{HTPASSWD_DIR}/{HTPASSWD_FILE}"}
    if auth.ldap is not None:
        stanza["ldap"] = ldap_stanza(auth.ldap)
    if auth.mtls is not None:
        stanza["mtls"] = auth.mtls.zot_stanza()
    return stanza


def ldap_stanza(ldap: LDAPAuth) -> dict[str, Any]:
    """zot's http.auth.ldap (its keys as zot 2.1.20's examples write them)."""
    stanza: dict[str, Any] = {
        "address": ldap.address,
        "port": ldap.effective_port,
        "insecure": ldap.insecure,
        "startTLS": ldap.start_tls,
        "skipVerify": ldap.skip_verify,
        "subtreeSearch": ldap.subtree_search,
        "baseDN": ldap.base_dn,
        "userAttribute": ldap.user_attribute,
    }
    if ldap.user_group_attribute is not None:
        stanza["userGroupAttribute"] = ldap.user_group_attribute
    if ldap.user_filter is not None:
        stanza["userFilter"] = ldap.user_filter
    if ldap.bind_dn is not None:
        # Without a credentials file zot binds anonymously to look users up.
        stanza["credentialsFile"] = f"{LDAP_CREDENTIALS_DIR}/{LDAP_CREDENTIALS_FILE}"
    if ldap.ca_secret is not None:
        stanza["caCert"] = f"{LDAP_CA_DIR}/{CA_FILE}"
    return stanza


def tls_cacert(spec: ZotClusterSpec) -> str | None:
    """zot's http.tls.cacert: the CA of the client certificates that mTLS accepts (with it zot asks every
    client for a certificate, and takes one that has none as anonymous)."""
    return f"{MTLS_DIR}/{CA_FILE}" if spec.auth and spec.auth.mtls else None


def access_control_stanza(spec: ZotClusterSpec) -> dict[str, Any] | None:
    """zot's http.accessControl, or None without spec.auth.accessControl."""
    if spec.auth is None or spec.auth.access_control is None:
        return None
    return spec.auth.access_control.zot_stanza()


# The Secrets --------------------------------------------------------------------------------------


def uses_ldap_credentials(spec: ZotClusterSpec) -> bool:
    return bool(spec.auth and spec.auth.ldap and spec.auth.ldap.bind_password_secret)


def auth_start_secrets(spec: ZotClusterSpec) -> list[str]:
    """The user's Secrets of spec.auth that the members read only when they start: the CAs. Not the htpasswd
    file (the registry reads it again when it changes, and the kubelet updates a mounted Secret in place),
    nor the bind password: it reaches the members through <name>-ldap-credentials, whose own version rolls
    them (`secret_steps.ensure_ldap_credentials`)."""
    auth, names = spec.auth, []
    if auth and auth.ldap and auth.ldap.ca_secret:
        names.append(auth.ldap.ca_secret.name)
    if auth and auth.mtls:
        names.append(auth.mtls.ca_secret.name)
    return names


def ca_problem(data: bytes) -> str | None:
    """What keeps `data` from being a CA file the members load (PEM certificates, as zot's
    AppendCertsFromPEM takes them), in words that quote nothing of it."""
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        certificates = []
    if not certificates:
        return "holds no PEM certificate: it must hold the CA's certificates (-----BEGIN CERTIFICATE-----)"
    return None


def shares_certificate(users_ca: bytes, cluster_ca: bytes) -> bool:
    """Whether the users' CA file holds a certificate of the cluster CA's. The registry refuses that at start
    (its preflight): a member believes the identity another member vouches for from a certificate of the
    cluster CA, so users' certificates from it could vouch for any name."""
    try:
        theirs = set(x509.load_pem_x509_certificates(cluster_ca))
        return bool(theirs & set(x509.load_pem_x509_certificates(users_ca)))
    except ValueError:
        return False


BIND_PASSWORD_PROBLEM = "must hold the password of bindDN as one line of UTF-8 text, and is empty or is not"


def bind_password(value: bytes) -> str | None:
    """The password a bindPasswordSecret's value holds, or None when it holds none (BIND_PASSWORD_PROBLEM). A
    trailing newline is what `echo pw > file; kubectl create secret --from-file` leaves: not the password's."""
    try:
        password = value.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        return None
    return password if password and "\n" not in password and "\r" not in password else None


def ldap_credentials_file(bind_dn: str, bind_password: str) -> bytes:
    """zot's LDAP credentials file (config.LDAPCredentials, read with both keys required)."""
    return json.dumps({"bindDN": bind_dn, "bindPassword": bind_password}, sort_keys=True).encode()


def ldap_credentials_secret(ref: ClusterRef, bind_password: str) -> dict[str, Any]:
    """The operator's Secret holding the LDAP credentials file, owned by the ZotCluster. As `data` (base64),
    not stringData: what the API server stores is what is compared, so an unchanged file costs no write."""
    ldap = ref.spec.auth.ldap if ref.spec.auth else None
    assert ldap is not None and ldap.bind_dn is not None
    content = ldap_credentials_file(ldap.bind_dn, bind_password)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": object_metadata(ref, ldap_credentials_secret_name(ref.name)),
        "data": {LDAP_CREDENTIALS_FILE: base64.b64encode(content).decode()},
    }


# The volumes --------------------------------------------------------------------------------------


def auth_volumes(ref: ClusterRef) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The member pod's volumes for spec.auth and the member container's mounts of them."""
    auth = ref.spec.auth
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []

    def mount(volume: str, secret: str, key: str, file: str, directory: str) -> None:
        volumes.append(_secret_volume(volume, secret, [{"key": key, "path": file}]))
        mounts.append({"name": volume, "mountPath": directory, "readOnly": True})

    if auth is None:
        return volumes, mounts
    if auth.htpasswd is not None:
        mount(HTPASSWD_VOLUME, auth.htpasswd.secret_name, auth.htpasswd.key, HTPASSWD_FILE, HTPASSWD_DIR)
    if auth.ldap is not None:
        if uses_ldap_credentials(ref.spec):
            name = ldap_credentials_secret_name(ref.name)
            mount(LDAP_CREDENTIALS_VOLUME, name, LDAP_CREDENTIALS_FILE, LDAP_CREDENTIALS_FILE, LDAP_CREDENTIALS_DIR)
        if auth.ldap.ca_secret is not None:
            mount(LDAP_CA_VOLUME, auth.ldap.ca_secret.name, auth.ldap.ca_secret.key, CA_FILE, LDAP_CA_DIR)
    if auth.mtls is not None:
        mount(MTLS_CA_VOLUME, auth.mtls.ca_secret.name, auth.mtls.ca_secret.key, CA_FILE, MTLS_DIR)
    return volumes, mounts


def _secret_volume(name: str, secret: str, items: list[dict[str, str]]) -> dict[str, Any]:
    return {"name": name, "secret": {"secretName": secret, "defaultMode": _SECRET_MODE, "items": items}}
