"""glibc malloc tuned for a registry's buffers, in each worker process.

A request body reaches the disk as pieces of up to a few hundred KiB (hypercorn_patches.READ_BYTES),
each copied a few times on the way (the socket's reader, h11, hypercorn, the body). glibc serves an
allocation of 128 KiB or more with mmap, and gives it back with munmap when it is freed; the next
piece then faults in and zeroes fresh pages, on every copy of every piece. With the mmap threshold
at MMAP_THRESHOLD they come from the heap and its pages are reused, warm. TRIM_THRESHOLD keeps that
much free memory at the top of the heap instead of giving it back at once and faulting it in again.
Measured on a 64 MiB push, 1 worker: about 0.5 CPU-s per GiB less, with the read size
(docs/peer-benchmarks.md, "What limits each gap").

Only with glibc (the image is Debian-based); elsewhere nothing changes.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger("zot_registry")

# mallopt's parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 4 << 20  # above the body's largest piece (streaming.HIGH_WATER is 4 MiB)
TRIM_THRESHOLD = 16 << 20


def tune_malloc() -> bool:
    """Set glibc's thresholds for this process; False where there is no glibc mallopt."""
    try:
        # The symbols already loaded into this process (as supervisor.py reaches prctl).
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not done:
        log.debug("mallopt refused the registry's thresholds; glibc's defaults stay")
    return done
