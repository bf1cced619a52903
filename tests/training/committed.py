"""Compare a committed report with the one the code writes now, naming what moved.

The docs quote reports/*.json (tests/test_readme_figures.py checks each figure against
them), so a report the code no longer writes leaves quoted figures stale. Only the run's
timings may differ.
"""

from __future__ import annotations

from typing import Any

TIMINGS = {"training_seconds", "seconds"}
"""Top-level keys that vary run to run (how long the run took)."""
STALE = "reports/ are stale: run `make reports`, then make the docs follow"


def without_timings(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in TIMINGS}


def differences(committed: Any, now: Any, at: str = "") -> list[str]:
    """Where two JSON documents differ: one line per leaf, with both values."""
    if isinstance(committed, dict) and isinstance(now, dict):
        keys = [*committed, *(k for k in now if k not in committed)]
        return [
            line
            for k in keys
            for line in differences(
                committed.get(k, "<absent>"), now.get(k, "<absent>"), f"{at}.{k}"
            )
        ]
    if isinstance(committed, list) and isinstance(now, list) and len(committed) == len(now):
        return [
            line
            for i, (a, b) in enumerate(zip(committed, now, strict=True))
            for line in differences(a, b, f"{at}[{i}]")
        ]
    return [] if committed == now else [f"{at or '.'}: committed {committed!r}, now {now!r}"]


def assert_same(committed: dict[str, Any], now: dict[str, Any], shown: int = 25) -> None:
    """Fail, listing the first ``shown`` differences, unless the two reports agree in
    everything but their timings."""
    diff = differences(without_timings(committed), without_timings(now))
    more = f"\n... and {len(diff) - shown} more" if len(diff) > shown else ""
    assert not diff, f"{STALE}\n" + "\n".join(diff[:shown]) + more
