"""Walk-forward backtest of one season, through the code the service runs.

``backtest(tables, S)`` runs the training protocol shifted by one season: settings tuned
on S-1, models refitted on seasons <= S-1, then every event of S asked through
``TwoStage`` before and after qualifying. The tables are cut after S, so no later season
exists for the run, and every feature reads only history before its event.

A backtest needs training seasons before S: by default it trains from
``min(F1_TRAIN_FROM, S-4)`` (``backtest_seasons``); the report names them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from pipelines.f1db.parse import Tables
from training.evaluate import EventHook
from training.pipeline import Protocol, RunData, Step, TrainingError, per_race, tune_and_score

MIN_TUNE_SEASONS = 3
"""Seasons fitted on while tuning, when the configured training start leaves fewer."""
WARMUP_SEASONS = 2
"""Seasons of form history before the first training season."""


def backtest_seasons(season: int, train_from: int, history_from: int) -> tuple[int, int]:
    """(history_from, train_from) for a backtest of ``season``: the configured ones, moved
    earlier when they leave fewer than ``MIN_TUNE_SEASONS`` before the validation season."""
    train = min(train_from, season - 1 - MIN_TUNE_SEASONS)
    return min(history_from, train - WARMUP_SEASONS), train


def tables_through(t: Tables, season: int) -> Tables:
    """The tables without any season after ``season``."""
    keep = set(t.races.loc[t.races["season"] <= season, "race_id"])
    out = {}
    for name in Tables.table_names():
        frame = getattr(t, name)
        if name == "races":
            frame = frame[frame["race_id"].isin(keep)]
        elif name == "entrants":
            frame = frame[frame["season"] <= season]
        elif "race_id" in frame.columns:
            frame = frame[frame["race_id"].isin(keep)]
        out[name] = frame.reset_index(drop=True)
    return Tables(**out, content_hash=t.content_hash)


@dataclass
class BacktestResult:
    season: int
    evaluation: dict[str, Any]
    """Season metrics in the shape of ``reports/evaluation.json`` (+ protocol, tuning)."""
    races: list[dict[str, Any]]
    """Per race: event, winner, pole-sitter, and every predictor's metrics."""
    predictions: dict[str, pd.DataFrame] = field(default_factory=dict)


def backtest(
    tables: Tables,
    season: int,
    train_from: int,
    step: Step | None = None,
    on_event: EventHook | None = None,
    base: Protocol | None = None,
) -> BacktestResult:
    """Tune on ``season``-1, fit on seasons < ``season``, ask every event of ``season``
    through the served flow; score the model and every baseline per race and overall.
    ``base`` gives the protocol's other choices (Stage-2's training places)."""
    say = step or (lambda _msg: None)
    t = tables_through(tables, season)
    have = sorted(set(t.races["season"]))
    if season not in have:
        where = (
            f"its latest is {have[-1]}"
            if season > have[-1]
            else f"seasons {have[0]}-{have[-1]} were read"
        )
        raise TrainingError(f"no season {season} in the data ({where})")
    p = replace(
        base or Protocol(), train_from=train_from, valid_season=season - 1, test_season=season
    )
    d = RunData.build(t, p.train_from)
    say(f"datasets: stage-1 {len(d.s1.y)} rows, stage-2 {len(d.s2.y)} rows")
    sc = tune_and_score(d, p, say, on_event)
    ev = sc.evaluation
    ev["protocol"] |= {
        "history_from": int(min(have)),
        "kind": "backtest",
        "events": int(t.races["season"].eq(season).sum()),
    }
    ev["tuning"] = {k: sc.tuning.get(k) for k in ("chosen", "stage2_folds")}
    return BacktestResult(season, ev, per_race(t, sc.predictions), sc.predictions)


def targets(ev: dict[str, Any]) -> list[tuple[str, float | None, float | None, bool]]:
    """The targets every backtest season is held to: (what, model, baseline, met)."""
    s1, s2 = ev["stage1"], ev["stage2"]
    pr = s1["baselines"]["practice_ratio"]["test"].get("gap_pct_mae")
    lg = s2["baselines"]["logistic_grid"]
    out = [
        ("gap MAE % below practice ratio", s1["test"].get("gap_pct_mae"), pr),
        (
            "winner log loss below logistic on grid",
            s2["test"].get("winner_log_loss"),
            lg["test"].get("winner_log_loss"),
        ),
        (
            "before qualifying: winner log loss below logistic on Stage-1's grid",
            s2["test_chained"].get("winner_log_loss"),
            lg["test_chained"].get("winner_log_loss"),
        ),
    ]
    return [(w, m, b, m is not None and b is not None and m < b) for w, m, b in out]
