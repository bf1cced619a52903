"""The baselines of NOTES.md: their recipe (parameters, seasons, features) and point in time."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipelines.f1db.parse import Tables
from pipelines.features.spec import STAGE2
from tests.fakes import copy_tables, write_f1db_tree
from training import baselines
from training.baselines import (
    QUICK_FEATURES,
    QUICK_LGBM_PARAMS,
    Stage2Baselines,
    quick_features,
)
from training.datasets import StageData


def test_quick_lgbm_is_the_recipe_of_the_notes() -> None:
    """NOTES.md: objective l1, learning_rate 0.03, num_leaves 15, min_data_in_leaf 40,
    feature_fraction 0.8, bagging 0.8 every iteration, lambda_l2 1, early stopping 200."""
    p = QUICK_LGBM_PARAMS
    assert p["objective"] == "l1"
    assert p["learning_rate"] == 0.03
    assert p["num_leaves"] == 15
    assert p["min_data_in_leaf"] == 40
    assert p["feature_fraction"] == 0.8
    assert (p["bagging_fraction"], p["bagging_freq"]) == (0.8, 1)
    assert p["lambda_l2"] == 1.0
    assert baselines.QUICK_EARLY_STOPPING == 200
    assert baselines.ROLL_CLIP == 7.0
    notes = [
        "fp1_gap",
        "fp1_rank",
        "fp2_gap",
        "fp2_rank",
        "fp3_gap",
        "fp3_rank",
        "best_gap",
        "best_rank",
        "last_gap",
        "last_rank",
        "sessions_run",
        "practice_laps",
        "team_best_gap",
        "teammate_diff",
        "d_gap_mean1",
        "d_gap_mean3",
        "d_gap_mean5",
        "d_pos_mean5",
        "t_gap_mean1",
        "t_gap_mean3",
        "t_gap_mean5",
        "d_minus_t_mean5",
        "circuit",
        "circuit_type",
        "course_length",
        "turns",
        "sprint",
        "season",
        "round",
    ]
    assert sorted(QUICK_FEATURES) == sorted(notes)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Tables]:
    from pipelines.f1db.parse import load_tables

    root = tmp_path_factory.mktemp("base")
    t = write_f1db_tree(root / "f1db", seasons=(2022, 2023), rounds=6, sprint_round=None)
    return t, load_tables(t.root, None, min_season=2000)


def _rows(t: Tables) -> pd.DataFrame:
    q = t.qualifying.dropna(subset=["best_s"])
    return q[["race_id", "driver_id", "constructor_id"]].reset_index(drop=True)


def test_quick_features_from_first_principles(tree) -> None:
    spec, t = tree
    rows = _rows(t)
    f = quick_features(t, rows)
    assert list(f.columns) == list(QUICK_FEATURES)
    assert isinstance(f["circuit"].dtype, pd.CategoricalDtype)
    r1, r2 = spec.race(2022, 1), spec.race(2022, 2)
    pole1 = min(r1.best_quali(d) for d in r1.quali)
    order1 = sorted(r1.quali, key=r1.best_quali)
    for i, (rid, d, c) in enumerate(rows.itertuples(index=False)):
        if rid == r1.race_id:  # first event: no form yet
            assert math.isnan(f["d_gap_mean1"].iloc[i]) and math.isnan(f["t_gap_mean5"].iloc[i])
            best = min(tm for tm, _l in r1.practice["fp1"].values())  # the reserve counts
            own = r1.practice["fp1"][d][0]
            assert f["fp1_gap"].iloc[i] == pytest.approx((own / best - 1) * 100)
            faster = sum(tm < own for tm, _l in r1.practice["fp1"].values())
            assert f["fp1_rank"].iloc[i] == faster + 1
            assert f["sessions_run"].iloc[i] == 3
            assert f["practice_laps"].iloc[i] == sum(r1.practice[s][d][1] for s in r1.practice)
        if rid == r2.race_id:  # second event: the first one's gap and position
            gap = (r1.best_quali(d) / pole1 - 1) * 100
            assert f["d_gap_mean1"].iloc[i] == pytest.approx(min(gap, 7.0))
            assert f["d_pos_mean5"].iloc[i] == order1.index(d) + 1
            mates = [x for x in r1.quali if x != d and _team(x) == c]
            team_gap = np.mean([(r1.best_quali(x) / pole1 - 1) * 100 for x in [d, *mates]])
            assert f["t_gap_mean1"].iloc[i] == pytest.approx(team_gap)
            assert f["round"].iloc[i] == 2 and f["season"].iloc[i] == 2022


def _team(driver: str) -> str:
    from tests.fakes import DRIVERS

    return next(c for d, c, _n, _a in DRIVERS if d == driver)


def _later(t: Tables, race_id: int) -> set[int]:
    day = t.races.loc[t.races["race_id"] == race_id, "date"].item()
    return set(t.races.loc[t.races["date"] > day, "race_id"])


def test_quick_features_do_not_read_the_future(tree) -> None:
    """Changing an event's own qualifying and every later event leaves its features."""
    spec, t = tree
    target = spec.race(2022, 4).race_id
    rows = _rows(t)
    at = (rows["race_id"] == target).to_numpy()
    base = quick_features(t, rows)[at]
    out = copy_tables(t)
    rng = np.random.default_rng(0)
    q = out.qualifying
    m = q["race_id"].isin(_later(t, target) | {target})
    q.loc[m, "best_s"] = q.loc[m, "best_s"] * rng.uniform(0.97, 1.05, m.sum())
    q.loc[m, "position"] = rng.permutation(q.loc[m, "position"].to_numpy(copy=True))
    p = out.practice
    m = p["race_id"].isin(_later(t, target))
    p.loc[m, "time_s"] = p.loc[m, "time_s"] * rng.uniform(0.95, 1.05, m.sum())
    pd.testing.assert_frame_equal(base, quick_features(out, rows)[at])
    # positive control: the previous event's qualifying does move them
    prev = spec.race(2022, 3).race_id
    q = out.qualifying
    m = q["race_id"] == prev
    q.loc[m, "best_s"] = q.loc[m, "best_s"] * np.linspace(1.0, 1.03, m.sum())
    moved = quick_features(out, rows)[at]
    assert not np.allclose(base["d_gap_mean1"], moved["d_gap_mean1"])


def _stage(x: np.ndarray, y: np.ndarray, season: int, races: np.ndarray, grid: np.ndarray):
    meta = pd.DataFrame({"season": season, "race_id": races, "grid": grid, "win": y})
    return StageData(x, y, meta)


def _races(n_races: int, n: int, season: int, rng: np.random.Generator) -> StageData:
    grid = np.tile(np.arange(1.0, n + 1), n_races)
    races = np.repeat(np.arange(n_races) + season * 100, n)
    y = np.zeros(n_races * n)
    for r in range(n_races):  # the front rows win most
        y[r * n + min(int(rng.exponential(1.0)), n - 1)] = 1.0
    x = rng.normal(size=(n_races * n, len(STAGE2)))
    x[:, STAGE2.pos["grid"]] = grid
    return _stage(x, y, season, races, grid)


def test_stage2_baselines_are_what_they_say() -> None:
    rng = np.random.default_rng(1)
    tr, va, te = _races(60, 10, 2021, rng), _races(30, 10, 2022, rng), _races(5, 10, 2023, rng)
    fit = StageData(
        np.vstack([tr.x, va.x]), np.r_[tr.y, va.y], pd.concat([tr.meta, va.meta], ignore_index=True)
    )
    b = Stage2Baselines.fit(fit, tr, va)
    groups = te.meta["race_id"].to_numpy()
    grid = te.meta["grid"].to_numpy()
    out = b.predict(grid, te.x, groups)
    assert set(out) == set(baselines.STAGE2_BASELINES)
    for p in out.values():
        np.testing.assert_allclose(pd.Series(p).groupby(groups).sum(), 1.0)
    np.testing.assert_allclose(out["uniform"], 0.1)
    assert (out["pole_sitter"][grid == 1] == 1).all() and (out["pole_sitter"][grid > 1] == 0).all()
    # logistic on log(grid): falls with the slot, and is what sklearn says
    lg = out["logistic_grid"][:10]
    assert (np.diff(lg) < 0).all()
    raw = b.logistic.predict_proba(np.log(grid[:10]).reshape(-1, 1))[:, 1]
    np.testing.assert_allclose(lg, raw / raw.sum())
    # the quick LightGBM stopped early on the validation season
    assert b.quick.best_iteration < baselines.QUICK_MAX_ROUNDS
    # fed another grid (Stage-1's, before qualifying), the grid baselines follow it
    other = grid[::-1].copy()
    moved = b.predict(other, te.x, groups)
    assert (moved["pole_sitter"][other == 1] == 1).all()
    np.testing.assert_allclose(moved["logistic_grid"][:10], lg[::-1])
    # the quick LightGBM reads grid and form only, not what steers the model's blend
    assert b.quick.num_feature() == len(STAGE2) - 1
    x = te.x.copy()
    x[:, STAGE2.pos["c_rules_races"]] = 0.0
    np.testing.assert_array_equal(b.predict(grid, x, groups)["quick_lgbm"], out["quick_lgbm"])


def test_stage1_baselines_use_the_notes_seasons(tree, monkeypatch: pytest.MonkeyPatch) -> None:
    """The quick LightGBM trains on <= S-2 and stops early on S-1; the practice ratio
    is fitted on <= S-1."""
    from pipelines.features.snapshot import FeatureSnapshot
    from training.datasets import stage1_data

    _spec, t = tree
    snap = FeatureSnapshot.build(t)
    s1 = stage1_data(snap, t, 2000)
    tr, va = s1.seasons(2022, 2022), s1.seasons(2023, 2023)
    seen: dict[str, Any] = {}
    real = baselines.fit_quick_lgbm

    def spy(x_train, y_train, x_valid, y_valid, params):
        seen.update(train=x_train["season"].unique(), valid=x_valid["season"].unique())
        seen["params"] = params
        return real(x_train, y_train, x_valid, y_valid, params)

    monkeypatch.setattr(baselines, "fit_quick_lgbm", spy)
    te = va  # any rows to score
    out = baselines.stage1_baselines(t, s1, tr, va, te, np.full(len(te.y), 90.0))
    assert list(seen["train"]) == [2022] and list(seen["valid"]) == [2023]
    assert seen["params"] == QUICK_LGBM_PARAMS
    time_s, gap = out["quick_lgbm_gap"]
    np.testing.assert_allclose(time_s, 90.0 * (1 + gap / 100))
    assert (gap >= 0).all()
    assert set(out) == set(baselines.STAGE1_BASELINES)
