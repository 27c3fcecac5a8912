"""`zot-registry serve CONFIG` and `zot-registry verify CONFIG`, zot's own command names."""

from __future__ import annotations

import argparse
import sys

from .config import ConfigError, load_config, verify_main
from .logs import setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="zot-registry", description="zot-compatible OCI registry")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="serve the registry described by a zot config file")
    serve_cmd.add_argument("config")
    serve_cmd.add_argument("--workers", type=int, default=None,
                           help="hypercorn worker processes (default: CPU count, at most 4)")
    verify_cmd = commands.add_parser("verify", help="check a zot config file and exit")
    verify_cmd.add_argument("config")
    args = parser.parse_args(argv)

    if args.command == "verify":
        return verify_main(args.config)
    try:
        loaded = load_config(args.config)
    except ConfigError as err:
        for message in err.messages:
            print(f"error: {message}", file=sys.stderr)
        return 1
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    setup_logging(loaded.config.log.level, loaded.config.log.output)
    from .server import serve

    return serve(loaded, args.workers)


if __name__ == "__main__":
    sys.exit(main())
