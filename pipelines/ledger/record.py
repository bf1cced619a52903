"""What the log keeps of one answer: the event, the whole field's forecast, the inputs
the caller gave, and the data and models behind it."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pydantic_core

from pipelines.serving.orchestrator import Forecast

EventKey = tuple[Any, ...]


@dataclass
class Answer:
    """One answer waiting to be written; repeats of it only add to ``count``."""

    forecast: Forecast
    inputs: str | None
    """The caller's drivers as JSON, None when the field is the data's alone."""
    request_id: str | None
    fitted_on_event: bool
    first_at: datetime
    last_at: datetime
    count: int = 1


def answer_key(fc: Forecast, inputs: str | None) -> EventKey:
    """What makes two answers the same under one data snapshot and model set."""
    c = fc.event
    return (
        fc.race is not None,
        c.season,
        c.round,
        c.race_id,
        c.circuit_id,
        c.date.date().isoformat(),
        inputs,
    )


def _nums(xs: Any) -> list[float | None]:
    """Numbers as answered (full precision: the track record scores exactly them)."""
    return [v if math.isfinite(v) else None for v in np.asarray(xs, dtype=float).tolist()]


def _num(x: Any) -> float | None:
    return _nums([x])[0]


def field_rows(fc: Forecast) -> list[dict[str, Any]]:
    """Every car of the event with its forecast (race odds when the race stage ran)."""
    q, race = fc.quali, fc.race
    cols: dict[str, list[Any]] = {
        "driver_id": [e.driver_id for e in fc.field.entries],
        "constructor_id": [e.constructor_id for e in fc.field.entries],
        "gap_pct": _nums(q.gap_pct),
        "time_s": _nums(q.time_s),
        "quali_rank": np.asarray(q.grid, dtype=int).tolist(),
        "pole": _nums(q.pole_prob),
    }
    if race is not None:
        cols |= {
            "grid": np.asarray(race.grid, dtype=int).tolist(),
            "win": _nums(race.win_prob),
            "podium": _nums(race.podium_prob),
            "points": _nums(race.points_prob),
        }
    return [dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)]


def row(
    a: Answer, models: Mapping[str, str], data_hash: str | None, saw_qualifying: bool
) -> dict[str, Any]:
    """The table row for an answer (``forecasts`` in ``pipelines.ledger.db``)."""
    fc = a.forecast
    key = answer_key(fc, a.inputs)
    digest = hashlib.sha256(
        json.dumps([list(key), data_hash, dict(sorted(models.items()))]).encode()
    ).hexdigest()
    practice = any(e.practice for e in fc.field.entries)
    return {
        "key": digest,
        "first_at": a.first_at,
        "last_at": a.last_at,
        "count": a.count,
        "request_id": a.request_id,
        "stages": "race" if fc.race is not None else "quali",
        "season": fc.event.season,
        "round": fc.event.round,
        "race_id": fc.event.race_id,
        "circuit_id": fc.event.circuit_id,
        "event_date": fc.event.date.date(),
        "has_inputs": a.inputs is not None,
        "inputs": None if a.inputs is None else pydantic_core.from_json(a.inputs),
        "kind": "before_qualifying" if practice else "weekend_ahead",
        "data_saw_qualifying": saw_qualifying,
        "fitted_on_event": a.fitted_on_event,
        "data_hash": data_hash,
        "models": dict(models),
        "pole_s": _num(fc.quali.pole_s),
        "field": field_rows(fc),
    }
