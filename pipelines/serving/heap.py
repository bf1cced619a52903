"""Keep the start-up heap out of the garbage collector's way in a serving process."""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect once, then move every object alive now (the feature snapshot and the
    models) to the collector's permanent generation: a full collection would otherwise
    walk them all while every request in the process waits (BENCHMARKS.md). Objects made
    later, the memos among them, are collected as usual. Returns how many are frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
