"""Tune on the validation season, report on the test season, refit for serving.

Protocol: candidate settings are fitted on seasons < valid and compared on the
validation season; the chosen settings are refitted on seasons <= valid and scored
on the test season (next to the baselines, fitted the same way); the models saved
for serving are refitted on every season through the test season.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipelines.f1db.parse import Tables
from pipelines.features.event import EventContext
from pipelines.features.snapshot import FeatureSnapshot
from pipelines.models.pole import PoleParams, estimate_pole, season_start
from pipelines.models.stage1 import (
    Stage1Config,
    Stage1Model,
    first_under_new_rules,
    no_practice,
    without_practice,
    without_team_form,
)
from pipelines.models.stage2 import (
    GRID_TERMS,
    RANK_DECAY,
    RANK_DEPTH,
    RankStages,
    Stage2Config,
    Stage2Model,
    apply_grid_lean,
    finish_ranks,
    fit_linear,
    grid_lean,
    group_softmax,
    linear_design,
    stage2_places,
)
from training import baselines
from training.datasets import StageData, stage1_data, stage2_data
from training.evaluate import (
    EventHook,
    Served,
    ahead_predictions,
    placings_over_starters,
    served_predictions,
)
from training.metrics import (
    gap_and_spearman,
    placing_metrics,
    pole_metrics,
    pole_win_share,
    stage1_metrics,
    stage2_metrics,
)
from training.uncertainty import stage1_intervals, stage2_intervals

if TYPE_CHECKING:
    from pipelines.settings import Settings


class TrainingError(RuntimeError):
    """Training cannot run on this data (the message says what is missing)."""


@dataclass
class Protocol:
    train_from: int = 2014
    valid_season: int = 2024
    test_season: int = 2025
    rank_depth: int = RANK_DEPTH
    """Places of each training race Stage-2 learns from (``Stage2Config.rank_depth``)."""
    rank_decay: float = RANK_DECAY
    """Their weights' decay (``Stage2Config.rank_decay``)."""

    @classmethod
    def of(cls, s: Settings) -> Protocol:
        """The settings' protocol: its seasons, and Stage-2's training places from
        ``F1_STAGE2_RANK_DEPTH`` / ``_DECAY`` when set, else the code's."""
        depth, decay = stage2_places(s)
        return cls(s.train_from, s.valid_season, s.test_season, depth, decay)


@dataclass
class TrainResult:
    snapshot: FeatureSnapshot
    stage1: Stage1Model
    stage2: Stage2Model
    evaluation: dict[str, Any]
    predictions: dict[str, pd.DataFrame] = field(default_factory=dict)
    stage1_through: dict[str, int] | None = None
    """The latest event Stage-1 was fitted on (``last_event``)."""


Step = Callable[[str], None]


def check_seasons(s1: StageData, s2: StageData, p: Protocol) -> None:
    """Enough seasons with results: >= 2 to train on, the validation and the test one."""
    have1 = set(s1.meta["season"])
    have2 = set(s2.meta["season"])
    train = sorted(s for s in have1 & have2 if s < p.valid_season)
    missing = [s for s in (p.valid_season, p.test_season) if s not in have1 or s not in have2]
    if len(train) < 2 or missing:
        raise TrainingError(
            f"too few seasons to train: need >= 2 seasons from {p.train_from} before "
            f"{p.valid_season} plus {p.valid_season} (validation) and {p.test_season} (test) "
            f"with qualifying and race results; found training seasons {train or 'none'}"
            + (f", missing {missing}" if missing else "")
        )


# ------------------------------------------------------------------------- pole


def pole_predictions(snap: FeatureSnapshot, meta: pd.DataFrame, params: PoleParams) -> np.ndarray:
    """Estimated pole lap for each row's event (history strictly before the event)."""
    out = np.empty(len(meta))
    for _, idx in meta.groupby("race_id").indices.items():
        r = meta.iloc[idx[0]]
        hist = snap.pole_arrays(int(r["day"]))
        out[idx] = estimate_pole(
            hist,
            r["ref_session"],
            float(r["ref_lap"]),
            r["layout_id"],
            params,
            float(r["course_length"]),
            season_start(int(r["season"])),
        )
    return out


def _event_pole_mae(meta: pd.DataFrame, pole: np.ndarray) -> float:
    ev = pd.DataFrame({"race_id": meta["race_id"], "err": np.abs(pole - meta["pole_s"])})
    return float(ev.groupby("race_id")["err"].first().mean())


# ----------------------------------------------------------------------- tuning


def fit_stage1(data: StageData, cfg: Stage1Config, form: bool = True) -> Stage1Model:
    """Fit Stage-1 on ``data``, on its dry events only when the config says so (``form``
    False: without the form-only ensemble, for scores of the main one)."""
    if cfg.dry_only:
        data = data.select(data.meta["dry"].to_numpy(bool))
    teams = data.meta["race_id"].astype(str) + "/" + data.meta["constructor_id"].astype(str)
    return Stage1Model.fit(data.x, data.y, cfg, teams.to_numpy(), form=form)


def last_event(data: StageData) -> dict[str, int] | None:
    """The latest event among ``data``'s rows: season, round and race id (None if none)."""
    if not len(data.meta):
        return None
    last = data.meta.sort_values(["season", "round"]).iloc[-1]
    return {
        "season": int(last["season"]),
        "round": int(last["round"]),
        "race_id": int(last["race_id"]),
    }


def latest_qualifying(t: Tables) -> tuple[int, int] | None:
    """(season, round) of the latest event with a qualifying lap in the data."""
    raced = t.races[t.races["race_id"].isin(t.qualifying.dropna(subset=["best_s"])["race_id"])]
    if raced.empty:
        return None
    last = raced.sort_values(["season", "round"]).iloc[-1]
    return int(last["season"]), int(last["round"])


def refit_due(
    through: dict[str, int] | None, training_seasons: list[int], latest: tuple[int, int] | None
) -> bool:
    """Whether the data's latest qualifying (``latest_qualifying``) is newer than a
    Stage-1 fitted through ``through`` (a model saved before that was recorded: through
    the end of its last training season)."""
    if latest is None:
        return False
    if through is None:
        return bool(training_seasons) and latest[0] > training_seasons[-1]
    return latest > (through["season"], through["round"])


def known_before(data: StageData, first_season: int, season: int, rnd: int) -> StageData:
    """The rows of ``data`` known before round ``rnd`` of ``season``: every earlier season
    from ``first_season`` and the season's earlier rounds (their qualifying is over)."""
    s = data.meta["season"].to_numpy()
    r = data.meta["round"].to_numpy()
    return data.select((s >= first_season) & ((s < season) | ((s == season) & (r < rnd))))


@dataclass
class InSeason:
    """Stage-1 as the service holds it during a season: fitted on the seasons before it,
    then refitted before each event on every earlier event too (``f1 refresh`` refits the
    stored one when new results come in). Refitting on the season so far lowered the gap
    MAE in seven of the nine backtests 2009-2024 (the other two within 0.001; likewise
    with other bagging seeds), most under new technical rules, where a few races of the
    new cars say more than the old cars' history (docs/model-quality.md)."""

    data: StageData
    first_season: int
    cfg: Stage1Config
    first: Stage1Model
    """The model fitted before the season (an event with no earlier one in the data)."""
    _fitted: dict[int, Stage1Model] = field(default_factory=dict)

    def model(self, season: int, rnd: int) -> Stage1Model:
        """The Stage-1 for round ``rnd`` of ``season`` (fitted once, then reused)."""
        rows = known_before(self.data, self.first_season, season, rnd)
        later = int((rows.meta["season"].to_numpy() == season).sum())
        if later == 0:
            return self.first
        if later not in self._fitted:
            self._fitted[later] = fit_stage1(rows, self.cfg)
        return self._fitted[later]


STAGE1_GRID: dict[str, list[Any]] = {
    "dry_only": [False, True],
    "num_leaves": [7, 15, 31],
    "n_estimators": [200, 500],
}
STAGE2_GRID: dict[str, list[Any]] = {
    "objective": ["race_softmax", "binary"],
    "num_leaves": [2, 3, 5],
    "n_estimators": [50, 100, 200],
    "min_child_samples": [50],
}
"""Small boosters only: with ~20 winners a season, bigger ones overfit (backtests)."""
STACK_GRID = [0.0, 0.3, 0.5, 0.7, 1.0]
"""Weight of the booster against the linear conditional logit (see ``Stage2Model``)."""
TEMP_GRID = [0.8, 0.9, 1.0, 1.1, 1.25]
STAGE2_FOLDS = 3
"""Stage-2 settings are chosen on this many seasons up to the validation one (each
predicted by models fitted on the seasons before it): a season has ~20 winners, too
few to choose a temperature on."""
POLE_GRID: dict[str, list[Any]] = {"window": [20, 40, 80], "shrink": [1.0, 3.0, 10.0, 1e9]}
TAU_GRID = [0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0]


def stage2_folds(p: Protocol) -> list[int]:
    """The seasons Stage-2 is tuned on: the validation season and those before it, each
    with at least one training season before it."""
    first = max(p.valid_season - STAGE2_FOLDS + 1, p.train_from + 1)
    return list(range(first, p.valid_season + 1))


class PooledWinnerLoss:
    """Winner log loss over the races of several validation seasons, fast enough to
    scan every (weight, temperature) pair: the races' winner stages (``RankStages``,
    races with one classified winner) built once."""

    def __init__(self, meta: pd.DataFrame) -> None:
        wins = finish_ranks(meta["win"].to_numpy(float), None)
        self.stages = RankStages.of(meta["race_id"].to_numpy(), wins)

    def __call__(self, score: np.ndarray) -> float:
        return float(-np.mean(self.stages.softmax(score)[1]))


def races_of(d: StageData) -> np.ndarray:
    """Stage-2 rows' race ids (the fields whose win probabilities sum to 1)."""
    return d.meta["race_id"].to_numpy()


def places_of(d: StageData) -> np.ndarray:
    """Stage-2 rows' finishing positions (NaN: not classified), what Stage-2 learns from."""
    return d.meta["position"].to_numpy(float)


def tune_stage2(
    s2: StageData, p: Protocol, step: Step
) -> tuple[Stage2Config, list[dict[str, Any]]]:
    """Booster settings, stacking weight and temperature with the lowest winner log loss
    pooled over ``stage2_folds`` (each season predicted by models fitted before it),
    scored as served: early under new rules, with the grid lean (``apply_grid_lean``).
    The podium and points odds' ``finish_rate`` is measured on the same seasons."""
    folds = []
    depth, decay = p.rank_depth, p.rank_decay
    for v in stage2_folds(p):
        tr, va = s2.seasons(p.train_from, v - 1), s2.seasons(v, v)
        races, places = races_of(tr), places_of(tr)
        coef = np.asarray(fit_linear(tr.x, tr.y, races, ranks=places, depth=depth, decay=decay))
        lean = grid_lean(Stage2Config(grid_coef=fit_linear(tr.x, tr.y, races, GRID_TERMS)), va.x)
        folds.append((tr, va, linear_design(va.x) @ coef, lean))
    pooled_meta = pd.concat([f[1].meta for f in folds], ignore_index=True)
    pooled = PooledWinnerLoss(pooled_meta)
    lin = np.concatenate([f[2] for f in folds])
    share, grid = (np.concatenate([f[3][i] for f in folds]) for i in (0, 1))
    log: list[dict[str, Any]] = []
    best: tuple[float, Stage2Config] | None = None
    for obj, nl, ne, mc in itertools.product(*STAGE2_GRID.values()):
        cfg = Stage2Config(
            objective=obj,
            num_leaves=nl,
            n_estimators=ne,
            min_child_samples=mc,
            rank_depth=depth,
            rank_decay=decay,
        )
        raw = np.concatenate(
            [
                Stage2Model.fit(tr.x, tr.y, cfg, races_of(tr), ranks=places_of(tr)).raw_score(va.x)
                for tr, va, *_ in folds
            ]
        )
        ll, w, t = min(
            (pooled(apply_grid_lean((w * raw + (1.0 - w) * lin) / t, share, grid)), w, t)
            for w in STACK_GRID
            for t in TEMP_GRID
        )
        log.append(
            {
                "objective": obj,
                "num_leaves": nl,
                "n_estimators": ne,
                "min_child_samples": mc,
                "stack_weight": w,
                "temperature": t,
                "valid_winner_log_loss": ll,
            }
        )
        if best is None or ll < best[0]:
            best = (ll, replace(cfg, stack_weight=w, temperature=t))
        step(
            f"stage-2 {obj} leaves={nl} trees={ne}: w={w} T={t}: valid log loss {ll:.3f} "
            f"({len(folds)} seasons)"
        )
    assert best is not None
    return replace(best[1], finish_rate=finish_rate(pooled_meta)), log


def finish_rate(meta: pd.DataFrame) -> float:
    """Share of the starters in ``meta`` classified (a finishing position): how often a
    car other than the winner is, for the podium and points odds (``placings``). 1 when
    no starter has a position (the data records none: nothing to measure)."""
    classified = ~np.isnan(meta["position"].to_numpy(float))
    return float(classified.mean()) if classified.any() else 1.0


def tune_pole_taus(
    s1: StageData, cfg1: Stage1Config, folds: list[int], train_from: int
) -> tuple[float, float]:
    """The temperatures turning Stage-1's gaps into pole odds, for a field with practice
    and for one without a lap (the form-only ensemble's gaps, spread otherwise), each
    chosen on the pooled events of several validation seasons, every season forecast by
    Stage-1 as served (all its ensembles) fitted on the seasons before it: one season's
    ~22 poles chose anything from 0.15 to 0.4."""
    metas, gaps, ahead = [], [], []
    for v in folds:
        va = s1.seasons(v, v)
        m = fit_stage1(s1.seasons(train_from, v - 1), cfg1)
        gaps.append(m.predict_gap(va.x))
        ahead.append(m.predict_gap(without_practice(va.x)))
        metas.append(va.meta)
    meta = pd.concat(metas, ignore_index=True)
    groups = meta["race_id"].to_numpy()

    def best(gap: np.ndarray) -> float:
        scored = [
            (pole_metrics(meta, group_softmax(-gap / t, groups))["log_loss"], t) for t in TAU_GRID
        ]
        return min(scored)[1]

    return best(np.concatenate(gaps)), best(np.concatenate(ahead))


def tune(
    snap: FeatureSnapshot, s1: StageData, s2: StageData, p: Protocol, step: Step
) -> tuple[Stage1Config, Stage2Config, dict[str, Any]]:
    """Choose settings on the validation season(s) (models fitted on earlier seasons)."""
    tr1, va1 = (
        s1.seasons(p.train_from, p.valid_season - 1),
        s1.seasons(p.valid_season, p.valid_season),
    )
    log: dict[str, Any] = {"stage1": [], "stage2": [], "pole": []}

    best1: tuple[float, Stage1Config] | None = None
    for dry, nl, ne in itertools.product(*STAGE1_GRID.values()):
        cfg = Stage1Config(num_leaves=nl, n_estimators=ne, dry_only=dry)
        gap = fit_stage1(tr1, cfg, form=False).predict_gap(va1.x)
        mae = float(np.mean(np.abs(gap - va1.y)))
        log["stage1"].append(
            {"dry_only": dry, "num_leaves": nl, "n_estimators": ne, "valid_gap_pct_mae": mae}
        )
        if best1 is None or mae < best1[0]:
            best1 = (mae, cfg)
        step(f"stage-1 dry_only={dry} leaves={nl} trees={ne}: valid gap MAE {mae:.3f} %")
    assert best1 is not None
    cfg1 = best1[1]

    best_pole: tuple[float, PoleParams] | None = None
    for w, k in itertools.product(*POLE_GRID.values()):
        pp = PoleParams(window=w, shrink=k)
        mae = _event_pole_mae(va1.meta, pole_predictions(snap, va1.meta, pp))
        log["pole"].append({"window": w, "shrink": k, "valid_pole_mae_s": mae})
        if best_pole is None or mae < best_pole[0]:
            best_pole = (mae, pp)
    assert best_pole is not None
    step(
        f"pole lap: window={best_pole[1].window} shrink={best_pole[1].shrink}: "
        f"valid MAE {best_pole[0]:.3f} s"
    )

    tau, tau_ahead = tune_pole_taus(s1, cfg1, stage2_folds(p), p.train_from)
    cfg1 = replace(cfg1, pole=best_pole[1], pole_tau=tau, pole_tau_ahead=tau_ahead)

    cfg2, log["stage2"] = tune_stage2(s2, p, step)
    log["stage2_folds"] = stage2_folds(p)
    log["chosen"] = {
        "stage1": cfg1.__dict__ | {"pole": cfg1.pole.__dict__},
        "stage2": {k: v for k, v in cfg2.__dict__.items() if not k.startswith(("linear", "grid_"))},
    }
    return cfg1, cfg2, log


# ------------------------------------------------------------------- evaluation


def stage1_predictors(frame: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(time s, gap %) per Stage-1 predictor in a scored frame: the model, then the
    baselines (columns ``<name>:time`` and ``<name>:gap``)."""
    out = {"model": (frame["pred_time"].to_numpy(float), frame["pred_gap"].to_numpy(float))}
    for name in baselines.STAGE1_BASELINES:
        out[name] = (frame[f"{name}:time"].to_numpy(float), frame[f"{name}:gap"].to_numpy(float))
    return out


def stage2_predictors(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Win probability per Stage-2 predictor in a scored frame (``prob``, ``<name>:prob``)."""
    out = {"model": frame["prob"].to_numpy(float)}
    for name in baselines.STAGE2_BASELINES:
        out[name] = frame[f"{name}:prob"].to_numpy(float)
    return out


def per_race(t: Tables, preds: dict[str, pd.DataFrame]) -> list[dict[str, Any]]:
    """Every predictor's metrics on each race's rows (the season functions, per race)."""
    races = t.races.set_index("race_id")
    # pole = qualifying's first place: not always the fastest lap of qualifying (Q3 run on
    # race fuel in 2008-09, a wet Q3 after a dry Q2)
    first = t.qualifying[t.qualifying["position"] == 1]
    poles = dict(zip(first["race_id"], first["driver_id"].astype(str), strict=False))
    q, post, pre = preds["stage1"], preds["stage2"], preds["stage2_chained"]
    q_at = q.groupby("race_id").indices
    post_at = post.groupby("race_id").indices
    pre_at = pre.groupby("race_id").indices
    out = []
    for race_id in sorted(set(q_at) | set(post_at), key=lambda r: races.loc[r, "date"]):
        r = races.loc[race_id]
        rec: dict[str, Any] = {
            "round": int(r["round"]),
            "race_id": int(race_id),
            "grand_prix_id": str(r["grand_prix_id"]),
            "date": pd.Timestamp(r["date"]).date().isoformat(),
        }
        if race_id in q_at:
            rows = q.iloc[q_at[race_id]]
            rec["dry"] = bool(rows["dry"].iloc[0])
            fastest = str(rows.loc[rows["gap_pct"].idxmin(), "driver_id"])
            rec["pole_sitter"] = poles.get(race_id, fastest)
            rec["stage1"] = {
                k: _pick(stage1_metrics(rows, tm, gp), ("gap_pct_mae", "mae_s", "spearman"))
                for k, (tm, gp) in stage1_predictors(rows).items()
            }
        for name, frame, at in (("stage2", post, post_at), ("stage2_chained", pre, pre_at)):
            if race_id not in at:
                continue
            rows = frame.iloc[at[race_id]]
            won = rows.loc[rows["win"] == 1, "driver_id"]
            rec["winner"] = str(won.iloc[0]) if len(won) else None
            rec[name] = {
                k: _pick(stage2_metrics(rows, pb), ("winner_log_loss", "top1", "brier"))
                for k, pb in stage2_predictors(rows).items()
            }
        out.append(rec)
    return out


def _pick(m: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: m.get(k) for k in keys}


def score(preds: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Metrics of every predictor on the scored frames (the whole frame: a season, or
    one race's rows for per-race tables)."""
    f1, post_f, pre_f = preds["stage1"], preds["stage2"], preds["stage2_chained"]
    s1 = {k: stage1_metrics(f1, t, g) for k, (t, g) in stage1_predictors(f1).items()}
    post = {k: stage2_metrics(post_f, p) for k, p in stage2_predictors(post_f).items()}
    pre = {k: stage2_metrics(pre_f, p) for k, p in stage2_predictors(pre_f).items()}
    q = preds["stage1"]
    stage1: dict[str, Any] = {
        "test": s1.pop("model"),
        "pole_mae_s": _event_pole_mae(q, q["pred_pole"].to_numpy()) if len(q) else None,
    }
    stage2: dict[str, Any] = {"test": post.pop("model"), "test_chained": pre.pop("model")}
    stage1["baselines"] = {k: {"test": v} for k, v in s1.items()}
    stage2["baselines"] = {k: {"test": v, "test_chained": pre[k]} for k, v in post.items()}
    stage1["intervals"] = stage1_intervals(
        f1, {k: g for k, (_t, g) in stage1_predictors(f1).items()}
    )
    stage2["intervals"] = {
        "test": stage2_intervals(post_f, stage2_predictors(post_f)),
        "test_chained": stage2_intervals(pre_f, stage2_predictors(pre_f)),
    }
    return {"stage1": stage1, "stage2": stage2}


def score_test(
    tables: Tables,
    snap: FeatureSnapshot,
    s1: StageData,
    s2: StageData,
    p: Protocol,
    cfg1: Stage1Config,
    cfg2: Stage2Config,
    on_event: EventHook | None = None,
) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """Fit on seasons <= valid, score the test season: the model through the served
    path (pre- and post-qualifying requests; Stage-1 refitted before each event on the
    season's earlier ones, ``InSeason``, as ``f1 refresh`` refits the served one), every
    baseline on the same rows (fed the same grid). Returns the metrics and the scored rows
    (one column per predictor)."""
    fit1, te1 = s1.seasons(p.train_from, p.valid_season), s1.seasons(p.test_season, p.test_season)
    fit2, te2 = s2.seasons(p.train_from, p.valid_season), s2.seasons(p.test_season, p.test_season)
    tr1, va1 = (
        s1.seasons(p.train_from, p.valid_season - 1),
        s1.seasons(p.valid_season, p.valid_season),
    )
    tr2, va2 = (
        s2.seasons(p.train_from, p.valid_season - 1),
        s2.seasons(p.valid_season, p.valid_season),
    )
    m1 = fit_stage1(fit1, cfg1)
    m2 = Stage2Model.fit(fit2.x, fit2.y, cfg2, races_of(fit2), ranks=places_of(fit2))
    in_season = InSeason(s1.seasons(p.train_from, p.test_season), p.train_from, cfg1, m1)

    def stage1_for(ctx: EventContext) -> Stage1Model:
        return in_season.model(ctx.season, int(ctx.round or 0))

    served = served_predictions(snap, m1, m2, te1, te2, on_event, stage1_for)
    new_team = new_team_check(m1, te1)
    new_rules = new_rules_check(m1, te1)
    if cfg1.new_team_share > 0:  # the same check for the same settings fitted without it
        plain = fit_stage1(fit1, replace(cfg1, new_team_share=0.0), form=False)
        new_team["fitted_without_blanked_teams"] = new_team_check(plain, te1)

    default_pole = pole_predictions(snap, te1.meta, PoleParams())
    cols1: dict[str, np.ndarray] = {}
    for name, (bt, bg) in baselines.stage1_baselines(
        tables, fit1, tr1, va1, te1, default_pole
    ).items():
        cols1[f"{name}:time"], cols1[f"{name}:gap"] = bt, bg
    keys = ["race_id", "driver_id"]
    based = te1.meta[keys].assign(**cols1)
    q = served.stage1.merge(based, on=keys, how="left")

    b2 = baselines.Stage2Baselines.fit(fit2, tr2, va2)
    frames = {}
    for name, frame, x in (
        ("stage2", served.stage2, served.x2),
        ("stage2_chained", served.stage2_chained, served.x2_chained),
    ):
        probs = b2.predict(frame["flow_grid"].to_numpy(float), x, frame["race_id"].to_numpy())
        frames[name] = frame.assign(**{f"{k}:prob": v for k, v in probs.items()})
    podium_base = baselines.placing_by_grid(fit2, te2)
    points_base = baselines.placing_by_grid(fit2, te2, flag="points", k=10)
    base_col = te2.meta[keys].assign(podium_base=podium_base, points_base=points_base)
    frames["stage2"] = frames["stage2"].merge(base_col, on=keys, how="left")
    preds = {"stage1": q, **frames}
    evaluation = score(preds)
    preds["stage2_ahead"] = served.stage2_ahead  # a weekend ahead (scored below)
    without = None
    if m1.form_boosters:  # the same season a weekend ahead as before the form-only ensemble

        def main_only(ctx: EventContext) -> Stage1Model:
            m = stage1_for(ctx)
            return Stage1Model(replace(m.config, form_model=False), m.boosters)

        without = ahead_predictions(snap, main_only, m2, te1, te2)
    ahead1, ahead2 = before_practice_check(served, te1, b2, without)
    tau = m1.config.pole_tau
    evaluation["stage1"]["pole"] = {
        "temperature": tau,
        "temperature_ahead": m1.config.pole_tau_ahead,
        **pole_odds(q, {n: q[f"{n}:gap"].to_numpy(float) for n in baselines.STAGE1_BASELINES}, tau),
    }
    ahead = _ahead_rows(served, te1)
    evaluation["stage1"]["pole"]["before_practice"] = pole_odds(
        ahead,
        {"recent_form": ahead["form_gap"].to_numpy(float)},
        tau if m1.config.pole_tau_ahead is None else m1.config.pole_tau_ahead,
    )
    evaluation["stage1"]["before_practice"] = ahead1
    evaluation["stage2"]["before_practice"] = ahead2
    evaluation["stage2"]["rules_reset"] = rules_reset_check(
        m2,
        {
            "test": (frames["stage2"], served.x2),
            "test_chained": (frames["stage2_chained"], served.x2_chained),
        },
    )
    evaluation["stage1"]["test_rows_not_served"] = len(te1.meta) - len(q)
    evaluation["stage1"]["new_team"] = new_team
    evaluation["stage1"]["new_rules"] = new_rules
    evaluation["stage2"]["pole_win_share"] = {
        "test": pole_win_share(te2.meta),
        "fit_seasons": pole_win_share(fit2.meta),
        "by_fit_season": {
            int(season): pole_win_share(rows) for season, rows in fit2.meta.groupby("season")
        },
    }
    # the same strengths with every car classified (plain Plackett-Luce, as served before
    # the finish rate): what letting cars retire changes, reproduced by this command
    every = {
        name: dict(
            zip(
                ("podium", "points"),
                placings_over_starters(
                    f["logit"].to_numpy(float),
                    f["race_id"].to_numpy(),
                    f["driver_id"].to_numpy(),
                    1.0,
                ),
                strict=True,
            )
        )
        for name, f in frames.items()
    }
    for what, k, base in (("podium", 3, podium_base), ("points", 10, points_base)):
        col = f"{what}_prob"
        evaluation["stage2"][what] = {
            "test": placing_metrics(frames["stage2"], frames["stage2"][col].to_numpy(), what, k),
            "test_chained": placing_metrics(
                frames["stage2_chained"], frames["stage2_chained"][col].to_numpy(), what, k
            ),
            "before_practice": {  # a weekend ahead, as ``stage2.before_practice``
                "model": placing_metrics(
                    served.stage2_ahead, served.stage2_ahead[col].to_numpy(), what, k
                ),
                "baselines": {},
            },
            "baselines": {
                "grid_slot": {"test": placing_metrics(te2.meta, base, what, k)},
                "every_car_classified": {
                    which: placing_metrics(frames[name], every[name][what], what, k)
                    for which, name in (("test", "stage2"), ("test_chained", "stage2_chained"))
                },
            },
            "finish_rate": m2.config.finish_rate,
        }
    return evaluation, preds


def _ahead_rows(served: Served, te1: StageData) -> pd.DataFrame:
    """The Stage-1 rows forecast a weekend ahead, with each driver's recent qualifying gap
    (``form_gap``, the ``recent_form`` baseline)."""
    keys = ["race_id", "driver_id"]
    form = te1.meta[keys].assign(form_gap=baselines.recent_form_gap(te1))
    return form.merge(served.stage1_ahead, on=keys)


def pole_odds(frame: pd.DataFrame, gaps: dict[str, np.ndarray], tau: float) -> dict[str, Any]:
    """The served pole odds (``pole_prob``) scored beside an even chance for every car
    and each baseline's gaps (every car has one: the baselines fill their own gaps)
    turned into odds by the model's temperature ``tau``."""
    groups = frame["race_id"].to_numpy()
    n = pd.Series(groups).groupby(groups).transform("size").to_numpy(float)
    odds = {"uniform": 1.0 / n}
    for name, gap in gaps.items():
        odds[name] = group_softmax(-gap / tau, groups)
    return {
        "test": pole_metrics(frame, frame["pole_prob"].to_numpy(float)),
        "baselines": {k: {"test": pole_metrics(frame, v)} for k, v in odds.items()},
    }


def before_practice_check(
    served: Served,
    te1: StageData,
    b2: baselines.Stage2Baselines,
    without: tuple[pd.DataFrame, pd.DataFrame] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both stages a weekend ahead (the event's cars without a practice lap, as the next
    event looks while F1DB holds only the races before it), as served, beside the
    baselines fed the same: Stage-1 against each driver's recent qualifying gap (times
    from the model's pole estimate), Stage-2 (Stage-1's grid chained) against the
    Stage-2 baselines on that grid. ``without``: the same forecasts by Stage-1 without
    its form-only ensemble (``ahead_predictions``), scored as ``without_form_model``."""
    rows = _ahead_rows(served, te1)
    gap = rows["form_gap"].to_numpy(float)
    pole = rows["pred_pole"].to_numpy(float)
    stage1 = {
        "model": stage1_metrics(
            rows, rows["pred_time"].to_numpy(float), rows["pred_gap"].to_numpy(float)
        ),
        "pole_mae_s": _event_pole_mae(rows, pole) if len(rows) else None,
        "baselines": {"recent_form": stage1_metrics(rows, pole * (1.0 + gap / 100.0), gap)},
    }
    f = served.stage2_ahead
    probs = b2.predict(f["flow_grid"].to_numpy(float), served.x2_ahead, f["race_id"].to_numpy())
    stage2 = {
        "model": stage2_metrics(f, f["prob"].to_numpy(float)),
        "baselines": {k: stage2_metrics(f, v) for k, v in probs.items()},
    }
    if without is not None:
        q0, f0 = without
        stage1["without_form_model"] = stage1_metrics(
            q0, q0["pred_time"].to_numpy(float), q0["pred_gap"].to_numpy(float)
        )
        stage2["without_form_model"] = stage2_metrics(f0, f0["prob"].to_numpy(float))
    return stage1, stage2


def new_rules_check(model: Stage1Model, data: StageData) -> dict[str, Any]:
    """Stage-1 at the first race under new technical rules: the cars with practice as
    served (the practice-only ensemble) and by the main ensemble alone, form read as it
    is (gap MAE %, Spearman). ``rows`` 0 when the season has no such race."""
    rows = first_under_new_rules(data.x) & ~no_practice(data.x)
    if not (model.practice_boosters and rows.any()):
        return {"rows": 0}
    main = Stage1Model(
        replace(model.config, form_model=False, practice_model=False), model.boosters
    )
    meta, x = data.meta[rows], data.x[rows]
    return {
        "rows": int(rows.sum()),
        "rounds": sorted(int(r) for r in meta["round"].unique()),
        "served": gap_and_spearman(meta, model.predict_gap(x)),
        "main_ensemble": gap_and_spearman(meta, main.predict_gap(x)),
    }


def new_team_check(model: Stage1Model, data: StageData) -> dict[str, Any]:
    """Stage-1 for teams without history: every row's team form blanked, as serving
    leaves a new entrant's, against the same rows as they are (gap MAE %, Spearman, and
    how far the blanking moves the predicted gaps on average). ``score_test`` asks it of
    the Stage-1 fitted before the season (as served at the season's first event, when a
    new team is new), beside the same settings fitted without blanking."""
    gap = model.predict_gap(data.x)
    blank = model.predict_gap(without_team_form(data.x))
    return {
        "as_they_are": gap_and_spearman(data.meta, gap),
        "without_team_form": gap_and_spearman(data.meta, blank),
        "mean_shift_pct": float(np.mean(blank - gap)) if len(gap) else None,
    }


def rules_reset_check(
    model: Stage2Model, scored: dict[str, tuple[pd.DataFrame, np.ndarray]]
) -> dict[str, Any]:
    """Stage-2 on the races it leans on the grid for (early under new technical rules):
    per mode, those races scored as served, as the same model without the lean, and by
    the logistic on the same grid. ``races`` 0 when the season has none."""
    plain = Stage2Model(replace(model.config, reset_weight=0.0), model.booster)
    out: dict[str, Any] = {
        "reset_weight": model.config.reset_weight,
        "reset_races": model.config.reset_races,
    }
    for name, (frame, x) in scored.items():
        race = frame["race_id"].to_numpy()
        rows = np.isin(race, np.unique(race[grid_lean(model.config, x)[0] > 0]))
        f = frame[rows]
        if not len(f):
            out[name] = {"races": 0}
            continue
        g = race[rows]
        out[name] = {
            "races": len(np.unique(g)),
            "rounds": sorted(int(r) for r in f["round"].unique()),
            "model": stage2_metrics(f, f["prob"].to_numpy(float)),
            "without_reset": stage2_metrics(f, group_softmax(plain.logit(x[rows]), g)),
            "logistic_grid": stage2_metrics(f, f["logistic_grid:prob"].to_numpy(float)),
        }
    return out


@dataclass
class Scored:
    """The shared protocol's outcome: chosen settings, tuning log, test-season metrics
    and scored rows."""

    cfg1: Stage1Config
    cfg2: Stage2Config
    tuning: dict[str, Any]
    evaluation: dict[str, Any]
    predictions: dict[str, pd.DataFrame]


def tune_and_score(
    tables: Tables,
    snap: FeatureSnapshot,
    s1: StageData,
    s2: StageData,
    p: Protocol,
    step: Step,
    on_event: EventHook | None = None,
) -> Scored:
    """The protocol ``f1 train``/``f1 evaluate`` and ``f1 backtest`` share: tune on the
    validation season (models fitted on the seasons before it), refit on seasons <=
    validation, score the test season through the served path beside the baselines."""
    check_seasons(s1, s2, p)
    cfg1, cfg2, tuning = tune(snap, s1, s2, p, step)
    evaluation, preds = score_test(tables, snap, s1, s2, p, cfg1, cfg2, on_event)
    evaluation["protocol"] = {
        "train_seasons": [p.train_from, p.valid_season - 1],
        "valid_season": p.valid_season,
        "test_season": p.test_season,
        "test_fit_seasons": [p.train_from, p.valid_season],
        "baseline_seasons": {
            "early_stopped": [p.train_from, p.valid_season - 1],
            "others": [p.train_from, p.valid_season],
        },
    }
    return Scored(cfg1, cfg2, tuning, evaluation, preds)


# --------------------------------------------------------------------- pipeline


def run(tables: Tables, protocol: Protocol | None = None, step: Step | None = None) -> TrainResult:
    """Snapshot, datasets, tuning, test evaluation, final refit. Pure: stores nothing."""
    p = protocol or Protocol()
    say = step or (lambda _msg: None)
    t0 = time.perf_counter()
    snap = FeatureSnapshot.build(tables)
    say("feature snapshot built")
    s1 = stage1_data(snap, tables, p.train_from)
    s2 = stage2_data(snap, tables, p.train_from)
    check_seasons(s1, s2, p)
    say(f"datasets: stage-1 {len(s1.y)} rows, stage-2 {len(s2.y)} rows")
    sc = tune_and_score(tables, snap, s1, s2, p, say)
    say("test season scored")
    full1 = s1.select(s1.meta["season"].to_numpy() >= p.train_from)  # all known (InSeason)
    full2 = s2.seasons(p.train_from, p.test_season)
    stage1 = fit_stage1(full1, sc.cfg1)
    stage2 = Stage2Model.fit(full2.x, full2.y, sc.cfg2, races_of(full2), ranks=places_of(full2))
    say("final models refitted on all seasons")
    evaluation = sc.evaluation
    evaluation["protocol"] |= {
        "serving_fit_seasons": [p.train_from, p.test_season],
        "rows": {"stage1": len(full1.y), "stage2": len(full2.y)},
    }
    evaluation["tuning"] = sc.tuning
    evaluation["races"] = per_race(tables, sc.predictions)
    secs = time.perf_counter() - t0
    evaluation["training_seconds"] = round(secs, 1)
    return TrainResult(snap, stage1, stage2, evaluation, sc.predictions, last_event(full1))
