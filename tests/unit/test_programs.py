"""What a newcomer meets before anything runs: the programs' help, the packaging, the chart's generated files."""

from __future__ import annotations

import argparse
import json
import tomllib
from collections.abc import Iterator

import pytest
from zot_operator.chart_schema import spec_schema, values_schema
from zot_operator.cli import build_parser as operator_parser
from zot_operator.crd import crd_yaml
from zot_registry.cli import build_parser as registry_parser

from tests.support.paths import REPO_ROOT

CHART = REPO_ROOT / "charts" / "zot-operator"


def _options(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{path} {name}")
        else:
            yield path, action


@pytest.mark.parametrize("parser", [registry_parser(), operator_parser()], ids=["zot-registry", "zot-operator"])
def test_every_option_and_argument_says_what_it_is(parser: argparse.ArgumentParser) -> None:
    silent = [
        f"{path} {'/'.join(a.option_strings) or a.dest}" for path, a in _options(parser, parser.prog) if not a.help
    ]
    assert not silent, f"options without help: {silent}"


def test_every_package_folder_is_in_the_distribution() -> None:
    # A folder left out of `packages` is missing from the wheel, so from the image (it happened with
    # zot_registry.access); one that is importable but unlisted makes setuptools warn on every install.
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for package, folder in config["package-dir"].items():
        root = REPO_ROOT / folder
        for path in [root, *(p for p in root.rglob("*") if p.is_dir() and p.name != "__pycache__")]:
            if not path.name.endswith(".egg-info"):
                found.add(".".join([package, *path.relative_to(root).parts]))
    assert found == listed
    assert config["package-data"]["zot_operator.templates"] == ["*.j2"]


def test_the_charts_generated_files_are_current() -> None:
    stale = "is stale: run `make generate`"
    assert (CHART / "crds" / "zotclusters.yaml").read_text() == crd_yaml(), f"the chart's CRD copy {stale}"
    values = json.loads((CHART / "values.schema.json").read_text())
    assert values == values_schema(values), f"charts/zot-operator/values.schema.json {stale}"


def test_the_spec_schema_refuses_unknown_fields_where_the_crd_fixes_them() -> None:
    spec = spec_schema()
    assert spec["additionalProperties"] is False
    assert spec["properties"]["storage"]["properties"]["local"]["additionalProperties"] is False
    # Kubernetes' own free-form types stay open, as in the CRD.
    assert "additionalProperties" not in spec["properties"]["resources"]
    assert spec["properties"]["affinity"]["type"] == ["object", "null"]
