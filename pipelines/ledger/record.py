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


def _num(x: Any) -> float | None:
    """A number as answered (full precision: the track record scores exactly it)."""
    v = float(x)
    return v if math.isfinite(v) else None


def field_rows(fc: Forecast) -> list[dict[str, Any]]:
    """Every car of the event with its forecast (race odds when the race stage ran)."""
    q, race = fc.quali, fc.race
    out = []
    for i, e in enumerate(fc.field.entries):
        row: dict[str, Any] = {
            "driver_id": e.driver_id,
            "constructor_id": e.constructor_id,
            "gap_pct": _num(q.gap_pct[i]),
            "time_s": _num(q.time_s[i]),
            "quali_rank": int(q.grid[i]),
            "pole": _num(q.pole_prob[i]),
        }
        if race is not None:
            row |= {
                "grid": int(race.grid[i]),
                "win": _num(race.win_prob[i]),
                "podium": _num(race.podium_prob[i]),
                "points": _num(race.points_prob[i]),
            }
        out.append(row)
    return out


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
        "inputs": None if a.inputs is None else json.loads(a.inputs),
        "kind": "before_qualifying" if practice else "weekend_ahead",
        "data_saw_qualifying": saw_qualifying,
        "fitted_on_event": a.fitted_on_event,
        "data_hash": data_hash,
        "models": dict(models),
        "pole_s": _num(fc.quali.pole_s),
        "field": field_rows(fc),
    }
