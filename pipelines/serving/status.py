"""The /health body: version, uptime, the served models, merged calls and the data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines import __version__
from pipelines.serving.coalesce import Coalescer


def health(
    models: Mapping[str, Any],
    uptime_s: float,
    front_workers: int,
    batching: Mapping[str, Coalescer],
    meta: Mapping[str, Any],
    ledger: Mapping[str, Any],
) -> dict[str, Any]:
    """``batching``: this process's merged calls per model call (each front worker counts
    its own); ``meta``: the feature snapshot's; ``ledger``: the prediction log's state."""
    return {
        "status": "healthy",
        "version": __version__,
        "uptime_s": round(uptime_s, 1),
        "models": {
            key: {"tag": str(m.tag), "created": m.creation_time.isoformat()}
            for key, m in models.items()
        },
        "front_workers": front_workers,
        "batching": {
            name: {
                "calls": co.calls,
                "rows": co.rows,
                "rows_per_call": round(co.rows / co.calls, 1) if co.calls else None,
            }
            for name, co in batching.items()
        },
        "data": {key: meta.get(key) for key in ("latest_event", "data_hash", "seasons")},
        "ledger": dict(ledger),
    }
