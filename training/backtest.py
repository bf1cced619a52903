"""Walk-forward backtest of season S: the training protocol tuned on S-1 and scored on S."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pipelines.f1db.parse import Tables
from training.evaluate import EventHook
from training.pipeline import Protocol, RunData, Scored, Step, TrainingError, tune_and_score

MIN_TUNE_SEASONS = 3  # seasons fitted on while tuning, at the least
WARMUP_SEASONS = 2  # seasons of form history before the first training season


def backtest_seasons(season: int, train_from: int, history_from: int) -> tuple[int, int]:
    """(history_from, train_from) for ``season``: the configured ones, moved earlier to leave
    ``MIN_TUNE_SEASONS`` before the validation season."""
    train = min(train_from, season - 1 - MIN_TUNE_SEASONS)
    return min(history_from, train - WARMUP_SEASONS), train


def tables_through(t: Tables, season: int) -> Tables:
    """The tables without any season after ``season``."""
    keep = set(t.races.loc[t.races["season"] <= season, "race_id"])
    out = {}
    for name in Tables.table_names():
        frame = getattr(t, name)
        if name == "entrants":
            frame = frame[frame["season"] <= season]
        elif "race_id" in frame.columns:
            frame = frame[frame["race_id"].isin(keep)]
        out[name] = frame.reset_index(drop=True)
    return Tables(**out, content_hash=t.content_hash)


def backtest(
    tables: Tables,
    season: int,
    train_from: int,
    step: Step | None = None,
    on_event: EventHook | None = None,
    base: Protocol | None = None,
) -> Scored:
    """Tune on ``season``-1, fit on earlier seasons, score every event of ``season``."""
    say = step or (lambda _msg: None)
    t = tables_through(tables, season)
    have = sorted(set(t.races["season"]))
    if season not in have:
        late = season > have[-1]
        where = f"its latest is {have[-1]}" if late else f"seasons {have[0]}-{have[-1]} were read"
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
    ev["tuning"] = {k: ev["tuning"].get(k) for k in ("chosen", "stage2_folds")}
    return sc


def targets(ev: dict[str, Any]) -> list[tuple[str, float | None, float | None, bool]]:
    """The targets every backtest season is held to: (what, model, baseline, met)."""
    s1, s2 = ev["stage1"], ev["stage2"]
    pr = s1["baselines"]["practice_ratio"]["test"].get("gap_pct_mae")
    lg, ll = s2["baselines"]["logistic_grid"], "winner_log_loss"
    out = [
        ("gap MAE % below practice ratio", s1["test"].get("gap_pct_mae"), pr),
        ("winner log loss below logistic on grid", s2["test"].get(ll), lg["test"].get(ll)),
        (
            "before qualifying: winner log loss below logistic on Stage-1's grid",
            s2["test_chained"].get(ll),
            lg["test_chained"].get(ll),
        ),
    ]
    return [(w, m, b, m is not None and b is not None and m < b) for w, m, b in out]
