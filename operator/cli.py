"""`zot-operator`: crd, render, run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml
from pydantic import ValidationError

from .crd import crd_yaml
from .models import ZotClusterSpec
from .render import ClusterRef, render


class _BlockStrings(yaml.SafeDumper):
    """Multi-line strings (the zot config) as YAML literal blocks, readable in `render` output."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockStrings.add_representer(str, _str)


def _load_cluster(path: str) -> ClusterRef:
    try:
        document = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise SystemExit(f"error: {path}: {err}") from None
    if not isinstance(document, dict) or document.get("kind") != "ZotCluster":
        raise SystemExit(f"error: {path}: not a ZotCluster manifest")
    meta = document.get("metadata") or {}
    try:
        spec = ZotClusterSpec.model_validate(document.get("spec") or {})
    except ValidationError as err:
        problems = "; ".join(f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        raise SystemExit(f"error: {path}: {problems}") from None
    return ClusterRef(meta.get("name", "zot"), meta.get("namespace", "default"), "", spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="zot-operator", description="Kubernetes operator for ZotCluster")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("crd", help="print the ZotCluster CustomResourceDefinition")
    render_cmd = commands.add_parser("render", help="print the children of a ZotCluster without a cluster")
    render_cmd.add_argument("-f", "--filename", required=True)
    render_cmd.add_argument("--hash-key", default="0123456789abcdef",
                            help="hash key to render with (the operator generates one per cluster)")
    run_cmd = commands.add_parser("run", help="run the operator")
    run_cmd.add_argument("--namespace", action="append", default=[],
                         help="watch only this namespace (repeatable); all namespaces when none")
    run_cmd.add_argument("--peering", default=None,
                         help="kopf peering name, so several replicas do not act at once (needs kopf's peering CRD)")
    run_cmd.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="liveness endpoint URL")
    args = parser.parse_args(argv)
    if args.command == "run":
        import kopf

        from . import handlers  # noqa: F401  (registers the handlers)

        kopf.run(clusterwide=not args.namespace, namespaces=args.namespace,
                 peering_name=args.peering, standalone=args.peering is None, liveness_endpoint=args.liveness)
        return 0
    if args.command == "crd":
        sys.stdout.write(crd_yaml())
        return 0
    ref = _load_cluster(args.filename)
    rendered = render(ref, args.hash_key)
    sys.stdout.write(yaml.dump_all(rendered.objects, Dumper=_BlockStrings, sort_keys=False, width=120))
    return 0


if __name__ == "__main__":
    sys.exit(main())
