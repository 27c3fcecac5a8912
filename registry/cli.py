"""`zot-registry serve CONFIG` and `zot-registry verify CONFIG`, zot's own command names."""

from __future__ import annotations

import argparse
import sys

from .logs import setup_logging
from .version import VERSION


def _workers(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a number of processes, at least 1; got {text!r}")
    return int(text)


def verify_main(path: str) -> int:
    """`zot-registry verify CONFIG`: report on a config file and the files it names (the checks
    `serve` runs before it starts); 0 when it can be used, 1 when not."""
    from .preflight import load_and_check  # as for serve: --version does not load pydantic and cryptography

    if load_and_check(path) is None:
        return 1
    print(f"{path}: ok")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # Ctrl-C before serving started (serving handles its own signals): a quiet stop.
        return 130


def build_parser() -> argparse.ArgumentParser:
    """Every command and option, each with its help (a test walks them all)."""
    parser = argparse.ArgumentParser(prog="zot-registry", description="zot-compatible OCI registry")
    parser.add_argument("--version", action="version", version=f"zot-registry {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="serve the registry described by a zot config file")
    serve_cmd.add_argument("config", help="zot's JSON config file (checked first, as `verify` does)")
    serve_cmd.add_argument(
        "--workers", type=_workers, default=None, help="hypercorn worker processes (default: CPU count, at most 4)"
    )
    verify_cmd = commands.add_parser("verify", help="check a zot config file and exit: 0 when usable, 1 when not")
    verify_cmd.add_argument("config", help="zot's JSON config file")
    local_cmd = commands.add_parser(
        "local-cluster",
        help="run an N-member cluster on 127.0.0.1, 127.0.0.2, ... (zot's scale-out, no operator); Ctrl-C stops it",
    )
    local_cmd.add_argument(
        "--members", type=int, default=3, help="number of members, 1 to 254, one loopback address each (default 3)"
    )
    local_cmd.add_argument("--port", type=int, default=5000, help="the port every member listens on (default 5000)")
    local_cmd.add_argument("--dir", default="var/local-cluster", help="configs, certificates and storage")
    local_cmd.add_argument("--no-tls", action="store_true", help="plain HTTP between members and clients")
    local_cmd.add_argument("--htpasswd", default=None, help="htpasswd file for Basic auth on every member")
    local_cmd.add_argument("--workers", type=_workers, default=1, help="hypercorn workers per member")
    return parser


def _main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    if args.command == "local-cluster":
        from pathlib import Path

        from .local.cluster import run_local_cluster

        if not 1 <= args.members <= 254:
            parser.error("--members must be between 1 and 254")
        htpasswd = Path(args.htpasswd) if args.htpasswd else None
        return run_local_cluster(Path(args.dir), args.members, args.port, not args.no_tls, htpasswd, args.workers)

    if args.command == "verify":
        return verify_main(args.config)
    from .preflight import load_and_check

    # The same checks as `verify`, before anything starts: a missing file is one line, not a
    # traceback per worker.
    loaded = load_and_check(args.config)
    if loaded is None:
        return 1
    setup_logging(loaded.config.log.level, loaded.config.log.output)
    from .server import serve

    return serve(loaded, args.workers)


if __name__ == "__main__":
    sys.exit(main())
