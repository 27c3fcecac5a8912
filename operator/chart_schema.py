"""The Helm chart's generated parts: its copies of the CRDs, and the schema of `zotCluster.spec` in
values.schema.json, both from the CRD that the models generate (`crd.py`).

Why copies and not links: Helm warns about every symlink in a chart on every command (`found symbolic
link in path`), and a packaged chart holds files anyway. Why a schema of the spec: the chart may create
a ZotCluster from its values, and Helm sends it without the API server's strict field validation, so a
misspelled field would be dropped in silence; values.schema.json refuses it before anything is created.
The CRD's OpenAPI is turned into the JSON Schema Helm reads: `nullable` becomes a null type, objects with
fixed properties refuse others (`additionalProperties: false`, which a structural CRD schema may not
say: the API server prunes instead), and what JSON Schema has no use for (CEL rules, descriptions,
defaults, `x-kubernetes-*`) is left out.

`python -m zot_operator.chart_schema` (part of `make generate`) writes them; a test fails when they are stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from .crd import crd_yaml

_DROPPED = ("description", "default", "x-kubernetes-validations", "x-kubernetes-preserve-unknown-fields", "nullable")


def _json_schema(node: dict[str, Any]) -> dict[str, Any]:
    out = {key: value for key, value in node.items() if key not in _DROPPED}
    if "properties" in node:
        out["properties"] = {name: _json_schema(child) for name, child in node["properties"].items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(node.get("items"), dict):
        out["items"] = _json_schema(node["items"])
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = _json_schema(node["additionalProperties"])
    if node.get("nullable") and "type" in node:
        out["type"] = [node["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def spec_schema() -> dict[str, Any]:
    """The JSON Schema of a ZotCluster's spec, from the CRD."""
    crd = yaml.safe_load(crd_yaml())
    return _json_schema(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"])


def values_schema(current: dict[str, Any]) -> dict[str, Any]:
    """The chart's values schema `current` with `zotCluster.spec` generated (the rest is written by hand)."""
    schema = json.loads(json.dumps(current))
    schema["properties"]["zotCluster"]["properties"]["spec"] = spec_schema()
    return schema


def schema_text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2) + "\n"


def write(chart: Path, crds: Path) -> None:
    """Write the chart's CRD copies and its values schema from the models."""
    (chart / "crds" / "zotclusters.yaml").write_text(crd_yaml())
    (chart / "crds" / "kopf-peering.yaml").write_text((crds / "kopf-peering.yaml").read_text())
    values = chart / "values.schema.json"
    values.write_text(schema_text(values_schema(json.loads(values.read_text()))))


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path()
    write(root / "charts" / "zot-operator", root / "crds")
