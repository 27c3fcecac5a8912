"""`python -m bench.ceiling_server CONFIG --workers N`: hypercorn as `zot-registry serve CONFIG` runs
it (server.hypercorn_config: the same bind, TLS, timeouts, uvloop workers forked by the same
supervisor, hypercorn_patches in each worker), serving `bench.ceiling_app` instead of the registry.
bench.servers starts it as the "ceiling" kind."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from zot_registry.config import load_config
from zot_registry.server import hypercorn_config
from zot_registry.supervisor import Supervisor, bind_sockets

APP = "bench.ceiling_app:app"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling_server", description=__doc__)
    parser.add_argument("config")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    # hypercorn's "Running on" line per worker at info: bench.servers waits for one per worker.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    loaded = load_config(args.config)
    root = loaded.config.storage.root_directory
    os.makedirs(root, exist_ok=True)
    os.environ["ZOT_BENCH_CEILING_DIR"] = root  # where the app writes what it receives (before the fork)
    config = hypercorn_config(loaded, args.workers)
    config.application_path = APP
    sockets = bind_sockets(config)
    return Supervisor(config, sockets, args.workers, preloaded=("bench.ceiling_app",)).run()


if __name__ == "__main__":
    sys.exit(main())
