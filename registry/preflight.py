"""Checks of the files a valid config names, run by `verify` and by `serve` before it starts.

A config can be valid and still unusable on this machine: a missing htpasswd file, a certificate
whose key belongs to another one, a log file in a directory that does not exist. Found here, each is
one line naming the file, line and key; found by a worker at start, it was a traceback per worker.
load_and_report and load_and_check print what loading and these checks found, for both commands.
"""

from __future__ import annotations

import datetime
import os
import ssl
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from .config import ConfigError, LoadedConfig, PathKey, Problem, TLSConfig, load_config
from .config.ldap import LDAPConfig

# Certificates, keys and htpasswd files are small; a huge "certificate" is a wrong path.
_MAX_BYTES = 16 << 20
_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")


@dataclass
class Findings:
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def check_files(loaded: LoadedConfig) -> Findings:
    """Every problem with the files and directories the config names."""
    config, found = loaded.config, Findings()
    checks: list[tuple[PathKey, str, Callable[[], None]]] = []
    auth = config.http.auth
    if auth is not None and auth.htpasswd is not None and auth.htpasswd.path:
        path = auth.htpasswd.path
        checks.append(
            (
                ("http", "auth", "htpasswd", "path"),
                path,
                lambda: _check_htpasswd(("http", "auth", "htpasswd", "path"), path, found),
            )
        )
    if auth is not None and auth.ldap is not None:
        ldap = auth.ldap
        ldap_key: PathKey = ("http", "auth", "ldap", "caCert")
        checks.append((ldap_key, ldap.ca_cert or "", lambda: _check_ldap_ca(ldap_key, ldap, found)))
    if config.http.tls is not None:
        http_tls = config.http.tls
        checks.append((("http", "tls"), "", lambda: _check_pair(("http", "tls"), http_tls, found)))
        if http_tls.cacert:
            user_ca = http_tls.cacert
            cluster_ca = config.cluster.tls.cacert if config.cluster is not None and config.cluster.tls else None
            ca_key: PathKey = ("http", "tls", "cacert")
            checks.append((ca_key, user_ca, lambda: _check_client_ca(ca_key, user_ca, cluster_ca, found)))
    if config.cluster is not None and config.cluster.tls is not None:
        cluster_tls = config.cluster.tls
        checks.append((("cluster", "tls"), "", lambda: _check_cluster_tls(cluster_tls, found)))
    if config.log.output:
        output = config.log.output
        checks.append((("log", "output"), output, lambda: _check_writable_file(("log", "output"), output, found)))
    if config.storage.storage_driver is None:
        root = config.storage.root_directory
        checks.append(
            (("storage", "rootDirectory"), root, lambda: _check_root(("storage", "rootDirectory"), root, found))
        )
    for key, value, check in checks:
        try:
            check()
        except OSError as err:  # what the checks did not foresee (a name too long, say): still one line
            found.errors.append((key, f"{_shown(value or str(err.filename))}: {err.strerror or err}"))
    return found


def _check_ldap_ca(key: PathKey, ldap: LDAPConfig, found: Findings) -> None:
    """What the LDAP client will load when it starts: caCert must be PEM CA certificates."""
    try:
        ldap.tls_context()
    except ConfigError as err:
        found.errors.append((key, str(err)))


def _check_client_ca(key: PathKey, value: str, cluster_ca: str | None, found: Findings) -> None:
    """http.tls.cacert: PEM certificates, none of them the cluster CA. A member believes the
    identity another member vouches for (authn/current.py) from a certificate of the cluster CA;
    were users' certificates issued by it too, any user could vouch for any name."""
    data = _read(key, value, found)
    certificates = _certificates(key, value, data, found) if data is not None else None
    if not certificates or not cluster_ca:
        return
    try:
        members = x509.load_pem_x509_certificates(Path(cluster_ca).read_bytes())
    except (OSError, ValueError):
        return  # reported under cluster.tls.cacert
    shared = {c.subject.rfc4514_string() for c in certificates if c in members}
    if shared:
        found.errors.append(
            (
                key,
                f"{value}: holds the cluster CA ({', '.join(sorted(shared))}), which issues the members' "
                "certificates: users' client certificates need a CA of their own",
            )
        )


def _check_cluster_tls(tls: TLSConfig, found: Findings) -> None:
    if tls.cacert:
        data = _read(("cluster", "tls", "cacert"), tls.cacert, found)
        if data is not None:
            _certificates(("cluster", "tls", "cacert"), tls.cacert, data, found)
    _check_pair(("cluster", "tls"), tls, found)


def load_and_report(path: str) -> LoadedConfig | None:
    """Load a config, printing its warnings and errors to stderr; None when it cannot be used."""
    try:
        loaded = load_config(path)
    except ConfigError as err:
        for message in err.messages:
            print(f"error: {message}", file=sys.stderr)
        return None
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return loaded


def load_and_check(path: str) -> LoadedConfig | None:
    """Load a config and check its files, printing warnings and errors to stderr (one line each);
    None when it cannot be used."""
    loaded = load_and_report(path)
    if loaded is None:
        return None
    found = check_files(loaded)
    for line in loaded.describe(found.warnings):
        print(f"warning: {line}", file=sys.stderr)
    for line in loaded.describe(found.errors):
        print(f"error: {line}", file=sys.stderr)
    return None if found.errors else loaded


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _shown(value: str) -> str:
    """A path as written, with where a relative one was looked for (zot reads them from the cwd too)."""
    return value if os.path.isabs(value) else f"{value} (relative to {os.getcwd()})"


def _read(key: PathKey, value: str, found: Findings) -> bytes | None:
    """The contents of a regular file, or None with the reason recorded against `key`."""
    try:
        info = os.stat(value)
    except (FileNotFoundError, NotADirectoryError):
        found.errors.append((key, f"{_shown(value)}: no such file"))
        return None
    except OSError as err:
        found.errors.append((key, f"{_shown(value)}: cannot be read: {err.strerror}"))
        return None
    if stat.S_ISDIR(info.st_mode):
        found.errors.append((key, f"{_shown(value)}: is a directory, not a file"))
        return None
    if not stat.S_ISREG(info.st_mode):
        # A FIFO or a device would block or never end; no certificate or htpasswd file is one.
        found.errors.append((key, f"{_shown(value)}: is not a regular file"))
        return None
    try:
        with open(value, "rb") as handle:
            return handle.read(_MAX_BYTES)
    except PermissionError:
        found.errors.append((key, f"{_shown(value)}: permission denied (cannot be read)"))
    except OSError as err:
        found.errors.append((key, f"{_shown(value)}: cannot be read: {err.strerror}"))
    return None


def _check_htpasswd(key: PathKey, value: str, found: Findings) -> None:
    data = _read(key, value, found)
    if data is None:
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        found.errors.append((key, f"{_shown(value)}: not a text file (htpasswd lines are user:bcrypt-hash)"))
        return
    users = 0
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        users += 1
        user, hashed = line.split(":", 1)
        if not hashed.startswith(_BCRYPT_PREFIXES):
            found.warnings.append(
                (
                    key,
                    f"{value}:{number}: the password of {user!r} is not a bcrypt hash "
                    "(create it with htpasswd -B); this user cannot log in",
                )
            )
    if users == 0:
        # Fails closed (nobody gets in), so a warning: an empty file may be filled in later.
        found.warnings.append((key, f"{value}: has no user:password lines; nobody can log in"))


def _check_writable_file(key: PathKey, value: str, found: Findings) -> None:
    """A file the registry appends to (the log): it, or the directory it goes in, must be writable."""
    path = Path(value)
    if path.is_dir():
        found.errors.append((key, f"{_shown(value)}: is a directory, not a file"))
    elif path.exists():
        if not os.access(path, os.W_OK):
            found.errors.append((key, f"{_shown(value)}: permission denied (cannot be written)"))
    elif not path.parent.is_dir():
        found.errors.append((key, f"{_shown(value)}: the directory {path.parent} does not exist"))
    elif not os.access(path.parent, os.W_OK | os.X_OK):
        found.errors.append((key, f"{_shown(value)}: permission denied (cannot create files in {path.parent})"))


def _check_root(key: PathKey, value: str, found: Findings) -> None:
    """The storage root, or the nearest directory above it that exists (the store creates the rest)."""
    path = Path(value)
    if path.exists() and not path.is_dir():
        found.errors.append((key, f"{_shown(value)}: is not a directory"))
        return
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        found.errors.append((key, f"{_shown(value)}: cannot be created: {existing} is not a directory"))
    elif not os.access(existing, os.W_OK | os.X_OK):
        found.errors.append((key, f"{_shown(value)}: permission denied (cannot write in {existing})"))


# --------------------------------------------------------------------------------------------
# Certificates and keys
# --------------------------------------------------------------------------------------------


def _check_pair(section: PathKey, tls: TLSConfig, found: Findings) -> None:
    """cert and key: both readable, both PEM, the key the certificate's, and usable by OpenSSL."""
    if not tls.cert or not tls.key:
        return  # validation already said that they come together
    cert_key, key_key = (*section, "cert"), (*section, "key")
    cert_data, key_data = _read(cert_key, tls.cert, found), _read(key_key, tls.key, found)
    certificates = _certificates(cert_key, tls.cert, cert_data, found) if cert_data is not None else None
    private_key = _private_key(key_key, tls.key, key_data, found) if key_data is not None else None
    if not certificates or private_key is None:
        return
    leaf = certificates[0]
    if _public_bytes(leaf.public_key()) != _public_bytes(private_key.public_key()):
        found.errors.append(
            (key_key, f"{tls.key}: does not belong to the certificate {tls.cert} (their public keys differ)")
        )
        return
    try:
        # What hypercorn (and the peers' client) will do with them; catches what OpenSSL refuses.
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(tls.cert, tls.key)
    except (ssl.SSLError, OSError) as err:
        found.errors.append((cert_key, f"{tls.cert}: cannot be used for TLS: {err}"))
        return
    now = datetime.datetime.now(datetime.UTC)
    if leaf.not_valid_after_utc < now:
        found.warnings.append(
            (cert_key, f"{tls.cert}: expired on {leaf.not_valid_after_utc:%Y-%m-%d}; clients will refuse it")
        )
    elif leaf.not_valid_before_utc > now:
        found.warnings.append(
            (
                cert_key,
                f"{tls.cert}: not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} "
                "UTC; clients will refuse it until then",
            )
        )


def _certificates(key: PathKey, value: str, data: bytes, found: Findings) -> list[x509.Certificate] | None:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        pass
    try:
        x509.load_der_x509_certificate(data)
    except ValueError:
        found.errors.append((key, f"{value}: not a PEM certificate"))
    else:
        found.errors.append(
            (key, f"{value}: a DER certificate; PEM is needed (openssl x509 -inform der -in FILE -out FILE.pem)")
        )
    return None


def _private_key(key: PathKey, value: str, data: bytes, found: Findings) -> PrivateKeyTypes | None:
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        found.errors.append(
            (key, f"{value}: the key is encrypted; the registry needs it unencrypted (it cannot ask for a passphrase)")
        )
    except UnsupportedAlgorithm:
        found.errors.append((key, f"{value}: a private key of a type that is not supported"))
    except ValueError:
        found.errors.append((key, f"{value}: not a PEM private key"))
    return None


def _public_bytes(public_key: object) -> bytes:
    encode = getattr(public_key, "public_bytes", None)
    if encode is None:
        return b""
    try:
        return bytes(encode(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    except (ValueError, TypeError):
        return b""
