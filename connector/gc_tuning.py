"""Garbage-collector settings for the two busy processes of ``run``.

A backfill allocates and drops millions of short-lived, acyclic objects (decoded JSON,
prepared records, changes). With CPython's default thresholds the cyclic collector runs
every 700 allocations and, every hundred runs, walks every object alive; measured on a
page of emulator records, that was a third of preparing it. Nothing here builds
long-lived cycles, so collecting rarely costs little memory.
"""

from __future__ import annotations

import gc
from typing import Final

#: allocations between young-generation collections (CPython's default: 700)
YOUNG_THRESHOLD: Final = 50_000


def tune_gc() -> None:
    """Collect rarely, and never again walk what exists now (call after start-up)."""
    gc.collect()
    gc.freeze()  # start-up objects (modules, the restored state) leave the scans
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
