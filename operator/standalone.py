"""`zot-operator render`'s output: every child of a ZotCluster, and the Secrets it needs, appliable alone.

The operator makes some Secrets once and keeps them (the hash key, the cluster CA and the server
certificate, the LDAP credentials file); the pods mount them, so output without them cannot run.
`render` makes them as the operator would on a first pass: a new hash key (the ConfigMap holds the same)
and a new CA and certificate on every run, unless `--hash-key` or the manifest's hashKeySecret gives the
key. The user's own Secrets (htpasswd, S3 credentials, CAs, ...) are not the operator's to make: the
header says which the pods read and whether the manifest holds them, so that `kubectl apply` of the
output is never a set of pods stuck in ContainerCreating for a reason nobody said.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zot_registry.cluster.hashing import new_hash_key

from .auth import bind_password, ldap_credentials_secret, uses_ldap_credentials
from .local.manifest import Manifest
from .names import hash_key_secret_name, ldap_credentials_secret_name
from .render import ca_secret, certificate_hosts, render, tls_secret
from .render import hash_key_secret as hash_key_secret_object
from .tls_secrets import plan_tls


@dataclass
class Output:
    header: list[str]  # comment lines (without "# ") that say what was made and what is needed
    objects: list[dict[str, Any]]


def _hash_key(manifest: Manifest, given: str | None) -> tuple[str, str]:
    """(the key, where it comes from, for the header)."""
    if given is not None:
        return given, "--hash-key"
    named = manifest.ref.spec.hash_key_secret
    if named and "hashKey" in manifest.secrets.get(named, {}):
        return manifest.secrets[named]["hashKey"].decode("utf-8", errors="replace"), f"Secret {named} in the manifest"
    return new_hash_key(), "new"


def referenced_secrets(objects: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Secret name -> the keys the pods read of it (empty: all of it), from the rendered pod template."""
    found: dict[str, set[str]] = {}
    for obj in objects:
        if obj["kind"] != "StatefulSet":
            continue
        pod = obj["spec"]["template"]["spec"]
        for volume in pod.get("volumes", []):
            secret = volume.get("secret")
            if secret:
                found.setdefault(secret["secretName"], set()).update(i["key"] for i in secret.get("items", []))
        for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
            for variable in container.get("env", []):
                ref = (variable.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    found.setdefault(ref["name"], set()).add(ref["key"])
    return found


def standalone(manifest: Manifest, given_key: str | None = None) -> Output:
    ref = manifest.ref
    spec = ref.spec
    key, key_source = _hash_key(manifest, given_key)
    keys = {name: frozenset(data) for name, data in manifest.secrets.items()}
    rendered = render(ref, key, secret_keys=keys)
    made: list[dict[str, Any]] = []
    made_names: set[str] = set()  # named in the header already
    header = [f"ZotCluster {ref.namespace}/{ref.name}: what the operator would create, for `kubectl apply -f -`."]
    named_key = spec.hash_key_secret
    if named_key is None:
        made.append(hash_key_secret_object(ref, key))
        origin = "new on every render" if key_source == "new" else f"from {key_source}"
        header.append(
            f"Secret {hash_key_secret_name(ref)}: the hash key the ConfigMap holds ({origin}). The operator keeps "
            "the key it finds: a render with another key applied later would move every repository."
        )
    elif key_source == "new":
        header.append(
            f"Secret {named_key} (spec.hashKeySecret) is not in the manifest: the ConfigMap holds a new key; "
            f"pass the Secret's with --hash-key, or the members route by another key than the operator's."
        )
    if spec.tls.mode == "managed":
        material = plan_tls({}, {}, certificate_hosts(ref))
        made.append(ca_secret(ref, material.ca.cert_pem, material.ca.key_pem))
        made.append(tls_secret(ref, material.server.cert_pem, material.server.key_pem, material.ca.cert_pem))
        header.append(
            f"Secrets {made[-2]['metadata']['name']} and {made[-1]['metadata']['name']}: a new cluster CA and "
            "server certificate (tls.mode managed; the operator renews them)."
        )
    if uses_ldap_credentials(spec) and spec.auth and spec.auth.ldap and spec.auth.ldap.bind_password_secret:
        source = spec.auth.ldap.bind_password_secret
        password = bind_password(manifest.secrets.get(source.name, {}).get(source.key, b""))
        made_by_operator = ldap_credentials_secret_name(ref.name)
        if password is not None:
            made.append(ldap_credentials_secret(ref, password))
            header.append(f"Secret {made_by_operator}: zot's LDAP credentials file, from Secret {source.name}.")
        else:
            header.append(
                f"Needs Secret {made_by_operator}, which the operator makes from Secret {source.name} "
                "(spec.auth.ldap.bindPasswordSecret): put that Secret in the manifest to have it rendered."
            )
            made_names.add(made_by_operator)
    rendered_names = made_names | {o["metadata"]["name"] for o in made}
    needed = {n: k for n, k in referenced_secrets(rendered.objects).items() if n not in rendered_names}
    for name, wanted in sorted(needed.items()):
        what = f"keys {', '.join(sorted(wanted))}" if wanted else "all its keys"
        where = "it is in the manifest: apply that too" if name in manifest.secrets else "create it first"
        header.append(f"Needs Secret {name} in namespace {ref.namespace} ({what}), which is not rendered: {where}.")
    return Output(header, [*made, *rendered.objects])
