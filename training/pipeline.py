"""Tune on the validation season, score the test season beside the baselines, refit for serving."""

from __future__ import annotations

import itertools
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
from pipelines.serving.orchestrator import TwoStage
from training import baselines
from training.datasets import StageData, stage1_data, stage2_data
from training.evaluate import KEYS, EventHook, Served, placings_over_starters, served_predictions
from training.metrics import (
    forecast_metrics,
    gap_and_spearman,
    placing_metrics,
    pole_metrics,
    pole_win_share,
    stage1_metrics,
    stage2_metrics,
    win_metrics,
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
    rank_depth: int = RANK_DEPTH  # Stage-2's training places (``Stage2Config``)
    rank_decay: float = RANK_DECAY

    @classmethod
    def of(cls, s: Settings) -> Protocol:
        """The settings' seasons, and Stage-2's training places (``stage2_places``)."""
        depth, decay = stage2_places(s)
        return cls(s.train_from, s.valid_season, s.test_season, depth, decay)


@dataclass
class Split:
    """One stage's rows as the protocol cuts them: ``fit`` through the validation season (the
    test season's models), ``train`` before it (the tuning candidates)."""

    fit: StageData
    train: StageData
    valid: StageData
    test: StageData

    @classmethod
    def of(cls, d: StageData, p: Protocol) -> Split:
        v, t, first = p.valid_season, p.test_season, p.train_from
        return cls(d.seasons(first, v), d.seasons(first, v - 1), d.seasons(v, v), d.seasons(t, t))


@dataclass
class TrainResult:
    snapshot: FeatureSnapshot
    stage1: Stage1Model
    stage2: Stage2Model
    evaluation: dict[str, Any]
    predictions: dict[str, pd.DataFrame] = field(default_factory=dict)
    stage1_through: dict[str, int] | None = None  # Stage-1's latest event (``last_event``)


@dataclass
class RunData:
    """What a run reads: the tables, their feature snapshot and both stages' rows."""

    tables: Tables
    snap: FeatureSnapshot
    s1: StageData
    s2: StageData

    @classmethod
    def build(cls, tables: Tables, first_season: int) -> RunData:
        snap = FeatureSnapshot.build(tables)
        s1, s2 = stage1_data(snap, tables, first_season), stage2_data(snap, tables, first_season)
        return cls(tables, snap, s1, s2)


Step = Callable[[str], None]
MODES = {"test": "stage2", "test_chained": "stage2_chained"}  # Stage-2 after, before qualifying
PLACES = {"podium": 3, "points": 10}  # the placings scored: the top k


def check_seasons(s1: StageData, s2: StageData, p: Protocol) -> None:
    """Enough seasons with results: >= 2 to train on, the validation and the test one."""
    have1, have2 = set(s1.meta["season"]), set(s2.meta["season"])
    train = sorted(s for s in have1 & have2 if s < p.valid_season)
    missing = [s for s in (p.valid_season, p.test_season) if s not in have1 or s not in have2]
    if len(train) < 2 or missing:
        raise TrainingError(
            f"too few seasons to train: need >= 2 seasons from {p.train_from} before "
            f"{p.valid_season} plus {p.valid_season} (validation) and {p.test_season} (test) "
            f"with qualifying and race results; found training seasons {train or 'none'}"
            + (f", missing {missing}" if missing else "")
        )


def pole_predictions(snap: FeatureSnapshot, meta: pd.DataFrame, params: PoleParams) -> np.ndarray:
    """Estimated pole lap for each row's event (history strictly before the event)."""
    out = np.empty(len(meta))
    for _, idx in meta.groupby("race_id").indices.items():
        r = meta.iloc[idx[0]]
        out[idx] = estimate_pole(
            snap.pole_arrays(int(r["day"])),
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


def fit_stage1(data: StageData, cfg: Stage1Config, form: bool = True) -> Stage1Model:
    """Fit Stage-1 (``form`` False: no form-only ensemble, as tuning scores it)."""
    if cfg.dry_only:
        data = data.select(data.meta["dry"].to_numpy(bool))
    teams = data.meta["race_id"].astype(str) + "/" + data.meta["constructor_id"].astype(str)
    return Stage1Model.fit(data.x, data.y, cfg, teams.to_numpy(), form=form)


def fit_stage2(data: StageData, cfg: Stage2Config) -> Stage2Model:
    """Fit Stage-2 on the races' finishing places (NaN: not classified)."""
    races, places = data.meta["race_id"].to_numpy(), data.meta["position"].to_numpy(float)
    return Stage2Model.fit(data.x, data.y, cfg, races, ranks=places)


def last_event(data: StageData) -> dict[str, int] | None:
    """The latest event among ``data``'s rows: season, round and race id (None if none)."""
    if not len(data.meta):
        return None
    last = data.meta.sort_values(["season", "round"]).iloc[-1]
    return {k: int(last[k]) for k in ("season", "round", "race_id")}


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
    """Whether the latest qualifying is newer than Stage-1's ``through`` (None: its seasons)."""
    if latest is None:
        return False
    if through is None:
        return bool(training_seasons) and latest[0] > training_seasons[-1]
    return latest > (through["season"], through["round"])


def known_before(data: StageData, first_season: int, season: int, rnd: int) -> StageData:
    """The rows of ``data`` from ``first_season`` known before round ``rnd`` of ``season``."""
    s, r = data.meta["season"].to_numpy(), data.meta["round"].to_numpy()
    return data.select((s >= first_season) & ((s < season) | ((s == season) & (r < rnd))))


@dataclass
class InSeason:
    """Stage-1 as served in a season: refitted before each event on every earlier one (``f1
    refresh``); ``first``: the model fitted before the season."""

    data: StageData
    first_season: int
    cfg: Stage1Config
    first: Stage1Model
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

    def for_event(self, ctx: EventContext) -> Stage1Model:
        return self.model(ctx.season, int(ctx.round or 0))


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
"""Small boosters only: a season has ~20 winners, and bigger ones overfit."""
STACK_GRID = [0.0, 0.3, 0.5, 0.7, 1.0]  # the booster's weight against the linear logit
TEMP_GRID = [0.8, 0.9, 1.0, 1.1, 1.25]
STAGE2_FOLDS = 3  # seasons Stage-2 is tuned on: one season's ~20 winners are too few
POLE_GRID: dict[str, list[Any]] = {"window": [20, 40, 80], "shrink": [1.0, 3.0, 10.0, 1e9]}
TAU_GRID = [0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0]


def stage2_folds(p: Protocol) -> list[int]:
    """The seasons Stage-2 is tuned on: the validation one and those before it."""
    first = max(p.valid_season - STAGE2_FOLDS + 1, p.train_from + 1)
    return list(range(first, p.valid_season + 1))


def pooled_winner_loss(meta: pd.DataFrame) -> Callable[[np.ndarray], float]:
    """Winner log loss over the races of several seasons, the winner stages built once."""
    wins = finish_ranks(meta["win"].to_numpy(float), None)
    stages = RankStages.of(meta["race_id"].to_numpy(), wins)
    return lambda score: float(-np.mean(stages.softmax(score)[1]))


def _candidates(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of a tuning grid's values, as keyword arguments."""
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def _named(kw: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in kw.items())


def tune_stage1(
    train: StageData, valid: StageData, step: Step
) -> tuple[Stage1Config, list[dict[str, Any]]]:
    """The booster settings with the lowest validation gap MAE (main ensemble alone)."""
    log, scored = [], []
    for kw in _candidates(STAGE1_GRID):
        cfg = Stage1Config(**kw)
        gap = fit_stage1(train, cfg, form=False).predict_gap(valid.x)
        mae = float(np.mean(np.abs(gap - valid.y)))
        log.append(kw | {"valid_gap_pct_mae": mae})
        scored.append((mae, cfg))
        step(f"stage-1 {_named(kw)}: valid gap MAE {mae:.3f} %")
    return min(scored, key=lambda s: s[0])[1], log


def tune_pole(
    snap: FeatureSnapshot, valid: pd.DataFrame, step: Step
) -> tuple[PoleParams, list[dict[str, Any]]]:
    """The pole-lap estimate's settings with the lowest validation MAE."""
    log, scored = [], []
    for kw in _candidates(POLE_GRID):
        pp = PoleParams(**kw)
        mae = _event_pole_mae(valid, pole_predictions(snap, valid, pp))
        log.append(kw | {"valid_pole_mae_s": mae})
        scored.append((mae, pp))
    mae, best = min(scored, key=lambda s: s[0])
    step(f"pole lap: window={best.window} shrink={best.shrink}: valid MAE {mae:.3f} s")
    return best, log


def tune_stage2(
    s2: StageData, p: Protocol, step: Step
) -> tuple[Stage2Config, list[dict[str, Any]]]:
    """Booster settings, stacking weight and temperature with the lowest winner log loss
    over ``stage2_folds`` as served; ``finish_rate`` measured there."""
    folds = []
    depth, decay = p.rank_depth, p.rank_decay
    for v in stage2_folds(p):
        tr, va = s2.seasons(p.train_from, v - 1), s2.seasons(v, v)
        races, places = tr.meta["race_id"].to_numpy(), tr.meta["position"].to_numpy(float)
        coef = np.asarray(fit_linear(tr.x, tr.y, races, ranks=places, depth=depth, decay=decay))
        lean = grid_lean(Stage2Config(grid_coef=fit_linear(tr.x, tr.y, races, GRID_TERMS)), va.x)
        folds.append((tr, va, linear_design(va.x) @ coef, lean))
    pooled_meta = pd.concat([f[1].meta for f in folds], ignore_index=True)
    pooled = pooled_winner_loss(pooled_meta)
    lin = np.concatenate([f[2] for f in folds])
    share, grid = (np.concatenate([f[3][i] for f in folds]) for i in (0, 1))
    log, scored = [], []
    for kw in _candidates(STAGE2_GRID):
        cfg = Stage2Config(**kw, rank_depth=depth, rank_decay=decay)
        raw = np.concatenate([fit_stage2(tr, cfg).raw_score(va.x) for tr, va, *_ in folds])
        ll, w, t = min(
            (pooled(apply_grid_lean((w * raw + (1.0 - w) * lin) / t, share, grid)), w, t)
            for w in STACK_GRID
            for t in TEMP_GRID
        )
        log.append(kw | {"stack_weight": w, "temperature": t, "valid_winner_log_loss": ll})
        scored.append((ll, replace(cfg, stack_weight=w, temperature=t)))
        step(f"stage-2 {_named(kw)}: w={w} T={t}: valid log loss {ll:.3f} ({len(folds)} seasons)")
    best = min(scored, key=lambda s: s[0])[1]
    return replace(best, finish_rate=finish_rate(pooled_meta)), log


def finish_rate(meta: pd.DataFrame) -> float:
    """Share of the starters classified, for the placings (1 when no position is recorded)."""
    classified = ~np.isnan(meta["position"].to_numpy(float))
    return float(classified.mean()) if classified.any() else 1.0


def tune_pole_taus(
    s1: StageData, cfg1: Stage1Config, folds: list[int], train_from: int
) -> tuple[float, float]:
    """The temperatures turning Stage-1's gaps into pole odds, with practice and without."""
    metas, gaps, ahead = [], [], []
    for v in folds:
        va = s1.seasons(v, v)
        m = fit_stage1(s1.seasons(train_from, v - 1), cfg1)
        gaps.append(m.predict_gap(va.x))
        ahead.append(m.predict_gap(without_practice(va.x)))
        metas.append(va.meta)
    meta = pd.concat(metas, ignore_index=True)
    groups = meta["race_id"].to_numpy()

    def best(gap: np.ndarray) -> float:  # ties: the lowest temperature
        return min(
            TAU_GRID, key=lambda t: pole_metrics(meta, group_softmax(-gap / t, groups))["log_loss"]
        )

    return best(np.concatenate(gaps)), best(np.concatenate(ahead))


def tune(d: RunData, p: Protocol, step: Step) -> tuple[Stage1Config, Stage2Config, dict[str, Any]]:
    """Choose settings on the validation season(s) (models fitted on earlier seasons)."""
    d1 = Split.of(d.s1, p)
    log: dict[str, Any] = {"stage1": [], "stage2": [], "pole": []}
    cfg1, log["stage1"] = tune_stage1(d1.train, d1.valid, step)
    pole, log["pole"] = tune_pole(d.snap, d1.valid.meta, step)
    tau, tau_ahead = tune_pole_taus(d.s1, cfg1, stage2_folds(p), p.train_from)
    cfg1 = replace(cfg1, pole=pole, pole_tau=tau, pole_tau_ahead=tau_ahead)
    cfg2, log["stage2"] = tune_stage2(d.s2, p, step)
    log["stage2_folds"] = stage2_folds(p)
    log["chosen"] = {
        "stage1": cfg1.__dict__ | {"pole": cfg1.pole.__dict__},
        "stage2": {k: v for k, v in cfg2.__dict__.items() if not k.startswith(("linear", "grid_"))},
    }
    return cfg1, cfg2, log


def stage1_predictors(frame: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(time s, gap %) per Stage-1 predictor in a scored frame: the model, then baselines."""
    cols = [("model", "pred_time", "pred_gap")]
    cols += [(n, f"{n}:time", f"{n}:gap") for n in baselines.STAGE1_BASELINES]
    return {n: (frame[t].to_numpy(float), frame[g].to_numpy(float)) for n, t, g in cols}


def stage2_predictors(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Win probability per Stage-2 predictor in a scored frame (``prob``, ``<name>:prob``)."""
    cols = {"model": "prob"} | {n: f"{n}:prob" for n in baselines.STAGE2_BASELINES}
    return {n: frame[c].to_numpy(float) for n, c in cols.items()}


def per_race(t: Tables, preds: dict[str, pd.DataFrame]) -> list[dict[str, Any]]:
    """Every predictor's metrics on each race's rows (the season functions, per race)."""
    races = t.races.set_index("race_id")
    # pole = qualifying's first place: not always the fastest lap of qualifying (Q3 run on
    # race fuel in 2008-09, a wet Q3 after a dry Q2)
    first = t.qualifying[t.qualifying["position"] == 1]
    poles = dict(zip(first["race_id"], first["driver_id"].astype(str), strict=False))
    at = {k: preds[k].groupby("race_id").indices for k in ("stage1", "stage2", "stage2_chained")}
    out = []
    ids = sorted(set(at["stage1"]) | set(at["stage2"]), key=lambda r: races.loc[r, "date"])
    for race_id in ids:
        r = races.loc[race_id]
        rec: dict[str, Any] = {
            "round": int(r["round"]),
            "race_id": int(race_id),
            "grand_prix_id": str(r["grand_prix_id"]),
            "date": pd.Timestamp(r["date"]).date().isoformat(),
        }
        if race_id in at["stage1"]:
            rows = preds["stage1"].iloc[at["stage1"][race_id]]
            rec["dry"] = bool(rows["dry"].iloc[0])
            fastest = str(rows.loc[rows["gap_pct"].idxmin(), "driver_id"])
            rec["pole_sitter"] = poles.get(race_id, fastest)
            rec["stage1"] = {
                k: _pick(stage1_metrics(rows, tm, gp), ("gap_pct_mae", "mae_s", "spearman"))
                for k, (tm, gp) in stage1_predictors(rows).items()
            }
        for name in ("stage2", "stage2_chained"):
            if race_id in at[name]:
                rows = preds[name].iloc[at[name][race_id]]
                won = rows.loc[rows["win"] == 1, "driver_id"]
                rec["winner"] = str(won.iloc[0]) if len(won) else None
                rec[name] = {
                    k: _pick(stage2_metrics(rows, pb), ("winner_log_loss", "top1", "brier"))
                    for k, pb in stage2_predictors(rows).items()
                }
        out.append(rec)
    return out


def _pick(m: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: m[k] for k in keys}


def _win_scores(frame: pd.DataFrame) -> tuple[dict[str, Any], dict[str, Any]]:
    """``stage2_metrics`` of the model and of each baseline in a scored frame."""
    scores = {k: stage2_metrics(frame, p) for k, p in stage2_predictors(frame).items()}
    return scores.pop("model"), scores


def score(preds: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Metrics and intervals of every predictor on the scored frames."""
    f1, p1 = preds["stage1"], stage1_predictors(preds["stage1"])
    s1 = {k: stage1_metrics(f1, t, g) for k, (t, g) in p1.items()}
    wins = {m: _win_scores(preds[n]) for m, n in MODES.items()}
    stage1 = {
        "test": s1.pop("model"),
        "pole_mae_s": _event_pole_mae(f1, f1["pred_pole"].to_numpy()) if len(f1) else None,
        "baselines": {k: {"test": v} for k, v in s1.items()},
        "intervals": stage1_intervals(f1, {k: g for k, (_t, g) in p1.items()}),
    }
    stage2 = {
        **{m: model for m, (model, _base) in wins.items()},
        "baselines": {k: {m: base[k] for m, (_, base) in wins.items()} for k in wins["test"][1]},
        "intervals": {
            m: stage2_intervals(preds[n], stage2_predictors(preds[n])) for m, n in MODES.items()
        },
    }
    return {"stage1": stage1, "stage2": stage2}


def score_test(
    d: RunData,
    p: Protocol,
    cfg1: Stage1Config,
    cfg2: Stage2Config,
    on_event: EventHook | None = None,
) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """Fit on seasons <= valid, score the test season beside the baselines: metrics and rows."""
    d1, d2 = Split.of(d.s1, p), Split.of(d.s2, p)
    m1, m2 = fit_stage1(d1.fit, cfg1), fit_stage2(d2.fit, cfg2)
    in_season = InSeason(d.s1.seasons(p.train_from, p.test_season), p.train_from, cfg1, m1)

    def flow_for(ctx: EventContext) -> TwoStage:
        return TwoStage.local(d.snap, in_season.for_event(ctx), m2)

    served = served_predictions(d.snap, flow_for, d1.test, d2.test, cfg2.finish_rate, on_event)
    b2 = baselines.Stage2Baselines.fit(d2.fit, d2.train, d2.valid)
    slot = {w: baselines.placing_by_grid(d2.fit, d2.test, flag=w, k=k) for w, k in PLACES.items()}
    t = HeldOutSeason(d.snap, d1, d2, in_season, m2, served, b2, slot)
    preds = {"stage1": t.stage1_rows(d.tables), **t.stage2_rows()}
    evaluation = score(preds)
    without1, without2 = t.without_form_model()
    evaluation["stage1"] |= t.stage1_checks(preds["stage1"], without1)
    evaluation["stage2"] |= t.stage2_checks(preds, without2) | t.placings(preds)
    return evaluation, preds


@dataclass
class HeldOutSeason:
    """The test season's models, what the served flow said, and the baselines."""

    snap: FeatureSnapshot
    d1: Split
    d2: Split
    in_season: InSeason
    m2: Stage2Model
    served: Served
    b2: baselines.Stage2Baselines
    grid_slot: dict[str, np.ndarray]  # each grid slot's podium (points) rate, a baseline

    def stage1_rows(self, tables: Tables) -> pd.DataFrame:
        """The served Stage-1 rows with each baseline's ``<name>:time`` and ``<name>:gap``."""
        d1 = self.d1
        pole = pole_predictions(self.snap, d1.test.meta, PoleParams())
        fitted = baselines.stage1_baselines(tables, d1.fit, d1.train, d1.valid, d1.test, pole)
        cols = {f"{n}:{c}": v for n, (t, g) in fitted.items() for c, v in (("time", t), ("gap", g))}
        return self.served.stage1.merge(d1.test.meta[KEYS].assign(**cols), on=KEYS, how="left")

    def stage2_rows(self) -> dict[str, pd.DataFrame]:
        """The served Stage-2 rows of each mode with each baseline's ``<name>:prob``."""
        frames = {}
        for name, frame in self.served.race.items():
            grid, races = frame["flow_grid"].to_numpy(float), frame["race_id"].to_numpy()
            probs = self.b2.predict(grid, self.served.x2[name], races)
            frames[name] = frame.assign(**{f"{k}:prob": v for k, v in probs.items()})
        slots = self.d2.test.meta[KEYS].assign(
            **{f"{k}_base": v for k, v in self.grid_slot.items()}
        )
        frames["stage2"] = frames["stage2"].merge(slots, on=KEYS, how="left")
        return frames

    def without_form_model(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The season a weekend ahead by Stage-1 without its form-only ensemble."""

        def main_only(ctx: EventContext) -> TwoStage:
            m = self.in_season.for_event(ctx)
            m1 = Stage1Model(replace(m.config, form_model=False), m.boosters)
            return TwoStage.local(self.snap, m1, self.m2)

        finish = self.m2.config.finish_rate
        sv = served_predictions(self.snap, main_only, self.d1.test, self.d2.test, finish)
        return sv.stage1_ahead, sv.race["stage2_ahead"]

    def stage1_checks(self, q: pd.DataFrame, without: pd.DataFrame) -> dict[str, Any]:
        """The pole odds, a weekend ahead, the unserved rows, a new team and new rules."""
        m1, test, cfg = self.in_season.first, self.d1.test, self.in_season.first.config
        tau, tau_ahead = cfg.pole_tau, cfg.pole_tau_ahead
        gaps = {n: q[f"{n}:gap"].to_numpy(float) for n in baselines.STAGE1_BASELINES}
        pole = {"temperature": tau, "temperature_ahead": tau_ahead, **pole_odds(q, gaps, tau)}
        # the rows forecast a weekend ahead, with the recent_form baseline's gaps
        form = test.meta[KEYS].assign(form_gap=baselines.recent_form_gap(test))
        ahead = form.merge(self.served.stage1_ahead, on=KEYS)
        gap, pole_s = ahead["form_gap"].to_numpy(float), ahead["pred_pole"].to_numpy(float)
        pole["before_practice"] = pole_odds(
            ahead, {"recent_form": gap}, tau if tau_ahead is None else tau_ahead
        )
        new_team = new_team_check(m1, test)
        if cfg.new_team_share > 0:  # the same check for the same settings fitted without it
            plain = fit_stage1(self.d1.fit, replace(cfg, new_team_share=0.0), form=False)
            new_team["fitted_without_blanked_teams"] = new_team_check(plain, test)
        return {
            "pole": pole,
            "before_practice": {  # beside recent_form, and without the form-only ensemble
                "model": forecast_metrics(ahead),
                "pole_mae_s": _event_pole_mae(ahead, pole_s) if len(ahead) else None,
                "baselines": {"recent_form": stage1_metrics(ahead, pole_s * (1 + gap / 100), gap)},
                "without_form_model": forecast_metrics(without),
            },
            "test_rows_not_served": len(test.meta) - len(q),
            "new_team": new_team,
            "new_rules": new_rules_check(m1, test),
        }

    def stage2_checks(
        self, preds: dict[str, pd.DataFrame], without: pd.DataFrame
    ) -> dict[str, Any]:
        """A weekend ahead, the races under new rules, and the pole-sitter's wins."""
        model, base = _win_scores(preds["stage2_ahead"])
        ahead = {"model": model, "baselines": base, "without_form_model": win_metrics(without)}
        x2, fit, test = self.served.x2, self.d2.fit.meta, self.d2.test.meta
        modes = {m: (preds[n], x2[n]) for m, n in MODES.items()}
        return {
            "before_practice": ahead,
            "rules_reset": rules_reset_check(self.m2, modes),
            "pole_win_share": {
                "test": pole_win_share(test),
                "fit_seasons": pole_win_share(fit),
                "by_fit_season": {int(s): pole_win_share(r) for s, r in fit.groupby("season")},
            },
        }

    def placings(self, preds: dict[str, pd.DataFrame]) -> dict[str, Any]:
        """The podium and points odds beside the grid-slot rates and every car classified."""
        every = {}
        for name in MODES.values():
            f = preds[name]
            logit, races = f["logit"].to_numpy(float), f["race_id"].to_numpy()
            every[name] = placings_over_starters(logit, races, f["driver_id"].to_numpy(), 1.0)
        out = {}
        for at, (what, k) in enumerate(PLACES.items()):
            slot_rate = placing_metrics(self.d2.test.meta, self.grid_slot[what], what, k)
            out[what] = {
                **{mode: _placed(preds[name], what, k) for mode, name in MODES.items()},
                "before_practice": {
                    "model": _placed(preds["stage2_ahead"], what, k),
                    "baselines": {},
                },
                "baselines": {
                    "grid_slot": {"test": slot_rate},
                    "every_car_classified": {
                        mode: placing_metrics(preds[name], every[name][at], what, k)
                        for mode, name in MODES.items()
                    },
                },
                "finish_rate": self.m2.config.finish_rate,
            }
        return out


def _placed(frame: pd.DataFrame, what: str, k: int) -> dict[str, Any]:
    """``placing_metrics`` of a scored frame's own ``<what>_prob``."""
    return placing_metrics(frame, frame[f"{what}_prob"].to_numpy(), what, k)


def pole_odds(frame: pd.DataFrame, gaps: dict[str, np.ndarray], tau: float) -> dict[str, Any]:
    """The served pole odds beside an even chance and each baseline's gaps at ``tau``."""
    groups = frame["race_id"].to_numpy()
    n = pd.Series(groups).groupby(groups).transform("size").to_numpy(float)
    odds = {"uniform": 1.0 / n} | {k: group_softmax(-g / tau, groups) for k, g in gaps.items()}
    return {
        "test": pole_metrics(frame, frame["pole_prob"].to_numpy(float)),
        "baselines": {k: {"test": pole_metrics(frame, v)} for k, v in odds.items()},
    }


def new_rules_check(model: Stage1Model, data: StageData) -> dict[str, Any]:
    """Stage-1 at the first race under new rules: as served and by the main ensemble."""
    rows = first_under_new_rules(data.x) & ~no_practice(data.x)
    if not (model.practice_boosters and rows.any()):
        return {"rows": 0}
    cfg = replace(model.config, form_model=False, practice_model=False)
    main = Stage1Model(cfg, model.boosters)
    meta, x = data.meta[rows], data.x[rows]
    return {
        "rows": int(rows.sum()),
        "rounds": sorted(int(r) for r in meta["round"].unique()),
        "served": gap_and_spearman(meta, model.predict_gap(x)),
        "main_ensemble": gap_and_spearman(meta, main.predict_gap(x)),
    }


def new_team_check(model: Stage1Model, data: StageData) -> dict[str, Any]:
    """Stage-1 with every row's team form blanked (a new entrant), against the rows as they are."""
    gap, blank = model.predict_gap(data.x), model.predict_gap(without_team_form(data.x))
    return {
        "as_they_are": gap_and_spearman(data.meta, gap),
        "without_team_form": gap_and_spearman(data.meta, blank),
        "mean_shift_pct": float(np.mean(blank - gap)) if len(gap) else None,
    }


def rules_reset_check(
    model: Stage2Model, scored: dict[str, tuple[pd.DataFrame, np.ndarray]]
) -> dict[str, Any]:
    """Stage-2 on the races it leans on the grid for: as served, without the lean, by logistic."""
    cfg = model.config
    plain = Stage2Model(replace(cfg, reset_weight=0.0), model.booster)
    out: dict[str, Any] = {"reset_weight": cfg.reset_weight, "reset_races": cfg.reset_races}
    for name, (frame, x) in scored.items():
        race = frame["race_id"].to_numpy()
        rows = np.isin(race, np.unique(race[grid_lean(cfg, x)[0] > 0]))
        f = frame[rows]
        if not len(f):
            out[name] = {"races": 0}
            continue
        g = race[rows]
        out[name] = {
            "races": len(np.unique(g)),
            "rounds": sorted(int(r) for r in f["round"].unique()),
            "model": win_metrics(f),
            "without_reset": stage2_metrics(f, group_softmax(plain.logit(x[rows]), g)),
            "logistic_grid": stage2_metrics(f, f["logistic_grid:prob"].to_numpy(float)),
        }
    return out


@dataclass
class Scored:
    """The shared protocol's outcome: chosen settings, evaluation and scored rows."""

    cfg1: Stage1Config
    cfg2: Stage2Config
    evaluation: dict[str, Any]
    predictions: dict[str, pd.DataFrame]


def tune_and_score(
    d: RunData, p: Protocol, step: Step, on_event: EventHook | None = None
) -> Scored:
    """Tune, refit through the validation season, score the test season beside the baselines."""
    check_seasons(d.s1, d.s2, p)
    cfg1, cfg2, tuning = tune(d, p, step)
    evaluation, preds = score_test(d, p, cfg1, cfg2, on_event)
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
    evaluation["tuning"] = tuning
    evaluation["races"] = per_race(d.tables, preds)
    return Scored(cfg1, cfg2, evaluation, preds)


def run(tables: Tables, protocol: Protocol | None = None, step: Step | None = None) -> TrainResult:
    """Snapshot, datasets, tuning, test evaluation, final refit. Pure: stores nothing."""
    p = protocol or Protocol()
    say = step or (lambda _msg: None)
    d = RunData.build(tables, p.train_from)
    say(f"features and datasets: stage-1 {len(d.s1.y)} rows, stage-2 {len(d.s2.y)} rows")
    sc = tune_and_score(d, p, say)
    say("test season scored")
    full1 = d.s1.select(d.s1.meta["season"].to_numpy() >= p.train_from)  # all known (InSeason)
    full2 = d.s2.seasons(p.train_from, p.test_season)
    stage1, stage2 = fit_stage1(full1, sc.cfg1), fit_stage2(full2, sc.cfg2)
    say("final models refitted on all seasons")
    sc.evaluation["protocol"] |= {
        "serving_fit_seasons": [p.train_from, p.test_season],
        "rows": {"stage1": len(full1.y), "stage2": len(full2.y)},
    }
    return TrainResult(d.snap, stage1, stage2, sc.evaluation, sc.predictions, last_event(full1))
