"""The calendar and what happened at past events, from the feature snapshot: what the
page at /ui needs beside the forecasts. Never an input to a prediction."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pipelines.serving.errors import ApiError
from pipelines.serving.schemas import (
    Calendar,
    EventResults,
    EventSummary,
    QualifyingResult,
    RaceResult,
)

if TYPE_CHECKING:
    from pipelines.features.event import EventContext
    from pipelines.features.snapshot import FeatureSnapshot


def summary(snap: FeatureSnapshot, ctx: EventContext) -> EventSummary:
    gp = (ctx.grand_prix_id or ctx.circuit_id or "event").replace("-", " ").title()
    assert ctx.round is not None
    return EventSummary(
        season=ctx.season,
        round=ctx.round,
        name=f"{gp} Grand Prix",
        circuit_id=ctx.circuit_id,
        date=ctx.date.date(),
        is_sprint=ctx.is_sprint,
        has_results=snap.has_results(ctx),
    )


def check_season(snap: FeatureSnapshot, season: int, where: str) -> None:
    """404 for a season the data does not cover."""
    lo, hi = (int(s) for s in snap.meta.get("seasons", [0, 0]))
    if not lo <= season <= hi:
        raise ApiError(
            404,
            f"season {season} is not in the data ({lo}-{hi})",
            [{"loc": [where, "season"], "msg": f"between {lo} and {hi}"}],
        )


def calendar(snap: FeatureSnapshot, season: int | None) -> Calendar:
    """A season's events (default: the next event's season, else the latest)."""
    lo, hi = (int(s) for s in snap.meta.get("seasons", [0, 0]))
    nxt = snap.next_event()
    if season is None:
        season = nxt.season if nxt is not None else hi
    check_season(snap, season, "query")
    return Calendar(
        season=season,
        seasons=list(range(lo, hi + 1)),
        next_event=summary(snap, nxt) if nxt is not None else None,
        events=[summary(snap, c) for c in snap.season_events(season)],
    )


def results(snap: FeatureSnapshot, season: int, rnd: int) -> EventResults:
    ctx = snap.event_by_round(season, rnd)
    if ctx is None or ctx.race_id is None:
        raise ApiError(
            404,
            f"season {season} round {rnd} is not in the data",
            [{"loc": ["path", "round"], "msg": "no such event"}],
        )
    o = snap.outcomes(ctx.race_id)
    q = o[o["q_pos"].notna()].sort_values("q_pos")
    r = o[o["r_text"] != ""].sort_values(["r_pos", "driver_id"], na_position="last")
    return EventResults(
        event=summary(snap, ctx),
        qualifying=[
            QualifyingResult(
                driver_id=str(d), position=int(p), time_s=None if math.isnan(t) else float(t)
            )
            for d, p, t in zip(q["driver_id"], q["q_pos"], q["q_time_s"], strict=True)
        ],
        race=[
            RaceResult(
                driver_id=str(d),
                position=None if math.isnan(p) else int(p),
                status=str(txt),
            )
            for d, p, txt in zip(r["driver_id"], r["r_pos"], r["r_text"], strict=True)
        ],
    )
