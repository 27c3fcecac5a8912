"""spec.sync rendered into zot's extensions.sync, its files mounted from Secrets: pure, no API server.

The rendered stanza must load through the registry's own validation (`parse_config`), with the files it
names where the member's volumes put them: the Secrets are projected here as a kubelet would, from the
StatefulSet's volumes, and the in-pod paths mapped onto them (tests.support.pod_runner.remap_paths)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from zot_operator.cli import _load_cluster
from zot_operator.crd import SPEC_RULES, crd_yaml
from zot_operator.local.manifest import load_manifest
from zot_operator.local.state import prepare
from zot_operator.materialize import fill
from zot_operator.member_control import MemberApi
from zot_operator.models import (
    POLL_NEEDS_CONTENT,
    RETRIES_NEED_DELAY,
    SYNC_URL_MESSAGE,
    SYNCS_NOTHING,
    ZotClusterSpec,
)
from zot_operator.names import ClusterRef
from zot_operator.reconcile import reconcile
from zot_operator.render import render
from zot_operator.statefulset import SECRETS_ANNOTATION, start_secrets
from zot_operator.status import as_patch
from zot_operator.sync import cert_items, cert_problem, credentials_problem
from zot_registry.certs import KeyPair
from zot_registry.config import ConfigError, load_config, load_credentials, parse_config

from tests.support.memory_kube import MemoryKube
from tests.support.paths import REPO_ROOT
from tests.support.pod_runner import remap_paths

PULL_THROUGH = REPO_ROOT / "examples" / "zotcluster-pull-through.yaml"
S3_EXAMPLE = REPO_ROOT / "examples" / "zotcluster-s3.yaml"
KEY = "0123456789abcdef"
PASSWORD = "s3cr3t-upstream-pw"
CREDENTIALS = {"registry-1.docker.io": {"username": "puller", "password": PASSWORD}}
PEM = b"-----BEGIN CERTIFICATE-----\nnot parsed at load\n-----END CERTIFICATE-----\n"

SYNC: dict[str, Any] = {
    "credentialsSecret": {"name": "upstream-creds"},
    "registries": [
        {"urls": ["https://registry-1.docker.io"], "onDemand": True, "content": [{"prefix": "library/**"}]},
        {
            "urls": ["https://mirror.example.com:5000", "https://mirror2.example.com"],
            "pollInterval": "6h",
            "certSecret": {"name": "mirror-tls"},
            "maxRetries": 3,
            "retryDelay": "5m",
            "syncTimeout": "30m",
            "content": [
                {
                    "prefix": "team/**",
                    "destination": "/mirror",
                    "stripPrefix": True,
                    "tags": {"regex": "^v", "excludeRegex": "-rc", "semver": True},
                }
            ],
        },
        {"urls": ["http://internal:5000"], "onDemand": True, "tlsVerify": False, "certSecret": {"name": "internal-ca"}},
    ],
}
SECRETS: dict[str, dict[str, bytes]] = {
    "upstream-creds": {"credentials.json": json.dumps(CREDENTIALS).encode()},
    # a kubernetes.io/tls Secret (cert-manager's): its pair becomes client.cert / client.key
    "mirror-tls": {"ca.crt": PEM, "tls.crt": PEM, "tls.key": b"client key"},
    "internal-ca": {"ca.crt": PEM, "unrelated": b"left out"},
}


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind)


def cluster(sync: dict[str, Any] = SYNC, **spec: Any) -> ClusterRef:
    return ClusterRef("demo", "default", "", ZotClusterSpec.model_validate({"sync": sync, **spec}))


def keys_of(secrets: dict[str, dict[str, bytes]]) -> dict[str, frozenset[str]]:
    return {name: frozenset(data) for name, data in secrets.items()}


def project(pod: dict[str, Any], config_text: str, secrets: dict[str, dict[str, bytes]], root: Path) -> dict[str, Any]:
    """The member container's config as it would read it: every volume made into files under `root` (the
    Secret volumes of `secrets` with their items, as a kubelet projects them; the others, the TLS Secret and
    the claim, as empty folders: loading a config does not read them), its in-pod paths mapped onto them."""
    [container] = pod["containers"]
    for volume in pod["volumes"]:
        folder = root / volume["name"]
        folder.mkdir(parents=True)
        if "secret" in volume and volume["secret"]["secretName"] in secrets:
            data = secrets[volume["secret"]["secretName"]]
            for item in volume["secret"]["items"]:
                (folder / item["path"]).write_bytes(data[item["key"]])
        elif "configMap" in volume:
            (folder / "config.json").write_text(config_text)
    mounts = {m["mountPath"]: root / m["name"] / m.get("subPath", "") for m in container["volumeMounts"]}
    config: dict[str, Any] = remap_paths(json.loads(config_text), mounts)
    return config


def test_the_pull_through_example_renders_a_stanza_the_registry_loads() -> None:
    ref = _load_cluster(str(PULL_THROUGH))
    rendered = render(ref, KEY)
    assert json.loads(rendered.config_text)["extensions"]["sync"] == {
        "enable": True,
        "registries": [
            {
                "urls": ["https://registry-1.docker.io"],
                "onDemand": True,
                "tlsVerify": True,
                "maxRetries": 3,
                "retryDelay": "5s",
                "syncTimeout": "30m",
                "content": [{"prefix": "library/**"}],
            }
        ],
    }
    loaded = parse_config(rendered.config_text, "rendered config.json")
    assert loaded.warnings == []
    sync = loaded.config.sync
    assert sync is not None and sync.enabled and sync.credentials_file is None
    [upstream] = sync.registries
    assert upstream.on_demand and upstream.max_retries == 3 and upstream.retry_delay == 5.0
    assert upstream.sync_timeout == 1800.0 and [c.prefix for c in upstream.content] == ["library/**"]
    # Nothing to mount, nothing that rolls the members on a Secret's change.
    pod = by_kind(rendered.objects, "StatefulSet")["spec"]["template"]["spec"]
    assert not [v for v in pod["volumes"] if v["name"].startswith("sync")]
    assert start_secrets(ref.spec) == []


def test_credentials_and_certificates_are_secret_volumes_and_the_config_names_only_their_paths(
    tmp_path: Path,
) -> None:
    ref = cluster()
    rendered = render(ref, KEY, secret_keys=keys_of(SECRETS))
    stanza = json.loads(rendered.config_text)["extensions"]["sync"]
    assert stanza["credentialsFile"] == "/etc/zot/sync/credentials/credentials.json"
    assert "downloadDir" not in stanza  # local storage: zot stages beside the repository, on the member's volume
    assert [r.get("certDir") for r in stanza["registries"]] == [None, "/etc/zot/sync/certs/1", "/etc/zot/sync/certs/2"]
    assert stanza["registries"][1] == {
        "urls": ["https://mirror.example.com:5000", "https://mirror2.example.com"],
        "onDemand": False,
        "tlsVerify": True,
        "certDir": "/etc/zot/sync/certs/1",
        "pollInterval": "6h",
        "maxRetries": 3,
        "retryDelay": "5m",
        "syncTimeout": "30m",
        "content": [
            {
                "prefix": "team/**",
                "destination": "/mirror",
                "stripPrefix": True,
                "tags": {"regex": "^v", "excludeRegex": "-rc", "semver": True},
            }
        ],
    }
    # No Secret's value anywhere in the ConfigMap (render never sees one): paths only.
    configmap = by_kind(rendered.objects, "ConfigMap")["data"]["config.json"]
    assert PASSWORD not in configmap and "puller" not in configmap and "BEGIN CERTIFICATE" not in configmap
    pod = by_kind(rendered.objects, "StatefulSet")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"] if v["name"].startswith("sync")}
    assert volumes == {
        "sync-credentials": {
            "name": "sync-credentials",
            "secret": {
                "secretName": "upstream-creds",
                "defaultMode": 0o440,
                "items": [{"key": "credentials.json", "path": "credentials.json"}],
            },
        },
        "sync-certs-1": {
            "name": "sync-certs-1",
            "secret": {
                "secretName": "mirror-tls",
                "defaultMode": 0o440,
                "items": [
                    {"key": "ca.crt", "path": "ca.crt"},
                    {"key": "tls.crt", "path": "client.cert"},
                    {"key": "tls.key", "path": "client.key"},
                ],
            },
        },
        "sync-certs-2": {
            "name": "sync-certs-2",
            "secret": {
                "secretName": "internal-ca",
                "defaultMode": 0o440,
                "items": [{"key": "ca.crt", "path": "ca.crt"}],
            },
        },
    }
    [member] = pod["containers"]
    assert [m for m in member["volumeMounts"] if m["name"].startswith("sync")] == [
        {"name": "sync-credentials", "mountPath": "/etc/zot/sync/credentials", "readOnly": True},
        {"name": "sync-certs-1", "mountPath": "/etc/zot/sync/certs/1", "readOnly": True},
        {"name": "sync-certs-2", "mountPath": "/etc/zot/sync/certs/2", "readOnly": True},
    ]
    assert "env" not in member  # nothing of the sync Secrets in the environment either
    # The registry loads it with the files where the volumes put them: the credentials file (load_credentials)
    # and each certDir (a directory) are checked on disk.
    config = project(pod, rendered.config_text, SECRETS, tmp_path)
    loaded = parse_config(json.dumps(config), "member config.json").config.sync
    assert loaded is not None and loaded.credentials_file is not None
    assert load_credentials(loaded.credentials_file)["registry-1.docker.io"].password == PASSWORD
    cert_dirs = [r.cert_dir for r in loaded.registries]
    assert cert_dirs[0] is None and cert_dirs[1] is not None and cert_dirs[2] is not None
    assert sorted(p.name for p in Path(cert_dirs[1]).iterdir()) == ["ca.crt", "client.cert", "client.key"]
    assert sorted(p.name for p in Path(cert_dirs[2]).iterdir()) == ["ca.crt"]
    assert not loaded.registries[2].tls_verify and loaded.registries[1].content[0].strip_prefix


def test_a_changed_sync_secret_rolls_the_members() -> None:
    """The registry reads the credentials file and the certDirs when it starts: their Secrets' versions are
    in the pod template, as those of the other Secrets read at start."""
    ref = cluster()
    assert start_secrets(ref.spec) == ["internal-ca", "mirror-tls", "upstream-creds"]
    versions = {"internal-ca": "3", "mirror-tls": "4", "upstream-creds": "5"}

    def template(versions: dict[str, str], keys: dict[str, dict[str, bytes]] = SECRETS) -> dict[str, Any]:
        rendered = render(ref, KEY, secret_versions=versions, secret_keys=keys_of(keys))
        found: dict[str, Any] = by_kind(rendered.objects, "StatefulSet")["spec"]["template"]
        return found

    first = template(versions)
    assert first["metadata"]["annotations"][SECRETS_ANNOTATION] == "internal-ca=3,mirror-tls=4,upstream-creds=5"
    assert template({**versions, "upstream-creds": "6"}) != first
    assert template({**versions, "mirror-tls": "7"}) != first
    # Another set of keys changes the volume's items too (a client pair added to the CA).
    with_pair = {**SECRETS, "internal-ca": {**SECRETS["internal-ca"], "client.cert": PEM, "client.key": b"k"}}
    assert template(versions, with_pair) != first


def test_with_s3_storage_the_members_stage_in_an_empty_dir_the_registry_requires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s3 = _load_cluster(str(S3_EXAMPLE))
    spec = s3.spec.model_copy(update={"sync": cluster().spec.sync})
    ref = ClusterRef("registry", "default", "", spec)
    rendered = render(ref, KEY, secret_keys=keys_of(SECRETS))
    config = json.loads(rendered.config_text)
    assert config["extensions"]["sync"]["downloadDir"] == "/var/lib/zot-sync"
    pod = by_kind(rendered.objects, "StatefulSet")["spec"]["template"]["spec"]
    assert {"name": "sync-download", "emptyDir": {}} in pod["volumes"]
    [member] = pod["containers"]
    assert {"name": "sync-download", "mountPath": "/var/lib/zot-sync"} in member["volumeMounts"]
    # The init container's config (the redis URL from its Secret) with the sync files where the member has them.
    monkeypatch.delenv("ZOT_REDIS_URL", raising=False)
    complete = fill(config, {("storage", "cacheDriver", "url"): "redis://:pw@redis:6379"})
    complete["extensions"]["sync"].pop("credentialsFile")
    for registry in complete["extensions"]["sync"]["registries"]:
        registry.pop("certDir", None)
    assert parse_config(json.dumps(complete), "materialized config.json").config.sync is not None
    # Without it, the registry refuses to start (zot's rule for sync with remote storage).
    complete["extensions"]["sync"].pop("downloadDir")
    with pytest.raises(ConfigError, match="downloadDir"):
        parse_config(json.dumps(complete), "materialized config.json")


@pytest.mark.parametrize(
    ("keys", "items", "problem"),
    [
        ({"ca.crt"}, [("ca.crt", "ca.crt")], None),
        (
            {"ca.crt", "client.cert", "client.key"},
            [("ca.crt", "ca.crt"), ("client.cert", "client.cert"), ("client.key", "client.key")],
            None,
        ),
        ({"tls.crt", "tls.key"}, [("tls.crt", "client.cert"), ("tls.key", "client.key")], None),
        # zot's names first, when a Secret has both pairs
        (
            {"client.cert", "client.key", "tls.crt", "tls.key"},
            [("client.cert", "client.cert"), ("client.key", "client.key")],
            None,
        ),
        ({"ca.crt", "client.cert"}, None, "has client.cert without client.key"),
        ({"tls.key"}, None, "has tls.key without tls.crt"),
        ({"ca.pem"}, None, "holds none of the keys of a certDir"),
    ],
)
def test_a_cert_secrets_keys_decide_its_cert_dir(
    keys: set[str], items: list[tuple[str, str]] | None, problem: str | None
) -> None:
    if problem is None:
        assert cert_problem(keys) is None
        assert [(i["key"], i["path"]) for i in cert_items(keys)] == items
    else:
        assert problem in (cert_problem(keys) or "")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "is not JSON"),
        ("[1, 2]", "is not a JSON object"),
        (json.dumps({"https://registry-1.docker.io": {"username": "u", "password": PASSWORD}}), "without a scheme"),
        (json.dumps({"r:5000": PASSWORD}), "needs a username and a password"),
        (json.dumps({"r:5000": {"username": "u"}}), "needs a username and a password"),
        (json.dumps({"r:5000": {"username": "u", "password": 12345}}), "both strings"),
        (json.dumps({"r:5000": {"username": "u", "pasword": PASSWORD}}), "nothing else"),
        (json.dumps({host: {"username": "u", "password": "p"} for host in ("R:5000", "r:5000")}), "twice"),
    ],
)
def test_a_credentials_file_the_members_would_refuse_is_found_without_quoting_it(
    tmp_path: Path, content: str, problem: str
) -> None:
    found = credentials_problem(content.encode())
    assert found is not None and problem in found
    assert PASSWORD not in found and "12345" not in found
    # The registry refuses it too (what the operator's check stands in for).
    path = tmp_path / "credentials.json"
    path.write_text(content)
    with pytest.raises(ConfigError):
        load_credentials(str(path))


def test_a_credentials_file_the_members_load_passes(tmp_path: Path) -> None:
    content = json.dumps({**CREDENTIALS, "Mirror.Example.com:5000": {"UserName": "m", "password": "x"}})
    assert credentials_problem(("\ufeff" + content).encode()) is None
    path = tmp_path / "credentials.json"
    path.write_text(content)
    assert set(load_credentials(str(path))) == {"registry-1.docker.io", "mirror.example.com:5000"}


def registry(**settings: Any) -> dict[str, Any]:
    return {"registries": [{"urls": ["https://r.example.com"], "onDemand": True, **settings}]}


@pytest.mark.parametrize(
    ("sync", "message"),
    [
        ({"registries": []}, "at least 1 item"),
        (registry(urls=[]), "at least 1 item"),
        (registry(urls=["ftp://r.example.com"]), SYNC_URL_MESSAGE),
        (registry(urls=["r.example.com"]), SYNC_URL_MESSAGE),
        (registry(urls=["https://user:pw@r.example.com"]), SYNC_URL_MESSAGE),
        (registry(urls=["https://r.example.com/v2/"]), SYNC_URL_MESSAGE),
        (registry(onDemand=False, pollInterval="6h"), POLL_NEEDS_CONTENT),
        (registry(onDemand=False), SYNCS_NOTHING),
        (registry(maxRetries=3), RETRIES_NEED_DELAY),
        (registry(retryDelay="5 minutes"), "must be a duration"),
        (registry(retryDelay="5m", maxRetryDelay="1m"), "maxRetryDelay must be greater than or equal to retryDelay"),
        (registry(content=[{"prefix": ""}]), "at least 1 character"),
        # what only the registry's own checks find (CEL cannot): they run on the operator's side too
        (registry(urls=["https://r.example.com:99999"]), "has an invalid port"),
        (registry(content=[{"prefix": "team/[abc"}]), "is not a valid glob"),
        (registry(content=[{"prefix": "**", "tags": {"regex": "v(1"}}]), "is not a valid regular expression"),
        (registry(content=[{"prefix": "team", "destination": "/", "stripPrefix": True}]), "without using glob"),
        (registry(onlySigned=True), "Extra inputs are not permitted"),
        (registry(preserveDigest=True), "Extra inputs are not permitted"),
        ({**registry(), "downloadDir": "/x"}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_sync_specs_say_why(sync: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace("[", r"\[").replace("*", r"\*")):
        ZotClusterSpec.model_validate({"sync": sync})


def test_the_crd_carries_the_sync_rules_at_the_list_items() -> None:
    spec = yaml.safe_load(crd_yaml())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    registries = spec["properties"]["sync"]["properties"]["registries"]
    assert registries["minItems"] == 1 and registries["items"]["required"] == ["urls"]
    rules = registries["items"]["x-kubernetes-validations"]
    assert rules == SPEC_RULES["sync.registries[]"]
    assert {r["message"] for r in rules} == {SYNCS_NOTHING, POLL_NEEDS_CONTENT, RETRIES_NEED_DELAY} | {
        r["message"] for r in rules if "maxRetryDelay" in r["message"]
    }
    urls = registries["items"]["properties"]["urls"]
    assert urls["minItems"] == 1 and urls["items"]["x-kubernetes-validations"][0]["message"] == SYNC_URL_MESSAGE
    content = registries["items"]["properties"]["content"]["items"]
    assert "stripPrefix" in content["x-kubernetes-validations"][0]["rule"]
    # Not offered: what the registry refuses (onlySigned, credential helpers) and preserveDigest (needs http.compat).
    offered = set(registries["items"]["properties"])
    assert not offered & {"onlySigned", "credentialHelper", "oauth2CredentialHelper", "preserveDigest", "certDir"}
    assert set(spec["properties"]["sync"]["properties"]) == {"registries", "credentialsSecret"}


def test_local_mode_writes_the_sync_files_from_the_manifests_secrets(tmp_path: Path) -> None:
    document = yaml.safe_load(PULL_THROUGH.read_text())
    document["spec"]["sync"] = SYNC
    secrets = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
        }
        for name, data in SECRETS.items()
    ]
    manifest_path = tmp_path / "zc.yaml"
    manifest_path.write_text(yaml.safe_dump_all([document, *secrets]))
    state = tmp_path / "state"
    layout = prepare(state, load_manifest(str(manifest_path)))
    loaded = load_config(layout.configs[0]).config.sync
    assert loaded is not None and loaded.credentials_file == str(state.absolute() / "sync" / "credentials.json")
    assert [r.cert_dir for r in loaded.registries] == [
        None,
        str(state.absolute() / "sync" / "certs" / "1"),
        str(state.absolute() / "sync" / "certs" / "2"),
    ]
    assert (state / "sync" / "certs" / "1" / "client.key").read_bytes() == b"client key"
    assert not (state / "sync" / "certs" / "2" / "unrelated").exists()
    # The ConfigMap's counterpart keeps the in-pod paths, and no value.
    shared = (state / "config.json").read_text()
    assert "/etc/zot/sync/credentials/credentials.json" in shared and PASSWORD not in shared


# One reconciliation against an in-memory API: what is missing or wrong in the Secrets marks the cluster
# Degraded, with a message that names the Secret and key (and quotes no value), and creates nothing.


def reconcile_once(kube: MemoryKube, events: list[tuple[str, str, str]] | None = None) -> dict[str, Any]:
    body = {
        "metadata": {"name": "demo", "namespace": "default", "uid": "u-1", "generation": 1},
        "spec": {"replicas": 3, "sync": SYNC},
    }
    status = reconcile(kube, body, lambda *e: (events if events is not None else []).append(e), connect=no_members)
    return as_patch(status.status)


def no_members(ca: KeyPair) -> MemberApi:
    raise AssertionError("a member was asked something")


def add_secret(kube: MemoryKube, name: str, data: dict[str, bytes], version: str = "1") -> None:
    kube.objects[("Secret", "default", name)] = {
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": version},
        "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
    }


def degraded(status: dict[str, Any]) -> tuple[str, str]:
    condition = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert status["phase"] == "Degraded" and condition["status"] == "True"
    return condition["reason"], condition["message"]


def test_missing_or_wrong_sync_secrets_degrade_the_cluster_and_nothing_is_created() -> None:
    kube = MemoryKube()
    events: list[tuple[str, str, str]] = []
    assert degraded(reconcile_once(kube, events)) == (
        "SyncCredentialsSecretMissing",
        "Secret upstream-creds with key credentials.json (spec.sync.credentialsSecret) does not exist",
    )
    assert ("Warning", "SyncCredentialsSecretMissing") in {(e[0], e[1]) for e in events}
    add_secret(kube, "upstream-creds", {"credentials.json": json.dumps({"r:5000": PASSWORD}).encode()})
    reason, message = degraded(reconcile_once(kube))
    assert reason == "SyncCredentialsInvalid" and PASSWORD not in message
    assert message.startswith("Secret upstream-creds key credentials.json (spec.sync.credentialsSecret) registry")
    add_secret(kube, "upstream-creds", SECRETS["upstream-creds"])
    assert degraded(reconcile_once(kube)) == (
        "SyncCertSecretMissing",
        "Secret mirror-tls (spec.sync.registries[1].certSecret) does not exist",
    )
    add_secret(kube, "mirror-tls", {"tls.crt": PEM})
    assert degraded(reconcile_once(kube)) == (
        "SyncCertSecretInvalid",
        "Secret mirror-tls (spec.sync.registries[1].certSecret) has tls.crt without tls.key: "
        "a client certificate needs both",
    )
    assert not [k for k in kube.objects if k[0] in ("StatefulSet", "ConfigMap")]
    add_secret(kube, "mirror-tls", SECRETS["mirror-tls"], version="8")
    add_secret(kube, "internal-ca", SECRETS["internal-ca"], version="9")
    status = reconcile_once(kube)
    assert status["phase"] == "Creating"
    template = kube.objects[("StatefulSet", "default", "demo")]["spec"]["template"]
    assert template["metadata"]["annotations"][SECRETS_ANNOTATION] == "internal-ca=9,mirror-tls=8,upstream-creds=1"
    items = {v["name"]: v["secret"]["items"] for v in template["spec"]["volumes"] if v["name"].startswith("sync-certs")}
    assert items["sync-certs-1"][1:] == [
        {"key": "tls.crt", "path": "client.cert"},
        {"key": "tls.key", "path": "client.key"},
    ]
    assert PASSWORD not in json.dumps(kube.objects[("ConfigMap", "default", "demo-config")])
