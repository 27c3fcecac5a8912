"""spec.routing: zot's rule by default; Rendezvous only with this project's image, immutable, and written
into every member's config as cluster.routing."""

from __future__ import annotations

import json

import pytest
import yaml
from pydantic import ValidationError
from zot_operator.crd import crd_yaml
from zot_operator.models import ROUTING_NEEDS_OUR_IMAGE, ZotClusterSpec
from zot_operator.names import ClusterRef
from zot_operator.plans import moved_share
from zot_operator.render import render
from zot_registry.config import parse_config


def _config(spec: ZotClusterSpec) -> dict[str, object]:
    rendered = render(ClusterRef("demo", "default", "", spec), "k" * 16)
    document: dict[str, object] = json.loads(rendered.config_text)
    return document


def test_zot_routing_writes_nothing_zot_does_not_know() -> None:
    cluster = _config(ZotClusterSpec())["cluster"]
    assert isinstance(cluster, dict) and "routing" not in cluster


def test_rendezvous_is_written_for_the_members_and_read_by_them() -> None:
    config = _config(ZotClusterSpec.model_validate({"routing": "Rendezvous"}))
    assert config["cluster"]["routing"] == "rendezvous"  # type: ignore[index]
    assert parse_config(json.dumps(config)).config.cluster.routing == "rendezvous"  # type: ignore[union-attr]


def test_rendezvous_needs_this_projects_image() -> None:
    with pytest.raises(ValidationError) as refused:
        ZotClusterSpec.model_validate({"routing": "Rendezvous", "image": "ghcr.io/project-zot/zot-linux-amd64:v2.1.5"})
    assert ROUTING_NEEDS_OUR_IMAGE in str(refused.value)


def test_routing_is_immutable_in_the_crd() -> None:
    spec = yaml.safe_load(crd_yaml())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = [v["rule"] for v in spec["x-kubernetes-validations"]]
    assert any("oldSelf.routing" in rule for rule in rules)


def test_the_moved_share_follows_the_rule() -> None:
    three, four = ["a:1", "b:1", "c:1"], ["a:1", "b:1", "c:1", "d:1"]
    assert moved_share(three, four) == "about 75% of repositories moved owner (3 -> 4 members)"
    share = int(moved_share(three, four, "Rendezvous").split("%")[0].removeprefix("about "))
    assert 20 <= share <= 30
