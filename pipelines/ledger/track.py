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
from pipelines.serving.schemas import QualiPrediction, RacePrediction

if TYPE_CHECKING:
    from pipelines.features.snapshot import FeatureSnapshot
    from pipelines.ledger.writer import Ledger

T = TypeVar("T")


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    ra = pd.Series(a).rank().to_numpy()
    rb = pd.Series(b).rank().to_numpy()
    return float(np.corrcoef(ra, rb)[0, 1])


def event_name(grand_prix_id: str | None, circuit_id: str | None) -> str:
    gp = (grand_prix_id or circuit_id or "event").replace("-", " ").title()
    return f"{gp} Grand Prix"


def score(rec: dict[str, Any], outcomes: pd.DataFrame, name: str) -> ScoredEvent:
    """One recorded forecast (a ``forecasts`` row) against the event's outcomes."""
    cars = rec["field"]
    win = {c["driver_id"]: c.get("win") for c in cars}
    gap = {c["driver_id"]: c.get("gap_pct") for c in cars}
    won = outcomes.loc[outcomes["r_pos"] == 1.0, "driver_id"]
    pole = outcomes.loc[outcomes["q_pos"] == 1.0, "driver_id"]
    winner = str(won.iloc[0]) if len(won) else None
    p = win.get(winner) if winner is not None else None
    p = float(p) if p is not None else (0.0 if winner is not None else None)
    best = min(cars, key=lambda c: (-(c.get("win") or 0.0), c["driver_id"]))  # as ranked
    favourite = str(best["driver_id"]) if cars else None
    timed = outcomes[outcomes["q_time_s"].notna() & outcomes["driver_id"].isin(gap.keys())]
    mae = rho = None
    if len(timed):
        t = timed["q_time_s"].to_numpy(float)
        actual = (t / t.min() - 1.0) * 100.0
        pred = np.array([gap[d] if gap[d] is not None else np.nan for d in timed["driver_id"]])
        ok = ~np.isnan(pred)
        if ok.any():
            mae = float(np.abs(pred[ok] - actual[ok]).mean())
            rho = _spearman(pred[ok], actual[ok])
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
        winner_log_loss=(-math.log(p) if p else None) if p is not None else None,
        top1=None if winner is None else favourite == winner,
        favourite=favourite,
        pole_sitter=str(pole.iloc[0]) if len(pole) else None,
        gap_pct_mae=mae,
        spearman=rho,
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


def track_record(
    season: int, records: Sequence[dict[str, Any]], snap: FeatureSnapshot
) -> TrackRecord:
    """Score, for each event of ``season`` with results in ``snap``, the last recorded
    forecast of each kind (``records``: ``db.scoreable`` rows, oldest first)."""
    last: dict[tuple[int, str], dict[str, Any]] = {}
    for rec in records:
        last[(rec["round"], rec["kind"])] = rec
    events = []
    for (rnd, _), rec in sorted(last.items(), key=lambda kv: (kv[0][0], KINDS.index(kv[0][1]))):
        event = snap.event_by_round(season, rnd)
        if event is None or event.race_id is None or not snap.has_results(event):
            continue
        if rec["race_id"] is not None and rec["race_id"] != event.race_id:
            continue  # the calendar changed under the record
        name = event_name(event.grand_prix_id, event.circuit_id)
        events.append(score(rec, snap.outcomes(event.race_id), name))
    summary = {k: summarise([e for e in events if e.kind == k]) for k in KINDS}
    return TrackRecord(season=season, events=events, summary=summary)


def read(ledger: Ledger, query: Callable[[Engine], T]) -> T:
    """Run a read of the log; a database that is down is a 503 that says so."""
    try:
        return query(ledger.engine)
    except SQLAlchemyError as exc:
        raise ApiError(
            503,
            f"the prediction log's database is unavailable ({type(exc).__name__})",
            headers={"Retry-After": "5"},
        ) from exc


def from_log(engine: Engine, season: int, snap: FeatureSnapshot) -> TrackRecord:
    """The track record of ``season`` from the prediction log behind ``engine``."""
    db.migrate(engine)
    with engine.connect() as conn:
        records = db.scoreable(conn, season)
    return track_record(season, records, snap)


def last_recorded(engine: Engine, season: int, rnd: int) -> dict[str, Any] | None:
    """The last forecast of the event that may enter the track record, or None."""
    db.migrate(engine)
    with engine.connect() as conn:
        records = [r for r in db.scoreable(conn, season) if r["round"] == rnd]
    return records[-1] if records else None


def recorded_forecast(rec: dict[str, Any], snap: FeatureSnapshot) -> RecordedForecast:
    """A stored forecast (a ``forecasts`` row) as the API answers one."""
    cars = rec["field"]
    by_win = sorted(cars, key=lambda c: (-(c.get("win") or 0.0), c["driver_id"]))
    rank = {c["driver_id"]: i + 1 for i, c in enumerate(by_win)}
    quali, race = [], []
    for c in cars:
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


def season_record(ledger: Ledger, snap: FeatureSnapshot, season: int) -> TrackRecord:
    """/track_record: 404 for a season not in the data, 503 if the log is unreachable."""
    from pipelines.serving.events import check_season

    check_season(snap, season, "query")
    return read(ledger, lambda engine: from_log(engine, season, snap))


def event_record(ledger: Ledger, snap: FeatureSnapshot, season: int, rnd: int) -> RecordedForecast:
    """/track_record/{season}/{round}: 404 when no such forecast was recorded."""
    rec = read(ledger, lambda engine: last_recorded(engine, season, rnd))
    if rec is None:
        raise ApiError(
            404,
            f"no forecast of season {season} round {rnd} was recorded before its qualifying",
            [{"loc": ["path", "round"], "msg": "no recorded forecast"}],
        )
    return recorded_forecast(rec, snap)
