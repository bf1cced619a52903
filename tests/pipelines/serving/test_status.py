"""The /health body, built from what the front holds."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np

from pipelines import __version__
from pipelines.serving.coalesce import Coalescer
from pipelines.serving.status import health


async def _echo(rows: np.ndarray) -> np.ndarray:
    return rows[:, 0]


def test_health_names_the_models_the_merged_calls_and_the_data() -> None:
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    models = {"stage1": SimpleNamespace(tag="f1_stage1:abc", creation_time=created)}
    used, idle = Coalescer(_echo), Coalescer(_echo)
    asyncio.run(used(np.ones((4, 2))))
    asyncio.run(used(np.ones((2, 2))))
    meta = {"latest_event": {"season": 2025}, "data_hash": "h", "seasons": [2012, 2025], "x": 1}
    body = health(models, 12.34, 2, {"stage1": used, "stage2": idle}, meta)
    assert body == {
        "status": "healthy",
        "version": __version__,
        "uptime_s": 12.3,
        "models": {"stage1": {"tag": "f1_stage1:abc", "created": "2026-01-02T03:04:05+00:00"}},
        "front_workers": 2,
        "batching": {
            "stage1": {"calls": 2, "rows": 6, "rows_per_call": 3.0},
            "stage2": {"calls": 0, "rows": 0, "rows_per_call": None},
        },
        "data": {"latest_event": {"season": 2025}, "data_hash": "h", "seasons": [2012, 2025]},
    }
