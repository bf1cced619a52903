"""From a validated request to model inputs, and from model outputs to responses.

Shared by the Bento front service and the benchmark's in-process server, so the
event resolution, driver resolution and warnings are identical on every path.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipelines.features import Entry, EventContext, FeatureSnapshot
from pipelines.predict import QualiOut, unique_ranks
from pipelines.schemas import (
    DriverInput,
    EventInput,
    FullResponse,
    Metadata,
    QualiPrediction,
    RacePrediction,
)


class RequestError(ValueError):
    """A request that is well-formed but cannot be answered (HTTP 422)."""

    def __init__(self, loc: Sequence[str | int], msg: str) -> None:
        super().__init__(f"{'.'.join(map(str, loc))}: {msg}")
        self.loc = list(loc)
        self.msg = msg

    def body(self) -> dict[str, object]:
        return {"error": str(self), "detail": [{"loc": ["body", *self.loc], "msg": self.msg}]}


def quote(text: str, limit: int = 64) -> str:
    """User text made safe for a header, a log line or a message: JSON-quoted ASCII (CR/LF,
    control characters, non-ASCII and lone surrogates escaped), cut to ``limit`` chars."""
    cut = text if len(text) <= limit else text[:limit] + "..."
    return json.dumps(cut, ensure_ascii=True)


def header_safe(text: str, limit: int = 2000) -> str:
    """A header value from text that may hold anything: printable ASCII only (latin-1
    without CR/LF is what HTTP/1.1 servers accept), at most ``limit`` characters."""
    ascii_text = text.encode("ascii", "backslashreplace").decode("ascii")
    return "".join(c if " " <= c <= "~" else "?" for c in ascii_text)[:limit]


def warnings_header(warnings: Sequence[str]) -> dict[str, str]:
    """``X-F1-Warnings`` for a response (the full text is in the body where there is one)."""
    return {"X-F1-Warnings": header_safe(" | ".join(warnings))} if warnings else {}


@dataclass
class Resolved:
    ctx: EventContext
    entries: list[Entry]
    field_practice: dict[str, list[float]]
    warnings: list[str] = field(default_factory=list)
    known_event: bool = False


def resolve_event(
    snap: FeatureSnapshot, event: EventInput | None, warnings: list[str]
) -> EventContext:
    """The event to predict: given, else the next one in the calendar, else a blank one."""
    if event is None:
        ctx = snap.next_event()
        if ctx is not None:
            warnings.append(
                f"no event given: using the next event in the calendar, {ctx.season} round "
                f"{ctx.round} ({ctx.circuit_id})"
            )
            return ctx
        last = snap.meta.get("latest_event") or {}
        day = pd.Timestamp(last.get("date", "2000-01-01")) + pd.Timedelta(days=1)
        warnings.append(
            "no event given and the calendar has no event after the latest results "
            f"({last.get('season')} round {last.get('round')}): circuit features are unknown "
            "and no lap time can be predicted; pass an event to get one"
        )
        return EventContext(season=int(day.year) + (1 if day.month == 12 else 0), date=day)
    if event.round is not None:
        ctx = snap.event_by_round(event.season, event.round)
        if ctx is None:
            lo, hi = snap.meta.get("seasons", ["?", "?"])
            raise RequestError(
                ["event", "round"],
                f"season {event.season} round {event.round} is not in the data (seasons "
                f"{lo}-{hi}); give circuit_id and date for an event that is not",
            )
        return ctx
    assert event.circuit_id is not None and event.date is not None
    ctx = snap.circuit_event(event.season, event.circuit_id, pd.Timestamp(event.date))
    if not snap.known_circuit(event.circuit_id):
        warnings.append(
            f"circuit {quote(event.circuit_id)} is not in the data: circuit features are unknown "
            "and no lap time can be predicted without practice laps"
        )
    return ctx


def resolve_request(
    snap: FeatureSnapshot, event: EventInput | None, drivers: Sequence[DriverInput] | None
) -> Resolved:
    """Event, entry list, practice and warnings for a request (raises RequestError)."""
    warnings: list[str] = []
    ctx = resolve_event(snap, event, warnings)
    known = ctx.race_id is not None
    data_entries = {e.driver_id: e for e in snap.entries(ctx)} if known else {}
    fieldp = snap.field_practice(ctx) if known else {}
    if drivers is None:
        if not data_entries:
            raise RequestError(
                ["drivers"],
                "required: the event is not in the data, so there is no entry list to use",
            )
        return Resolved(ctx, list(data_entries.values()), fieldp, warnings, known)

    entries: list[Entry] = []
    seen: dict[str, int] = {}
    unused: set[str] = set()
    for i, d in enumerate(drivers):
        driver_id = _resolve_driver(snap, d.driver_id, ctx.season, i, warnings)
        if driver_id in seen:
            raise RequestError(
                ["drivers", i, "driver_id"],
                f"duplicated driver '{driver_id}' (also drivers[{seen[driver_id]}])",
            )
        seen[driver_id] = i
        from_data = data_entries.get(driver_id)
        team = d.constructor_id or (from_data.constructor_id if from_data else None)
        team = team or snap.latest_team(driver_id)
        if team is None:
            warnings.append(f"drivers[{i}]: no team known for '{driver_id}': team form unknown")
        elif team not in snap.known_teams:
            warnings.append(f"drivers[{i}]: team '{team}' has no history in the data")
        e = Entry(driver_id=driver_id, constructor_id=team)
        given = d.practice.as_dict() if d.practice else {}
        if given:
            e.practice = given
        elif from_data is not None:
            e.practice, e.laps = dict(from_data.practice), dict(from_data.laps)
        if d.grid_position is not None:
            e.grid = float(d.grid_position)
        if d.qualifying_time is not None:
            e.quali_time = float(d.qualifying_time)
        unused.update(d.extra_inputs())
        entries.append(e)
    if unused:
        warnings.append(
            "inputs not used by the model (accepted for compatibility): "
            + ", ".join(quote(u) for u in sorted(unused))
        )
    if known:
        missing = [e.driver_id for e in entries if not e.practice]
        if missing and len(missing) < len(entries):
            warnings.append("no practice laps for: " + ", ".join(missing))
    return Resolved(ctx, entries, fieldp, warnings, known)


def _resolve_driver(
    snap: FeatureSnapshot, raw: str | int, season: int, i: int, warnings: list[str]
) -> str:
    if isinstance(raw, int):
        found = snap.driver_for_number(raw, season)
        if found is None:
            warnings.append(
                f"drivers[{i}]: no driver raced with number {raw}: predicted without history"
            )
            return f"car-{raw}"
        return found
    if raw not in snap.known_drivers:
        warnings.append(
            f"drivers[{i}]: driver '{raw}' has no history in the data: predicted without form"
        )
    return raw


# ----------------------------------------------------------------- responses


def quali_predictions(entries: Sequence[Entry], q: QualiOut) -> list[QualiPrediction]:
    out = []
    for i, e in enumerate(entries):
        t = float(q.time_s[i])
        out.append(
            QualiPrediction(
                driver_id=e.driver_id,
                constructor_id=e.constructor_id,
                predicted_time=round(t, 3) if math.isfinite(t) else None,
                predicted_gap_to_pole_pct=round(float(q.gap_pct[i]), 4),
                grid_position_estimate=int(q.grid[i]),
                probability_score=float(q.pole_prob[i]),
            )
        )
    return sorted(out, key=lambda p: p.grid_position_estimate)


def race_predictions(
    entries: Sequence[Entry], prob: np.ndarray, grid: np.ndarray
) -> list[RacePrediction]:
    ranks = unique_ranks(-prob, [e.driver_id for e in entries])
    out = [
        RacePrediction(
            driver_id=e.driver_id,
            constructor_id=e.constructor_id,
            win_probability=float(prob[i]),
            predicted_rank=int(ranks[i]),
            grid_position=int(grid[i]),
        )
        for i, e in enumerate(entries)
    ]
    return sorted(out, key=lambda p: p.predicted_rank)


def full_response(
    res: Resolved,
    q: QualiOut,
    prob: np.ndarray,
    grid: np.ndarray,
    model_versions: dict[str, str],
    started: float,
) -> FullResponse:
    """The /predict_full answer (``started`` is the request's ``time.perf_counter()``)."""
    return FullResponse(
        qualifying_predictions=quali_predictions(res.entries, q),
        race_winner_predictions=race_predictions(res.entries, prob, grid),
        metadata=Metadata(
            event=res.ctx.to_dict(),
            model_versions=model_versions,
            warnings=res.warnings,
            inference_ms=round((time.perf_counter() - started) * 1000.0, 3),
        ),
    )
