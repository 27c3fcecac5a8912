"""`zot-operator`: crd, render, run, local up, local scale, and materialize-config (the members' init container)."""

from __future__ import annotations

import argparse
import secrets
import sys
import textwrap
from pathlib import Path

import yaml
from zot_registry.version import VERSION

from .crd import crd_yaml
from .local.manifest import Manifest, ManifestError, load_manifest
from .names import ClusterRef


class _BlockStrings(yaml.SafeDumper):
    """Multi-line strings (the zot config) as YAML literal blocks, readable in `render` output."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockStrings.add_representer(str, _str)


def _load(path: str) -> Manifest:
    """The manifest, or exit 2 with every problem of it (as `local up`: bad input is exit 2)."""
    try:
        return load_manifest(path)
    except ManifestError as err:
        _say_errors(err)
        raise SystemExit(2) from None


def _say_errors(err: ManifestError) -> None:
    from zot_registry.console import say

    for line in err.messages:
        say(f"error: {line}", error=True)


def _load_cluster(path: str) -> ClusterRef:
    return _load(path).ref


def _local(args: argparse.Namespace) -> int:
    from .local.scale import scale
    from .local.state import default_dir
    from .local.supervisor import Supervisor

    try:
        if args.local_command == "scale":
            return scale(args.replicas, Path(args.dir) if args.dir else None)
        overrides = {"replicas": args.replicas} if args.replicas is not None else {}
        manifest = load_manifest(args.filename, overrides)
        folder = Path(args.dir) if args.dir else default_dir(manifest.ref.name)
        return Supervisor(folder, manifest, args.workers).run()
    except ManifestError as err:
        _say_errors(err)
        return 2


def _hash_key(text: str) -> str:
    # The rule `zot-registry verify` applies to cluster.hashKey (and zot at start): exactly 16 bytes.
    size = len(text.encode("utf-8"))
    if size != 16:
        raise argparse.ArgumentTypeError(
            f"must be exactly 16 bytes, as zot's cluster.hashKey (`zot-registry verify` refuses any other), got {size}"
        )
    return text


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 254:
        raise argparse.ArgumentTypeError(f"{value} is out of range: local mode runs 1 to 254 members")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Every command and option, each with its help (a test walks them all)."""
    parser = argparse.ArgumentParser(
        prog="zot-operator",
        description="Kubernetes operator for ZotCluster. Exit status: 0 done, 1 failed while running, "
        "2 refused input (bad arguments, or a manifest the API server or the members would refuse).",
    )
    parser.add_argument("--version", action="version", version=f"zot-operator {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("crd", help="print the ZotCluster CustomResourceDefinition")
    render_cmd = commands.add_parser(
        "render",
        help="print what the operator would create for a ZotCluster, as YAML for `kubectl apply -f -`, "
        "without a cluster; exit 2 when the manifest would be refused",
    )
    render_cmd.add_argument(
        "-f", "--filename", required=True, help="ZotCluster manifest (`-` for standard input); Secrets may be in it"
    )
    render_cmd.add_argument(
        "--hash-key",
        type=_hash_key,
        default=None,
        help="the 16-byte hash key to render with; default: the manifest's hashKeySecret Secret, else a new "
        "one (rendered in the <name>-hashkey Secret, as the operator makes it)",
    )
    run_cmd = commands.add_parser("run", help="run the operator")
    run_cmd.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); all namespaces when none",
    )
    run_cmd.add_argument(
        "--peering",
        default=None,
        help="kopf peering name, so several replicas do not act at once (needs kopf's peering CRD)",
    )
    run_cmd.add_argument(
        "--priority",
        type=int,
        default=None,
        help="kopf peering priority: the highest acts, the others stand by (default: random, so that "
        "replicas started alike never tie; kopf freezes every operator of a tie)",
    )
    run_cmd.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="liveness endpoint URL")
    materialize_cmd = commands.add_parser(
        "materialize-config",
        help="write a config with values from environment variables (the members' init "
        "container: Secrets' values never go into the ConfigMap)",
    )
    materialize_cmd.add_argument("source", help="the config without the values (the ConfigMap's)")
    materialize_cmd.add_argument("target", help="where to write the complete config (mode 0600)")
    materialize_cmd.add_argument(
        "--from-env",
        action="append",
        default=[],
        metavar="CONFIG.PATH=VARIABLE",
        help="set the config key at CONFIG.PATH to the value of VARIABLE (repeatable)",
    )
    local_cmd = commands.add_parser("local", help="run a ZotCluster as local processes (no Kubernetes)")
    local_commands = local_cmd.add_subparsers(dest="local_command", metavar="{up,scale}", required=True)
    up_cmd = local_commands.add_parser(
        "up",
        help="run the members on 127.0.0.1, 127.0.0.2, ... with the config, hash key and TLS the operator "
        "would render; Ctrl-C stops them",
    )
    up_cmd.add_argument(
        "-f",
        "--filename",
        required=True,
        help="ZotCluster manifest (`-` for standard input); Secrets in the same file stand in for the cluster's",
    )
    up_cmd.add_argument("--dir", default=None, help="state folder (default .zot-local/<name>), kept between runs")
    up_cmd.add_argument("--replicas", type=_positive, default=None, help="override spec.replicas")
    up_cmd.add_argument(
        "--workers", type=int, choices=range(1, 9), default=1, metavar="1..8", help="hypercorn workers per member"
    )
    scale_cmd = local_commands.add_parser(
        "scale",
        help="resize the running `local up` as the operator does: in place, the repositories that change owner "
        "copied, no member restarted (rebalance mode Restart: every member restarts)",
    )
    scale_cmd.add_argument("replicas", type=_positive, help="new number of members")
    scale_cmd.add_argument(
        "--dir", default=None, help="state folder of the cluster (default: the one running under .zot-local/)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "local":
        return _local(args)
    if args.command == "materialize-config":
        from .materialize import main as materialize

        return materialize(args.source, args.target, args.from_env)
    if args.command == "run":
        from .preflight import check_api

        problem = check_api()
        if problem:
            print(problem, file=sys.stderr)
            return 1
        import kopf

        from . import handlers  # noqa: F401  (registers the handlers)

        # INFO to stderr, as `kopf run` does: what the operator did, and which replica stands by.
        kopf.configure(verbose=False)
        priority = args.priority if args.priority is not None else secrets.randbelow(1 << 30) + 1
        kopf.run(
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            priority=priority,
            peering_name=args.peering,
            standalone=args.peering is None,
            liveness_endpoint=args.liveness,
        )
        return 0
    if args.command == "crd":
        sys.stdout.write(crd_yaml())
        return 0
    from .standalone import standalone

    output = standalone(_load(args.filename), args.hash_key)
    # The header as YAML comments: the output stays one stream for `kubectl apply -f -`.
    for line in output.header:
        sys.stdout.write("".join(f"# {part}\n" for part in textwrap.wrap(line, 110, subsequent_indent="  ")))
    sys.stdout.write(yaml.dump_all(output.objects, Dumper=_BlockStrings, sort_keys=False, width=120))
    return 0


if __name__ == "__main__":
    sys.exit(main())
