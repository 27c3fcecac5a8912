"""Rendering a ZotCluster into its children: pure functions, no API server."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from zot_operator.cli import _load_cluster
from zot_operator.crd import crd_yaml
from zot_operator.materialize import fill
from zot_operator.models import DEFAULT_IMAGE, CacheSpec, DynamoDBCache, RebalanceSpec, RedisCache, ZotClusterSpec
from zot_operator.names import ClusterRef
from zot_operator.render import (
    address_ordinal,
    certificate_hosts,
    checksum,
    member_address,
    member_addresses,
    member_host,
    render,
)
from zot_operator.statefulset import CHECKSUM_ANNOTATION, MEMBERS_ANNOTATION, RUN_AS, SECRETS_ANNOTATION
from zot_registry.config import parse_config

from tests.support.paths import REPO_ROOT, ZOT_EXAMPLES

EXAMPLE = REPO_ROOT / "examples" / "zotcluster.yaml"


def by_kind(objects: list[dict], kind: str) -> dict:
    return next(o for o in objects if o["kind"] == kind)


def test_crd_file_is_generated_from_the_models() -> None:
    committed = (REPO_ROOT / "crds" / "zotclusters.yaml").read_text()
    assert committed == crd_yaml(), "crds/zotclusters.yaml is stale: run `zot-operator crd > crds/zotclusters.yaml`"


def test_crd_shape() -> None:
    crd = yaml.safe_load(crd_yaml())
    version = crd["spec"]["versions"][0]
    assert crd["metadata"]["name"] == "zotclusters.zot-operator.io"
    assert crd["spec"]["names"]["shortNames"] == ["zc"]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["replicas"]["minimum"] == 1
    assert spec["properties"]["storage"]["properties"]["mode"]["enum"] == ["local", "s3"]
    rules = " ".join(r["rule"] for r in spec["x-kubernetes-validations"])
    assert "hashKeySecret" in rules and "excludedMembers" in rules

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            assert "$ref" not in node and "anyOf" not in node, path
            for key, value in node.items():
                walk(value, f"{path}.{key}")
            if node.get("type") == "object" and "properties" in node:
                for name, prop in node["properties"].items():
                    assert "description" in prop, f"{path}.{name} has no description"

    walk(spec, "spec")


def test_example_renders_identical_member_lists_and_a_config_zot_registry_accepts() -> None:
    ref = _load_cluster(str(EXAMPLE))
    rendered = render(ref, "0123456789abcdef")
    assert rendered.members == [f"demo-{i}.demo-members.default.svc.cluster.local:5000" for i in range(3)]
    config = json.loads(rendered.config_text)
    assert config["cluster"]["members"] == rendered.members
    loaded = parse_config(rendered.config_text, "rendered config.json")
    assert loaded.config.cluster is not None and loaded.config.cluster.hash_key_bytes == b"0123456789abcdef"
    assert loaded.config.http.tls is not None and loaded.config.http.auth is not None
    configmap = by_kind(rendered.objects, "ConfigMap")
    assert configmap["data"]["config.json"] == rendered.config_text
    sts = by_kind(rendered.objects, "StatefulSet")
    template = sts["spec"]["template"]
    assert template["metadata"]["annotations"][CHECKSUM_ANNOTATION] == rendered.config_checksum
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["updateStrategy"] == {"type": "OnDelete"}
    container = template["spec"]["containers"][0]
    assert container["args"] == ["serve", "/etc/zot/config.json"]
    assert {container[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe", "startupProbe")} == {
        "/livez",
        "/readyz",
        "/startupz",
    }
    assert all(container[p]["httpGet"]["scheme"] == "HTTPS" for p in ("livenessProbe", "readinessProbe"))
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["runAsNonRoot"] is True
    headless = next(o for o in rendered.objects if o["metadata"]["name"] == "demo-members")
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True


def test_excluded_and_failed_members_leave_the_list() -> None:
    ref = _load_cluster(str(EXAMPLE))
    spec = ref.spec.model_copy(update={"replicas": 5, "excluded_members": [1]})
    ref5 = ClusterRef("demo", "default", "", spec)
    assert [m.split(".")[0] for m in member_addresses(ref5, failed=[3])] == ["demo-0", "demo-2", "demo-4"]
    # the StatefulSet keeps every replica: an excluded pod keeps running, outside the list
    assert by_kind(render(ref5, "k" * 16).objects, "StatefulSet")["spec"]["replicas"] == 5


def in_place_and_restart() -> tuple[ClusterRef, ClusterRef]:
    ref = _load_cluster(str(EXAMPLE))
    restart = ref.spec.model_copy(update={"rebalance": RebalanceSpec(mode="Restart")})
    return ref, ClusterRef("demo", "default", "", restart)


def test_in_place_a_new_member_list_changes_the_config_but_no_pod_template() -> None:
    ref, _ = in_place_and_restart()
    three = render(ref, "k" * 16)
    four = render(ClusterRef("demo", "default", "", ref.spec.model_copy(update={"replicas": 4})), "k" * 16)
    assert three.config_text != four.config_text
    assert three.config_checksum == four.config_checksum
    template = by_kind(three.objects, "StatefulSet")["spec"]["template"]
    assert template == by_kind(four.objects, "StatefulSet")["spec"]["template"]
    assert MEMBERS_ANNOTATION not in template["metadata"]["annotations"]  # on the pods, by the operator
    # any other change of the config still rolls the members
    debug = ref.spec.model_copy(update={"log_level": "debug"})
    assert render(ClusterRef("demo", "default", "", debug), "k" * 16).config_checksum != three.config_checksum


def test_with_restarts_the_template_carries_the_list_and_the_whole_config_checksum() -> None:
    _, ref = in_place_and_restart()
    rendered = render(ref, "k" * 16)
    annotations = by_kind(rendered.objects, "StatefulSet")["spec"]["template"]["metadata"]["annotations"]
    assert annotations[CHECKSUM_ANNOTATION] == checksum(rendered.config_text)
    assert annotations[MEMBERS_ANNOTATION] == ",".join(rendered.members)


def test_while_a_change_is_made_in_place_the_config_keeps_the_old_list_and_the_statefulset_both() -> None:
    ref, _ = in_place_and_restart()
    old = member_addresses(ref)
    rendered = render(
        ClusterRef("demo", "default", "", ref.spec.model_copy(update={"replicas": 2})),
        "k" * 16,
        members=old,
        replicas=3,
    )
    assert rendered.members == old and json.loads(rendered.config_text)["cluster"]["members"] == old
    assert by_kind(rendered.objects, "StatefulSet")["spec"]["replicas"] == 3


def test_a_member_address_names_its_ordinal() -> None:
    ref, _ = in_place_and_restart()
    assert [address_ordinal(ref, a) for a in member_addresses(ref)] == [0, 1, 2]
    assert address_ordinal(ref, member_address(ref, 12)) == 12
    other = ClusterRef("demo-x", "default", "", ref.spec)
    assert address_ordinal(ref, member_address(other, 1)) is None
    assert address_ordinal(ref, "demo-1.elsewhere:5000") is None


def test_certificate_covers_every_member_at_any_size_and_both_services() -> None:
    ref = _load_cluster(str(EXAMPLE))
    hosts = certificate_hosts(ref)
    for ordinal in (0, 7, 99):
        assert any(fnmatch.fnmatch(member_host(ref, ordinal), pattern) for pattern in hosts)
    assert "demo.default.svc" in hosts and "demo-members.default.svc.cluster.local" in hosts


def test_render_command(capsys: object, tmp_path: Path) -> None:
    from zot_operator.cli import main

    assert main(["render", "-f", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    kinds = [d["kind"] for d in yaml.safe_load_all(out)]
    # The Secrets the operator makes once (hash key, CA, server certificate) first: the pods mount them.
    assert kinds == [
        "Secret",
        "Secret",
        "Secret",
        "ConfigMap",
        "Service",
        "Service",
        "StatefulSet",
        "PodDisruptionBudget",
    ]


S3_EXAMPLE = REPO_ROOT / "examples" / "zotcluster-s3.yaml"


def test_s3_cluster_renders_zots_driver_stanzas_and_keeps_credentials_out_of_the_configmap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ref = _load_cluster(str(S3_EXAMPLE))
    rendered = render(ref, "0123456789abcdef")
    config = json.loads(rendered.config_text)
    assert config["storage"]["remoteCache"] is True
    assert config["storage"]["storageDriver"] == {
        "name": "s3",
        "rootdirectory": "/zot",
        "region": "us-east-1",
        "bucket": "zot-storage",
        "regionendpoint": "s3.example.internal:9000",
        "secure": True,
        "skipverify": False,
    }
    # The redis URL carries a password: it comes from a Secret, so the config has none.
    assert config["storage"]["cacheDriver"] == {"name": "redis", "keyprefix": "zot"}
    sts = by_kind(rendered.objects, "StatefulSet")
    container = sts["spec"]["template"]["spec"]["containers"][0]
    # What zot takes from its environment (the AWS SDK's variables) comes as environment variables.
    assert {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]} == {
        "AWS_ACCESS_KEY_ID": {"name": "registry-s3", "key": "accessKey"},
        "AWS_SECRET_ACCESS_KEY": {"name": "registry-s3", "key": "secretKey"},
    }
    # Shared storage: no volume claims, nothing to keep per member.
    assert "volumeClaimTemplates" not in sts["spec"]
    assert "secret" not in rendered.config_text.lower() and "password" not in rendered.config_text.lower()
    # The registry takes what the init container writes (the ConfigMap's config plus the URL from the
    # Secret), drivers included, without "not supported" warnings and with no environment variable.
    monkeypatch.delenv("ZOT_REDIS_URL", raising=False)
    complete = fill(config, {("storage", "cacheDriver", "url"): "redis://:pw@redis:6379"})
    loaded = parse_config(json.dumps(complete), "materialized config.json")
    assert loaded.config.storage.storage_driver == config["storage"]["storageDriver"]
    assert loaded.config.storage.cache_driver == {"name": "redis", "keyprefix": "zot", "url": "redis://:pw@redis:6379"}
    assert [w for w in loaded.warnings if "not supported" in w] == []


def test_a_redis_url_from_a_secret_goes_into_the_config_through_an_in_memory_volume() -> None:
    """zot reads the redis URL from storage.cacheDriver.url only: the ConfigMap has no URL, an init
    container writes the complete config into an in-memory emptyDir that the member reads."""
    ref = _load_cluster(str(S3_EXAMPLE))
    rendered = render(ref, "0123456789abcdef", secret_versions={"registry-redis": "41", "registry-s3": "7"})
    assert (
        "url" not in json.loads(by_kind(rendered.objects, "ConfigMap")["data"]["config.json"])["storage"]["cacheDriver"]
    )
    template = by_kind(rendered.objects, "StatefulSet")["spec"]["template"]
    pod = template["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config-template"]["configMap"] == {"name": "registry-config"}
    assert volumes["config"]["emptyDir"]["medium"] == "Memory"
    [init] = pod["initContainers"]
    assert init["image"] == DEFAULT_IMAGE == ref.spec.init_image
    assert init["command"] == ["zot-operator", "materialize-config"]
    assert init["args"] == [
        "/etc/zot/template/config.json",
        "/etc/zot/runtime/config.json",
        "--from-env=storage.cacheDriver.url=ZOT_REDIS_URL",
    ]
    assert init["env"] == [
        {"name": "ZOT_REDIS_URL", "valueFrom": {"secretKeyRef": {"name": "registry-redis", "key": "url"}}}
    ]
    assert {m["name"]: (m["mountPath"], m.get("readOnly", False)) for m in init["volumeMounts"]} == {
        "config-template": ("/etc/zot/template", True),
        "config": ("/etc/zot/runtime", False),
        "tmp": ("/tmp", False),
    }
    assert init["securityContext"]["runAsUser"] == RUN_AS and init["securityContext"]["readOnlyRootFilesystem"]
    [member] = pod["containers"]
    assert member["args"] == ["serve", "/etc/zot/runtime/config.json"]
    assert {"name": "config", "mountPath": "/etc/zot/runtime", "readOnly": True} in member["volumeMounts"]
    assert "config-template" not in {m["name"] for m in member["volumeMounts"]}
    assert "ZOT_REDIS_URL" not in {e["name"] for e in member["env"]}
    # A new value of a Secret the members read at start changes the template (they roll); so does
    # another reference, and the annotation holds versions only.
    assert template["metadata"]["annotations"][SECRETS_ANNOTATION] == "registry-redis=41,registry-s3=7"
    again = render(ref, "0123456789abcdef", secret_versions={"registry-redis": "42", "registry-s3": "7"})
    assert by_kind(again.objects, "StatefulSet")["spec"]["template"] != template
    other = ref.spec.model_copy(deep=True)
    assert other.cache is not None and other.cache.redis is not None and other.cache.redis.url_secret is not None
    other.cache.redis.url_secret.key = "other-url"
    moved = render(
        ClusterRef("registry", "default", "", other),
        "0123456789abcdef",
        secret_versions={"registry-redis": "41", "registry-s3": "7"},
    )
    assert by_kind(moved.objects, "StatefulSet")["spec"]["template"] != template
    # A URL given inline needs no init container, nor does the example with local storage.
    inline = ref.spec.model_copy(update={"cache": CacheSpec(redis=RedisCache(url="redis://redis:6379/0"))})
    plain = by_kind(render(ClusterRef("registry", "default", "", inline), "k" * 16).objects, "StatefulSet")
    assert "initContainers" not in plain["spec"]["template"]["spec"]
    assert plain["spec"]["template"]["spec"]["containers"][0]["args"] == ["serve", "/etc/zot/config.json"]
    example = by_kind(render(_load_cluster(str(EXAMPLE)), "k" * 16).objects, "StatefulSet")
    assert "initContainers" not in example["spec"]["template"]["spec"]


def test_dynamodb_cache_renders_zots_table_names() -> None:
    ref = _load_cluster(str(S3_EXAMPLE))
    spec = ref.spec.model_copy(update={"cache": CacheSpec(dynamodb=DynamoDBCache(endpoint="http://dynamo:8000"))})
    config = json.loads(render(ClusterRef("registry", "default", "", spec), "0123456789abcdef").config_text)
    published = json.loads((ZOT_EXAMPLES / "cluster-s3-dynamodb.json").read_text())["storage"]["cacheDriver"]
    assert config["storage"]["cacheDriver"] == {**published, "endpoint": "http://dynamo:8000"}
    loaded = parse_config(json.dumps(config), "rendered config.json")
    assert [w for w in loaded.warnings if "not supported" in w] == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"storage": {"mode": "s3"}}, "storage mode s3 needs storage.s3"),
        ({"storage": {"mode": "s3", "s3": {"bucket": "b"}}}, "needs a shared cache"),
        ({"cache": {"redis": {"url": "redis://r:6379"}}}, "cache is only used with storage mode s3"),
        ({"storage": {"mode": "s3", "s3": {"bucket": "b"}}, "cache": {}}, "exactly one of redis or dynamodb"),
        (
            {"storage": {"mode": "s3", "s3": {"bucket": "b"}}, "cache": {"redis": {"url": "redis://u:pw@r:6379"}}},
            "String should match pattern",
        ),
        (
            {"storage": {"mode": "s3", "s3": {"bucket": "b"}}, "cache": {"redis": {"keyPrefix": "z"}}},
            "exactly one of url or urlSecret",
        ),
    ],
)
def test_invalid_shared_storage_specs_say_why(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ZotClusterSpec.model_validate(spec)


def test_reference_doc_is_generated_from_the_models() -> None:
    from zot_operator.reference import reference

    committed = (REPO_ROOT / "docs" / "zotcluster-reference.md").read_text()
    assert committed == reference(), (
        "docs/zotcluster-reference.md is stale: run `python -m zot_operator.reference > docs/zotcluster-reference.md`"
    )
