"""A real OpenLDAP server (slapd) for the LDAP login tests: on loopback, with its own config, data
and certificates in a folder of the test's, stopped with the test.

How it works:

- `running_slapd(folder)` writes `slapd.conf` (slapd -f, no slapd.d): the core, cosine,
  inetorgperson and nis schemas from /etc/ldap/schema, the back_mdb and memberof modules from
  /usr/lib/ldap (Debian's paths), one mdb database for dc=zot,dc=test in the folder, and a TLS
  certificate for 127.0.0.1 and localhost (or `cert_hosts`) from tests/support/certs.make_certs;
- slapd runs in the foreground (`-d stats`: connections, binds and searches go to `slapd.log`) in
  its own process group (process_groups.Component), listening on two free loopback ports:
  `ldap://` (plain, and StartTLS) and `ldaps://`. The packaged slapd service never runs
  (hack/install-apt.sh installs slapd and ldap-utils with their services off);
- once the port accepts connections the test tree (TREE) is added over LDAP with ldapadd as the
  database's root DN: online, so that the memberof overlay writes each user's memberOf, as a real
  directory with groupOfNames groups does;
- `allow bind_anon_dn`: a bind with a DN and an empty password succeeds (as anonymous), as it does
  on many servers, so that a test shows that such a login is still refused;
- who may read what (ACCESS): the service account (SEARCHER_DN) reads everything; anonymous may
  bind, and read ou=contractors only (slapd answers noSuchObject for ou=people, which it hides);
  users may read their own entry;
- `stop()` (and the end of the `with` block) sends SIGTERM to the process group, SIGKILL after 10 s.

The tree: ou=people holds alice (group readers), bob (writers), carol (devs; a password with a space
and umlauts), dave (no group) and one "twin"; ou=contractors,ou=people holds erin (devs and outside;
found only by a subtree search) and a second "twin" (a subtree search finds two). ou=groups holds
the groupOfNames groups. `ldap_config` writes the credentials file and returns an http.auth.ldap
stanza for this server in one of zot's three modes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tests.support.certs import CertFiles, make_certs
from tests.support.ports import free_ports
from tests.support.process_groups import Component, tail

HOST = "127.0.0.1"
SUFFIX = "dc=zot,dc=test"
PEOPLE = f"ou=people,{SUFFIX}"
CONTRACTORS = f"ou=contractors,{PEOPLE}"
GROUPS = f"ou=groups,{SUFFIX}"
ROOT_DN, ROOT_PASSWORD = f"cn=admin,{SUFFIX}", "root-secret"
SEARCHER_DN, SEARCHER_PASSWORD = f"cn=searcher,{SUFFIX}", "searcher-secret"
STARTUP_SECONDS = 20.0
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")
MODULE_PATH = Path("/usr/lib/ldap")


@dataclass(frozen=True)
class User:
    uid: str
    password: str
    groups: tuple[str, ...] = ()
    ou: str = PEOPLE

    @property
    def dn(self) -> str:
        return f"uid={self.uid},{self.ou}"


USERS: dict[str, User] = {
    user.uid: user
    for user in (
        User("alice", "alice-password", ("readers",)),
        User("bob", "bob-password", ("writers",)),
        User("carol", "carol pässwörd", ("devs",)),
        User("dave", "dave-password"),
        User("erin", "erin-password", ("devs", "outside"), CONTRACTORS),
    )
}
# The same uid twice: a subtree search below ou=people finds two entries.
TWINS = (User("twin", "twin-password"), User("twin", "twin-password", (), CONTRACTORS))


def group_dn(name: str) -> str:
    return f"cn={name},{GROUPS}"


def _tree() -> str:
    entries = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: zot test\ndc: zot",
        f"dn: {SEARCHER_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        f"cn: searcher\nuserPassword: {SEARCHER_PASSWORD}",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people",
        f"dn: {CONTRACTORS}\nobjectClass: organizationalUnit\nou: contractors",
        f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups",
    ]
    for user in (*USERS.values(), *TWINS):
        # userPassword:: base64, so that a password with spaces or non-ASCII letters stays as it is.
        password = base64.b64encode(user.password.encode()).decode()
        entries.append(
            f"dn: {user.dn}\nobjectClass: inetOrgPerson\nuid: {user.uid}\ncn: {user.uid}\nsn: {user.uid}\n"
            f"userPassword:: {password}"
        )
    members: dict[str, list[str]] = {}
    for user in USERS.values():
        for name in user.groups:
            members.setdefault(name, []).append(user.dn)
    for name, dns in sorted(members.items()):
        lines = "\n".join(f"member: {dn}" for dn in dns)
        entries.append(f"dn: {group_dn(name)}\nobjectClass: groupOfNames\ncn: {name}\n{lines}")
    return "\n\n".join(entries) + "\n"


TREE = _tree()
ACCESS = f"""\
access to attrs=userPassword
    by anonymous auth
    by * none
access to dn.subtree="{CONTRACTORS}"
    by dn.exact="{SEARCHER_DN}" read
    by self read
    by anonymous read
    by * none
access to *
    by dn.exact="{SEARCHER_DN}" read
    by self read
    by * none
"""


def _binary(name: str) -> str:
    found = shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if not found:
        raise RuntimeError(f"{name} is not installed: run `bash hack/install-apt.sh slapd ldap-utils` (or make tools)")
    return found


@dataclass
class Slapd:
    """A running slapd: `port` speaks plain LDAP and StartTLS, `ldaps_port` LDAPS."""

    folder: Path
    port: int
    ldaps_port: int
    certs: CertFiles
    log: Path
    component: Component = field(repr=False)
    host: str = HOST

    @property
    def url(self) -> str:
        return f"ldap://{self.host}:{self.port}"

    def running(self) -> bool:
        return self.component.running()

    def stop(self) -> None:
        self.component.stop()

    def log_tail(self) -> str:
        return tail(self.log)


def _config(folder: Path, certs: CertFiles) -> str:
    schemas = "\n".join(f"include /etc/ldap/schema/{name}.schema" for name in SCHEMAS)
    return f"""\
{schemas}
# The anonymous bind trap, live: a DN with an empty password binds (as anonymous), as on many servers.
allow bind_anon_dn
modulepath {MODULE_PATH}
moduleload back_mdb
moduleload memberof
pidfile {folder / "slapd.pid"}
argsfile {folder / "slapd.args"}
TLSCACertificateFile {certs.ca}
TLSCertificateFile {certs.cert}
TLSCertificateKeyFile {certs.key}

database mdb
maxsize 16777216
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PASSWORD}
directory {folder / "db"}
overlay memberof
{ACCESS}"""


def _wait_listening(slapd: Slapd) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if not slapd.running():
            raise RuntimeError(f"slapd exited:\n{slapd.log_tail()}")
        try:
            with socket.create_connection((slapd.host, slapd.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"slapd not listening on {slapd.url} after {STARTUP_SECONDS}s:\n{slapd.log_tail()}")


def _load_tree(slapd: Slapd) -> None:
    ldif = slapd.folder / "tree.ldif"
    ldif.write_text(TREE)
    done = subprocess.run(
        [_binary("ldapadd"), "-x", "-H", slapd.url, "-D", ROOT_DN, "-w", ROOT_PASSWORD, "-f", str(ldif)],
        capture_output=True,
        text=True,
        timeout=STARTUP_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ldapadd failed ({done.returncode}): {done.stderr}\n{slapd.log_tail()}")


@contextlib.contextmanager
def running_slapd(folder: Path, cert_hosts: tuple[str, ...] = (HOST, "localhost")) -> Iterator[Slapd]:
    """slapd serving the test tree from `folder` (created), with a certificate for `cert_hosts`,
    stopped when the block ends."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "db").mkdir(exist_ok=True)
    certs = make_certs(folder / "tls", list(cert_hosts), ca_name="slapd test CA")
    conf = folder / "slapd.conf"
    conf.write_text(_config(folder, certs))
    port, ldaps_port = free_ports(2, HOST)
    log = folder / "slapd.log"
    listen = f"ldap://{HOST}:{port}/ ldaps://{HOST}:{ldaps_port}/"
    component = Component("slapd", [_binary("slapd"), "-d", "stats", "-f", str(conf), "-h", listen], log)
    slapd = Slapd(folder, port, ldaps_port, certs, log, component)
    component.start()
    try:
        _wait_listening(slapd)
        _load_tree(slapd)
        yield slapd
    finally:
        component.stop()


Mode = Literal["starttls", "ldaps", "plain"]


def ldap_config(slapd: Slapd, folder: Path, mode: Mode = "starttls", **keys: Any) -> dict[str, Any]:
    """An http.auth.ldap stanza for `slapd` (keys as zot spells them), with its credentials file
    written to `folder`: StartTLS ("insecure" and "startTLS", as zot asks for it), LDAPS (zot's
    default) or plain LDAP; the server's certificate checked against the fixture's CA. `keys`
    override or add keys (None removes one)."""
    credentials = folder / "ldap-credentials.json"
    credentials.write_text(json.dumps({"bindDN": SEARCHER_DN, "bindPassword": SEARCHER_PASSWORD}))
    stanza: dict[str, Any] = {
        "credentialsFile": str(credentials),
        "address": slapd.host,
        "port": slapd.ldaps_port if mode == "ldaps" else slapd.port,
        "insecure": mode != "ldaps",
        "startTLS": mode == "starttls",
        "caCert": str(slapd.certs.ca),
        "baseDN": PEOPLE,
        "userAttribute": "uid",
        "userGroupAttribute": "memberOf",
        "subtreeSearch": True,
    }
    stanza.update(keys)
    return {key: value for key, value in stanza.items() if value is not None}
