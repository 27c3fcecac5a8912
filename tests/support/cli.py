"""`zot-registry` run as a process by the CLI tests: the command, config files, and what it prints."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.checks import assert_no_traceback
from tests.support.ports import free_port
from tests.support.registry import registry_config


def cli(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "zot_registry.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert_no_traceback(result.stdout + result.stderr, f"zot-registry {' '.join(args)}")
    return result


def write_config(folder: Path, config: dict[str, Any], name: str = "config.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(config, indent=2))
    return path


def base_config(tmp_path: Path, port: int | None = None, **http: Any) -> dict[str, Any]:
    return registry_config(tmp_path / "root", port or free_port(), **http)


def nothing_listens(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return True
    return False


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]
