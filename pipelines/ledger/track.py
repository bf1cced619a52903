"""The track record: each recorded pre-event forecast of a season scored against what
happened, beside uniform odds and the pole-sitter."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from pipelines.ledger import db
from pipelines.ledger.schemas import (
    KINDS,
    KindSummary,
    RecordedForecast,
    ScoredEvent,
    TrackRecord,
)
from pipelines.serving.errors import ApiError
from pipelines.serving.events import summary
from pipelines.serving.schemas import QualiPrediction, RacePrediction

if TYPE_CHECKING:
    from pipelines.features.snapshot import FeatureSnapshot

T = TypeVar("T")


def _by_win(cars: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The field as ranked: highest win probability first, ties by driver id."""
    return sorted(cars, key=lambda c: (-(c.get("win") or 0.0), c["driver_id"]))


def score(rec: dict[str, Any], outcomes: pd.DataFrame, name: str) -> ScoredEvent:
    """One recorded forecast (a ``forecasts`` row) against the event's outcomes."""
    cars = rec["field"]
    win = {c["driver_id"]: c.get("win") for c in cars}
    gap = {c["driver_id"]: c.get("gap_pct") for c in cars}
    won = outcomes.loc[outcomes["r_pos"] == 1.0, "driver_id"]
    pole = outcomes.loc[outcomes["q_pos"] == 1.0, "driver_id"]
    winner = str(won.iloc[0]) if len(won) else None
    p = None if winner is None else float(win.get(winner) or 0.0)
    favourite = str(_by_win(cars)[0]["driver_id"]) if cars else None
    timed = outcomes[outcomes["q_time_s"].notna() & outcomes["driver_id"].isin(gap.keys())]
    pred = pd.Series([gap[d] for d in timed["driver_id"]], dtype=float)
    actual = pd.Series((timed["q_time_s"].to_numpy(float) / timed["q_time_s"].min() - 1) * 100)
    ok = pred.notna()
    pred, actual = pred[ok], actual[ok]
    mae = float((pred - actual).abs().mean()) if len(pred) else None
    spread = len(pred) >= 3 and pred.nunique() > 1 and actual.nunique() > 1
    return ScoredEvent(
        season=rec["season"],
        round=rec["round"],
        name=name,
        kind=rec["kind"],
        forecast_at=rec["last_at"],
        model_versions=rec["models"],
        data_hash=rec["data_hash"],
        winner=winner,
        winner_probability=p,
        winner_log_loss=-math.log(p) if p else None,
        top1=None if winner is None else favourite == winner,
        favourite=favourite,
        pole_sitter=str(pole.iloc[0]) if len(pole) else None,
        gap_pct_mae=mae,
        spearman=float(pred.rank().corr(actual.rank())) if spread else None,
        field_size=len(cars),
    )


def _mean(values: Sequence[float | None]) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def summarise(events: Sequence[ScoredEvent]) -> KindSummary:
    with_winner = [e for e in events if e.winner is not None]
    return KindSummary(
        events=len(events),
        winner_log_loss=_mean([e.winner_log_loss for e in with_winner]),
        top1=_mean([float(bool(e.top1)) for e in with_winner]),
        gap_pct_mae=_mean([e.gap_pct_mae for e in events]),
        spearman=_mean([e.spearman for e in events]),
        uniform_log_loss=_mean([math.log(e.field_size) for e in with_winner if e.field_size]),
        uniform_top1=_mean([1.0 / e.field_size for e in with_winner if e.field_size]),
        pole_sitter_top1=_mean(
            [float(e.pole_sitter == e.winner) for e in with_winner if e.pole_sitter]
        ),
    )


def from_log(engine: Engine, season: int, snap: FeatureSnapshot) -> TrackRecord:
    """Score each kind's last logged forecast of every ``season`` event with results."""
    last = {(r["round"], r["kind"]): r for r in db.scoreable(engine, season)}  # oldest first
    scored = []
    for (rnd, _), rec in sorted(last.items(), key=lambda kv: (kv[0][0], KINDS.index(kv[0][1]))):
        event = snap.event_by_round(season, rnd)
        if event is None or event.race_id is None or rec["race_id"] not in (None, event.race_id):
            continue  # not in the data, or the calendar changed under the record
        about = summary(snap, event)
        if about.has_results:
            scored.append(score(rec, snap.outcomes(event.race_id), about.name))
    by_kind = {k: summarise([e for e in scored if e.kind == k]) for k in KINDS}
    return TrackRecord(season=season, events=scored, summary=by_kind)


def read(query: Callable[[], T]) -> T:
    """Run a read of the log; a database that is down is a 503 that says so."""
    try:
        return query()
    except SQLAlchemyError as exc:
        raise ApiError(
            503,
            f"the prediction log's database is unavailable ({type(exc).__name__})",
            headers={"Retry-After": "5"},
        ) from exc


def event_record(engine: Engine, snap: FeatureSnapshot, season: int, rnd: int) -> RecordedForecast:
    """/track_record/{season}/{round}: the last scoreable forecast, as answered (or 404)."""
    recs = [r for r in read(lambda: db.scoreable(engine, season)) if r["round"] == rnd]
    if not recs:
        raise ApiError(
            404,
            f"no forecast of season {season} round {rnd} was recorded before its qualifying",
            [{"loc": ["path", "round"], "msg": "no recorded forecast"}],
        )
    rec = recs[-1]
    rank = {c["driver_id"]: i + 1 for i, c in enumerate(_by_win(rec["field"]))}
    quali, race = [], []
    for c in rec["field"]:
        names = {
            "driver_id": c["driver_id"],
            "driver_name": snap.driver_name(c["driver_id"]),
            "constructor_id": c["constructor_id"],
            "constructor_name": snap.constructor_name(c["constructor_id"]),
        }
        quali.append(
            QualiPrediction(
                **names,
                predicted_time=c["time_s"],
                predicted_gap_to_pole_pct=round(c["gap_pct"] or 0.0, 4),
                grid_position_estimate=c["quali_rank"],
                probability_score=c["pole"] or 0.0,
            )
        )
        race.append(
            RacePrediction(
                **names,
                win_probability=c["win"] or 0.0,
                podium_probability=c["podium"] or 0.0,
                points_probability=c["points"] or 0.0,
                predicted_rank=rank[c["driver_id"]],
                grid_position=c["grid"],
            )
        )
    return RecordedForecast(
        season=rec["season"],
        round=rec["round"],
        kind=rec["kind"],
        forecast_at=rec["last_at"],
        model_versions=rec["models"],
        data_hash=rec["data_hash"],
        qualifying_predictions=sorted(quali, key=lambda p: p.grid_position_estimate),
        race_winner_predictions=sorted(race, key=lambda p: p.predicted_rank),
    )
