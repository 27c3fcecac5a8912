"""Printing that never stops a supervisor: what local mode says is for a terminal that may be gone.

A closed terminal makes every write fail (EIO), a closed pipe too (EPIPE). A supervisor (local
mode's, `zot-registry local-cluster`) must still stop its members then, and record that, so each
line goes through `say`, which drops what cannot be written and sends the rest of that stream to
/dev/null (so the interpreter's last flush at exit does not fail again either).
"""

from __future__ import annotations

import os
import sys
from typing import TextIO


def _silence(stream: TextIO) -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError):  # no descriptor any more (closed, or not a file): replace the object
        replacement = open(os.devnull, "w")  # noqa: SIM115 (lives as long as the process)
        if stream is sys.stdout:
            sys.stdout = replacement
        elif stream is sys.stderr:
            sys.stderr = replacement


def say(message: str, error: bool = False) -> bool:
    """Print one line to stdout (stderr with `error`) and flush; False, never an exception, when the
    line could not be written."""
    stream = sys.stderr if error else sys.stdout
    if stream is None:
        return False
    try:
        print(message, file=stream, flush=True)
    except (OSError, ValueError):
        _silence(stream)
        return False
    return True
