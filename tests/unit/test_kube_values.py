"""Kubernetes' own rules for the values a ZotCluster passes through: quantities, resources, tolerations."""

from __future__ import annotations

from decimal import Decimal

import pytest
from zot_operator.kube_values import parse_quantity, qualified_name_problem, resources_problems, tolerations_problems


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("20Gi", Decimal(20 * 2**30)),
        ("500M", Decimal(500 * 10**6)),
        ("250m", Decimal("0.25")),
        ("1.5", Decimal("1.5")),
        (".5", Decimal("0.5")),
        ("1e3", Decimal(1000)),
        ("2E", Decimal(2 * 10**18)),  # E alone is exa, as in apimachinery
        (2, Decimal(2)),  # YAML numbers, as the API server takes them for int-or-string
        (0.5, Decimal("0.5")),
    ],
)
def test_quantities_the_api_server_reads(text: object, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["20GB", "1K", "1Gi ", " 1Gi", "0x10", "1.2.3", "Gi", "", True, None, [1]])
def test_what_is_no_quantity(text: object) -> None:
    assert parse_quantity(text) is None


def test_extended_resources_and_hugepages_are_container_resources() -> None:
    resources = {"limits": {"example.com/gpu": 1, "hugepages-2Mi": "64Mi", "memory": "1Gi"}, "requests": {"cpu": 0.5}}
    assert resources_problems(resources) == []
    assert resources_problems({"limits": {"a/b/c": 1}})[0][0] == ("limits", "a/b/c")


def test_a_toleration_of_every_taint_and_qualified_keys() -> None:
    assert (
        tolerations_problems(
            [
                {"operator": "Exists"},
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 30,
                },
            ]
        )
        == []
    )
    assert qualified_name_problem("example.com/dedicated") is None
    assert qualified_name_problem("Example.com/x") is not None
    assert qualified_name_problem("-x") is not None
