"""What the log keeps of one answer: the event, the whole field's forecast, the inputs
the caller gave, and the data and models behind it."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pydantic_core

from pipelines.features.event import EventContext
from pipelines.serving.orchestrator import Forecast

EventKey = tuple[Any, ...]


@dataclass
class Answer:
    """An answer waiting, its columns encoded (no Forecast waits); repeats add to ``count``."""

    key: EventKey
    event: EventContext
    columns: dict[str, Any]
    request_id: str | None
    first_at: datetime
    last_at: datetime
    count: int = 1


def answer_key(fc: Forecast, inputs: str | None) -> EventKey:
    """What makes two answers the same under one data snapshot and model set."""
    c, race = fc.event, fc.race is not None
    return (race, c.season, c.round, c.race_id, c.circuit_id, c.date.date().isoformat(), inputs)


def answer(
    fc: Forecast, inputs: str | None, request_id: str | None, fitted: bool, at: datetime
) -> Answer:
    """An answer to log; ``inputs`` are the caller's drivers as JSON (None: the data's field)."""
    practice = any(e.practice for e in fc.field.entries)
    columns = {
        "stages": "race" if fc.race is not None else "quali",
        "season": fc.event.season,
        "round": fc.event.round,
        "race_id": fc.event.race_id,
        "circuit_id": fc.event.circuit_id,
        "event_date": fc.event.date.date(),
        "has_inputs": inputs is not None,
        "inputs": None if inputs is None else inputs.encode(),  # JSON already
        "kind": "before_qualifying" if practice else "weekend_ahead",
        "fitted_on_event": fitted,
        "pole_s": fc.quali.pole_s if math.isfinite(fc.quali.pole_s) else None,
        "field": pydantic_core.to_json(field_columns(fc), inf_nan_mode="null"),
    }
    return Answer(answer_key(fc, inputs), fc.event, columns, request_id, at, at)


def _nums(xs: Any) -> list[float]:
    """Numbers as answered, in full (the track record scores exactly them)."""
    return np.asarray(xs, dtype=float).tolist()  # type: ignore[no-any-return]


def field_columns(fc: Forecast) -> dict[str, list[Any]]:
    """Every car's forecast by column, each name once (race odds when the race stage ran)."""
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
    return cols


def row(
    a: Answer, models: Mapping[str, str], data_hash: str | None, saw_qualifying: bool
) -> dict[str, Any]:
    """The table row for an answer (``forecasts`` in ``pipelines.ledger.db``)."""
    digest = hashlib.sha256(pydantic_core.to_json([a.key, data_hash, sorted(models.items())]))
    return a.columns | {
        "key": digest.hexdigest(),
        "first_at": a.first_at,
        "last_at": a.last_at,
        "count": a.count,
        "request_id": a.request_id,
        "data_saw_qualifying": saw_qualifying,
        "data_hash": data_hash,
        "models": dict(models),
    }
