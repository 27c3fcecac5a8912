"""The ASGI application for hypercorn workers; the config path arrives in ZOT_REGISTRY_CONFIG."""

from __future__ import annotations

import os

from . import hypercorn_patches
from .app import create_app
from .config import load_config
from .logs import setup_logging

hypercorn_patches.install()
_loaded = load_config(os.environ["ZOT_REGISTRY_CONFIG"])
setup_logging(_loaded.config.log.level, _loaded.config.log.output)
app = create_app(_loaded)
