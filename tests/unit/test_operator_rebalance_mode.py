"""How a membership change is made: the spec's rule (Auto, InPlace, Restart) and what the models and the
CRD refuse."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from zot_operator.crd import crd_yaml
from zot_operator.models import DEFAULT_IMAGE, IMAGE_REPOSITORY, IN_PLACE_NEEDS_MANAGED_TLS, ZotClusterSpec
from zot_operator.rebalance_mode import image_repository, rebalance_mode

SECRET_TLS = {"mode": "secret", "secretName": "my-tls"}


def spec(**fields: Any) -> ZotClusterSpec:
    return ZotClusterSpec.model_validate(fields)


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        ("ghcr.io/zot-operator/zot-operator:0.1.0", "ghcr.io/zot-operator/zot-operator"),
        ("ghcr.io/zot-operator/zot-operator@sha256:" + "a" * 64, "ghcr.io/zot-operator/zot-operator"),
        ("ghcr.io/zot-operator/zot-operator:1.0@sha256:" + "a" * 64, "ghcr.io/zot-operator/zot-operator"),
        ("registry.local:5000/zot-operator", "registry.local:5000/zot-operator"),
        ("registry.local:5000/zot-operator:dev", "registry.local:5000/zot-operator"),
        ("zot", "zot"),
    ],
)
def test_an_image_reference_without_tag_and_digest(image: str, repository: str) -> None:
    assert image_repository(image) == repository


def test_auto_is_in_place_with_this_projects_image_of_any_tag_and_managed_tls() -> None:
    assert rebalance_mode(spec()).in_place
    assert rebalance_mode(spec(image=f"{IMAGE_REPOSITORY}:9.9.9")).in_place
    assert spec().image == DEFAULT_IMAGE


def test_auto_restarts_with_an_upstream_image_or_a_tls_secret_and_says_why() -> None:
    upstream = rebalance_mode(spec(image="ghcr.io/project-zot/zot-linux-amd64:v2.1.0"))
    assert not upstream.in_place and "project-zot" in upstream.why
    secret = rebalance_mode(spec(tls=SECRET_TLS))
    assert not secret.in_place and "no CA key" in secret.why
    restart = rebalance_mode(spec(rebalance={"mode": "Restart"}))
    assert not restart.in_place and "Restart" in restart.why


def test_in_place_by_hand_even_with_another_image() -> None:
    assert rebalance_mode(spec(image="zot:dev", rebalance={"mode": "InPlace"})).in_place


def test_in_place_with_a_tls_secret_is_refused_by_the_model_and_the_crd() -> None:
    with pytest.raises(ValidationError, match="no CA key"):
        spec(tls=SECRET_TLS, rebalance={"mode": "InPlace"})
    assert not rebalance_mode(spec(tls=SECRET_TLS, rebalance={"mode": "Auto"})).in_place
    schema = yaml.safe_load(crd_yaml())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert IN_PLACE_NEEDS_MANAGED_TLS in [r["message"] for r in schema["x-kubernetes-validations"]]


def test_keep_old_copies_for_is_a_go_duration() -> None:
    assert spec().rebalance.keep_old_copies_for == "0s"
    assert spec(rebalance={"keepOldCopiesFor": "1h30m"}).rebalance.keep_old_copies_for == "1h30m"
    with pytest.raises(ValidationError, match="duration"):
        spec(rebalance={"keepOldCopiesFor": "a while"})
    with pytest.raises(ValidationError):
        spec(rebalance={"mode": "Sometimes"})


def test_kubectl_get_shows_the_rebalance_step_and_progress() -> None:
    version = yaml.safe_load(crd_yaml())["spec"]["versions"][0]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert columns["Rebalance"]["jsonPath"] == ".status.rebalance.step"
    assert columns["Progress"]["jsonPath"] == ".status.rebalance.progress"
    assert columns["Epoch"]["priority"] == 1  # with -o wide
    assert list(columns)[-1] == "Age"
