"""Stage-1 / Stage-2 models: fit, save/load, probabilities, monotonicity, pole estimate."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.features.event import PoleHistory
from pipelines.features.spec import (
    STAGE1,
    STAGE1_FORM,
    STAGE1_PRACTICE,
    STAGE1_PRACTICE_COUNTS,
    STAGE1_TEAM_FORM,
    STAGE2,
    STAGE2_MONOTONE,
)
from pipelines.models.pole import (
    DEFAULT_PACE,
    PACE_SHRINK,
    PoleParams,
    estimate_pole,
    last_visit_pole,
    season_pace,
)
from pipelines.models.stage1 import (
    Stage1Config,
    Stage1Model,
    blank_team_form,
    boosted_columns,
    first_under_new_rules,
    no_practice,
    without_form,
    without_practice,
)
from pipelines.models.stage2 import Stage2Config, Stage2Model, grid_lean_logit, group_softmax

N1, N2 = len(STAGE1), len(STAGE2)


@pytest.fixture(scope="module")
def stage1() -> tuple[Stage1Model, np.ndarray]:
    rng = np.random.default_rng(11)
    x = rng.normal(size=(300, N1))
    x[rng.random(x.shape) < 0.1] = np.nan  # features may be missing
    y = 1.5 + np.nan_to_num(x[:, 4]) + rng.normal(scale=0.1, size=300)
    cfg = Stage1Config(n_estimators=25, min_child_samples=10)
    return Stage1Model.fit(x, y, cfg), x


RACES, FIELD = 30, 20
GROUPS = np.repeat(np.arange(RACES), FIELD)


@pytest.fixture(scope="module", params=["race_softmax", "binary"])
def stage2(request) -> tuple[Stage2Model, np.ndarray]:
    rng = np.random.default_rng(12)
    x = rng.normal(size=(RACES * FIELD, N2))
    x[:, 0] = np.tile(np.arange(1, FIELD + 1), RACES)  # grid slots 1..20 in every race
    x[:, STAGE2.pos["c_rules_races"]] = 50.0  # well into a rules era: no reset blend
    # adversarial labels: the winner tends to start at the *back*, so only the monotone
    # constraint keeps the model from learning that a worse slot helps
    y = np.zeros(RACES * FIELD)
    for r in range(RACES):
        weights = np.arange(1, FIELD + 1, dtype=float) ** 2
        y[r * FIELD + rng.choice(FIELD, p=weights / weights.sum())] = 1.0
    cfg = Stage2Config(objective=request.param, n_estimators=40, min_child_samples=10)
    return Stage2Model.fit(x, y, cfg, GROUPS), x


# -------------------------------------------------------------------- softmax


def test_group_softmax_sums_to_one_per_group() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(scale=5, size=50)
    groups = rng.integers(0, 7, 50)
    p = group_softmax(scores, groups)
    assert (p > 0).all()
    for g in np.unique(groups):
        assert p[groups == g].sum() == pytest.approx(1.0)


def test_group_softmax_values_and_stability() -> None:
    p = group_softmax(np.array([0.0, math.log(3.0), 1000.0, 1000.0]), np.array([0, 0, 1, 1]))
    np.testing.assert_allclose(p, [0.25, 0.75, 0.5, 0.5])  # e^0 : e^ln3 = 1 : 3
    assert np.isfinite(group_softmax(np.array([1e6, -1e6]), np.zeros(2, int))).all()


def test_group_softmax_order_follows_scores() -> None:
    s = np.array([3.0, 1.0, 2.0])
    p = group_softmax(s, np.zeros(3, int))
    assert list(np.argsort(-p)) == [0, 2, 1]


# -------------------------------------------------------------------- Stage-1


def test_stage1_learns_the_signal(stage1) -> None:
    model, _x = stage1
    assert len(model.boosters) == len(model.config.members)
    test = np.zeros((3, N1))
    test[:, 4] = [-1.0, 0.0, 2.0]  # p_best_gap
    test[:, STAGE1.pos["p_n_sessions"]] = 1.0  # cars that ran practice: the main ensemble
    gap = model.predict_gap(test)
    assert (gap >= 0).all()
    assert gap[0] < gap[1] < gap[2]


def test_stage1_save_load_predicts_identically(stage1, tmp_path: Path) -> None:
    model, x = stage1
    model.save(tmp_path / "m1")
    loaded = Stage1Model.load(tmp_path / "m1")
    assert loaded.config == model.config
    np.testing.assert_array_equal(loaded.predict_gap(x), model.predict_gap(x))


def test_stage1_load_rejects_other_features(stage1, tmp_path: Path) -> None:
    model, _x = stage1
    model.save(tmp_path / "m1")
    txt = tmp_path / "m1" / "booster_0.txt"
    txt.write_text(txt.read_text().replace("p_fp1_gap", "p_fp9_gap"))
    with pytest.raises(ValueError, match=r"p_fp9_gap.*no longer builds"):
        Stage1Model.load(tmp_path / "m1")


# -------------------------------------------------------------------- Stage-2


def test_stage2_monotone_constraint_is_on_grid_and_gaps() -> None:
    neg = [STAGE2.names[i] for i, c in enumerate(STAGE2_MONOTONE) if c == -1]
    assert neg == ["grid", "q_gap_pct", "q_tm_gap"]
    assert len(STAGE2_MONOTONE) == N2


def test_stage2_win_probability_never_rises_with_a_worse_grid(stage2) -> None:
    model, x = stage2
    rng = np.random.default_rng(5)
    for row in x[rng.choice(len(x), 25, replace=False)]:
        sweep = np.tile(row, (20, 1))
        sweep[:, 0] = np.arange(1, 21)
        raw = model.raw_score(sweep)
        assert (np.diff(raw) <= 1e-12).all()
    # within a field: moving one car back never raises its share
    field = x[:20].copy()
    for slot in range(1, 20):
        a, b = field.copy(), field.copy()
        a[0, 0], b[0, 0] = slot, slot + 1
        pa = group_softmax(model.logit(a), np.zeros(20, int))[0]
        pb = group_softmax(model.logit(b), np.zeros(20, int))[0]
        assert pb <= pa + 1e-12


def test_stage2_probability_never_rises_with_a_slower_lap(stage2) -> None:
    model, x = stage2
    for row in x[:20]:
        sweep = np.tile(row, (30, 1))
        sweep[:, 1] = np.linspace(0, 3, 30)
        assert (np.diff(model.raw_score(sweep)) <= 1e-12).all()


def test_stage2_probabilities_sum_to_one_per_race(stage2) -> None:
    model, x = stage2
    p = group_softmax(model.logit(x), GROUPS)
    np.testing.assert_allclose(np.bincount(GROUPS, weights=p), 1.0)


def test_stage2_unknown_objective_is_refused(stage2) -> None:
    _model, x = stage2
    y = np.zeros(len(x))
    y[::FIELD] = 1.0
    with pytest.raises(ValueError, match="objective"):
        Stage2Model.fit(x, y, Stage2Config(objective="magic", n_estimators=2), GROUPS)


def test_stage2_objectives_learn_the_winner() -> None:
    """Both objectives pick up a real signal: the car with the best form wins."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(RACES * FIELD, N2))
    x[:, STAGE2.pos["c_rules_races"]] = np.nan  # no known rules reset
    form = STAGE2.names.index("d_win_ewm")
    y = np.zeros(RACES * FIELD)
    y[np.arange(RACES) * FIELD + np.argmax(x[:, form].reshape(RACES, FIELD), axis=1)] = 1.0
    for objective in ("race_softmax", "binary"):
        cfg = Stage2Config(objective=objective, n_estimators=60, min_child_samples=5)
        model = Stage2Model.fit(x, y, cfg, GROUPS)
        p = group_softmax(model.logit(x), GROUPS).reshape(RACES, FIELD)
        hits = (np.argmax(p, axis=1) == np.argmax(x[:, form].reshape(RACES, FIELD), axis=1)).mean()
        assert hits > 0.8, objective


def test_stage2_temperature_flattens(stage2) -> None:
    model, x = stage2
    groups = np.zeros(20, int)
    hot = Stage2Model(Stage2Config(temperature=5.0), model.booster)
    p1 = group_softmax(model.logit(x[:20]), groups)
    p5 = group_softmax(hot.logit(x[:20]), groups)
    assert p5.max() < p1.max()
    assert p5.min() > p1.min()


def _below_pole(stage1: tuple[Stage1Model, np.ndarray]) -> Stage1Model:
    """Two boosters whose mean is often below 0 (fit clips targets at 0, so these are
    trained directly): what the floor at 0 hides."""
    import lightgbm as lgb

    _model, x = stage1
    y = np.nan_to_num(x[:, 4])
    params = {"objective": "l2", "num_leaves": 7, "verbosity": -1, "num_threads": 1}
    xb = boosted_columns(x)
    boosters = [
        lgb.train(params | {"seed": s}, lgb.Dataset(xb, label=y + s - 1.0), num_boost_round=20)
        for s in (0, 1)
    ]
    return Stage1Model(Stage1Config(), boosters)


def test_stage1_raw_gap_is_the_unclipped_ensemble_mean(stage1) -> None:
    model = _below_pole(stage1)
    x = stage1[1]
    raw = model.raw_gap(x)
    members = np.mean([b.predict(boosted_columns(x)) for b in model.boosters], axis=0)
    np.testing.assert_allclose(raw, members, rtol=0, atol=1e-12)
    assert (raw < 0).sum() > 30, "rows below pole, or this test does not bite"
    np.testing.assert_array_equal(model.predict_gap(x), np.clip(raw, 0.0, None))


def test_stage1_contributions_add_up_to_the_raw_gap(stage1) -> None:
    x = stage1[1]
    below = _below_pole(stage1)
    np.testing.assert_allclose(
        below.explain_gap(x).sum(axis=1), below.raw_gap(x), rtol=0, atol=1e-9
    )
    model = stage1[0]
    contrib = model.explain_gap(x)
    assert contrib.shape == (len(x), N1 + 1)
    np.testing.assert_allclose(contrib.sum(axis=1), model.raw_gap(x), rtol=0, atol=1e-9)
    # the base (last column) is one number for every row: the ensemble's expected value
    np.testing.assert_allclose(contrib[:, -1], contrib[0, -1], rtol=0, atol=1e-12)
    # the feature the target was built from moves the gap most
    assert int(np.argmax(np.abs(contrib[:, :-1]).mean(axis=0))) == 4


def test_stage2_contributions_add_up_to_the_logit(stage2) -> None:
    model, x = stage2
    hot = Stage2Model(Stage2Config(temperature=2.5), model.booster)
    for m in (model, hot):
        contrib = m.explain_logit(x)
        assert contrib.shape == (len(x), N2 + 1)
        np.testing.assert_allclose(contrib.sum(axis=1), m.logit(x), rtol=0, atol=1e-9)
    np.testing.assert_allclose(hot.explain_logit(x), model.explain_logit(x) / 2.5, atol=1e-12)


def test_stage2_save_load_predicts_identically(stage2, tmp_path: Path) -> None:
    model, x = stage2
    model.save(tmp_path / "m2")
    loaded = Stage2Model.load(tmp_path / "m2")
    assert loaded.config == model.config
    np.testing.assert_array_equal(loaded.raw_score(x), model.raw_score(x))
    np.testing.assert_array_equal(
        group_softmax(loaded.logit(x), GROUPS), group_softmax(model.logit(x), GROUPS)
    )


def test_models_are_saved_as_text_not_pickles(stage1, stage2, tmp_path: Path) -> None:
    stage1[0].save(tmp_path / "a")
    stage2[0].save(tmp_path / "b")
    files = sorted(p.name for p in [*tmp_path.glob("a/*"), *tmp_path.glob("b/*")])
    members = ["booster_0.txt", "booster_1.txt", "booster_2.txt"]
    form = ["form_" + m for m in members]  # Stage-1's form-only ensemble
    practice = ["practice_" + m for m in members]  # and its practice-only one
    assert files == ["booster.txt", *members, "config.json", "config.json", *form, *practice]
    for p in [*tmp_path.glob("*/*")]:
        p.read_text()  # plain text, no pickles


# ------------------------------------------------------------------ pole lap


def _history(
    rows: list[tuple[str, str, float, float, int]], km: list[float] | None = None
) -> pd.DataFrame:
    """(layout, session, ref lap, pole lap, day) [+ course lengths] -> pole_history-shaped
    frame."""
    df = pd.DataFrame(rows, columns=["layout_id", "session", "ref", "pole_s", "day"])
    df["ratio"] = df["pole_s"] / df["ref"]
    df["course_length"] = km if km is not None else math.nan
    return df[["layout_id", "session", "ref", "pole_s", "ratio", "day", "course_length"]]


def test_estimate_pole_from_practice_ratio() -> None:
    hist = _history(
        [
            ("a", "fp3", 90.0, 89.1, 1),  # ratio 0.99
            ("b", "fp3", 80.0, 79.2, 2),  # 0.99
            ("c", "fp3", 100.0, 98.0, 3),  # 0.98
            ("d", "fp1", 100.0, 97.0, 4),  # another session kind: ignored
        ]
    )
    params = PoleParams(window=40, shrink=3.0)
    # unknown layout: the median fp3 ratio (0.99), no layout adjustment
    assert estimate_pole(hist, "fp3", 85.0, "new", params) == pytest.approx(85.0 * 0.99)
    # window=1: only the latest fp3 event counts
    one = PoleParams(window=1, shrink=3.0)
    assert estimate_pole(hist, "fp3", 85.0, "new", one) == pytest.approx(85.0 * 0.98)
    # a session kind never seen: fall back to all recent events (median of 4 ratios)
    med = float(np.median(hist["ratio"]))
    assert estimate_pole(hist, "sq", 85.0, None, params) == pytest.approx(85.0 * med)


def test_estimate_pole_layout_adjustment_is_shrunk() -> None:
    hist = _history(
        [
            ("a", "fp3", 100.0, 99.0, 1),
            ("b", "fp3", 100.0, 99.0, 2),
            ("c", "fp3", 100.0, 98.0, 3),  # layout c is 1 % "faster" than typical
        ]
    )
    typical = 0.99
    rel = 0.98 / typical
    for shrink in (0.0, 1.0, 3.0):
        params = PoleParams(window=40, shrink=shrink)
        adj = 1.0 + (rel - 1.0) * 1 / (1 + shrink)
        expected = 90.0 * typical * adj
        assert estimate_pole(hist, "fp3", 90.0, "c", params) == pytest.approx(expected)
    # infinite shrink: the layout's own history is ignored
    assert estimate_pole(hist, "fp3", 90.0, "c", PoleParams(40, 1e12)) == pytest.approx(89.1)


def test_estimate_pole_fallbacks() -> None:
    hist = _history([("a", "fp3", 90.0, 89.0, 1), ("a", "fp3", 91.0, 88.5, 2)])
    params = PoleParams()
    # no practice: the layout's last pole
    assert estimate_pole(hist, None, math.nan, "a", params) == 88.5
    assert estimate_pole(hist, "fp1", math.nan, "a", params) == 88.5
    # no practice, layout never visited, no length known before: the default pace
    assert estimate_pole(hist, None, math.nan, "zz", params, 5.0) == pytest.approx(
        5.0 * DEFAULT_PACE
    )
    # ... with the past layouts' lengths: the median pace of their poles (s/km)
    known = _history(
        [("a", "fp3", 90.0, 80.0, 1), ("b", "fp3", 90.0, 90.0, 2), ("c", "fp3", 90.0, 66.0, 3)],
        km=[5.0, 5.0, 3.0],  # 16, 18 and 22 s/km
    )
    assert estimate_pole(known, None, math.nan, "zz", params, 4.0) == pytest.approx(4.0 * 18.0)
    one = PoleParams(window=1)  # the latest event's pace alone
    assert estimate_pole(known, None, math.nan, "zz", one, 4.0) == pytest.approx(4.0 * 22.0)
    # a practice lap but no history at all: no ratio to apply, use the course length
    empty = hist.iloc[0:0]
    assert estimate_pole(empty, "fp3", 90.0, "a", params, 4.0) == pytest.approx(4.0 * DEFAULT_PACE)
    # nothing known
    assert math.isnan(estimate_pole(empty, None, math.nan, None, params))


def test_no_practice_a_wet_last_visit_is_read_from_its_practice() -> None:
    """The layout's last qualifying ran 10 % slower than its practice (the wet), where the
    other events ran 1 % faster: its lap says nothing of the cars, what its practice
    implied at the typical ratio does; a dry last visit is taken as it was."""
    hist = _history(
        [
            ("b", "fp3", 100.0, 99.0, 1),
            ("c", "fp3", 100.0, 99.0, 2),
            ("a", "fp3", 90.0, 99.0, 3),  # ratio 1.10
        ]
    )
    params = PoleParams()
    assert estimate_pole(hist, None, math.nan, "a", params) == pytest.approx(90.0 * 0.99)
    assert last_visit_pole(PoleHistory.from_frame(hist), "b", 40) == pytest.approx(99.0)
    assert math.isnan(last_visit_pole(PoleHistory.from_frame(hist), "zz", 40))


def test_no_practice_the_seasons_pace_so_far_scales_the_last_pole() -> None:
    """Two events of the season (from day 10) each 2 % slower than their layout's last
    pole said: the next layout's last pole is scaled by 1 + 0.02 x 2 / (2 + PACE_SHRINK);
    the season's first event (nothing from day 10 yet) and a caller without a season start
    are not scaled."""
    hist = _history(
        [
            ("a", "fp3", 100.0, 99.0, 1),
            ("b", "fp3", 100.0, 99.0, 2),
            ("c", "fp3", 100.0, 99.0, 3),
            ("a", "fp3", 101.0, 99.0 * 1.02, 10),  # the season's round 1: 2 % slower
            ("b", "fp3", 101.0, 99.0 * 1.02, 11),  # round 2
        ]
    )
    params = PoleParams()
    scale = 1.0 + 0.02 * 2 / (2 + PACE_SHRINK)
    assert estimate_pole(hist, None, math.nan, "c", params, season_start=10) == pytest.approx(
        99.0 * scale
    )
    assert estimate_pole(hist, None, math.nan, "c", params) == pytest.approx(99.0)
    assert estimate_pole(hist, None, math.nan, "c", params, season_start=12) == pytest.approx(99.0)
    arrays = PoleHistory.from_frame(hist)
    assert season_pace(arrays, 10, 40) == pytest.approx(scale)
    # with practice the pace plays no part: the practice lap says how fast the cars are
    assert estimate_pole(hist, "fp3", 100.0, "c", params, season_start=10) == pytest.approx(
        estimate_pole(hist, "fp3", 100.0, "c", params)
    )


# ------------------------------------------------------- Stage-2: the linear part


def _linear_races(rng: np.random.Generator, races: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """Fields whose winner follows a known conditional logit on log(grid) and form."""
    x = np.full((races * FIELD, N2), np.nan)
    x[:, 0] = np.tile(np.arange(1, FIELD + 1), races)
    win = STAGE2.names.index("d_win_ewm")
    x[:, win] = rng.uniform(0, 1, races * FIELD)
    score = -2.0 * np.log(x[:, 0]) + 1.5 * x[:, win]
    y = np.zeros(races * FIELD)
    for r in range(races):
        s = score[r * FIELD : (r + 1) * FIELD]
        p = np.exp(s - s.max())
        y[r * FIELD + rng.choice(FIELD, p=p / p.sum())] = 1.0
    return x, y


def test_fit_linear_recovers_a_conditional_logit() -> None:
    from pipelines.models.stage2 import LINEAR_TERMS, fit_linear

    rng = np.random.default_rng(21)
    x, y = _linear_races(rng, races=400)
    groups = np.repeat(np.arange(400), FIELD)
    coef = dict(zip([t.name for t in LINEAR_TERMS], fit_linear(x, y, groups), strict=True))
    assert coef["log_grid"] == pytest.approx(-2.0, abs=0.4)
    assert coef["d_win_ewm"] == pytest.approx(1.5, abs=0.6)
    assert abs(coef["t_win_ewm"]) < 1e-6  # a constant (missing) input learns nothing


def test_fit_linear_keeps_monotone_terms_non_positive() -> None:
    """Adversarial labels (the back of the grid wins): the grid term stays <= 0."""
    from pipelines.models.stage2 import LINEAR_TERMS, fit_linear

    rng = np.random.default_rng(22)
    x, _ = _linear_races(rng)
    y = np.zeros(len(x))
    y[np.arange(80) * FIELD + FIELD - 1] = 1.0  # always the last slot
    coef = dict(zip([t.name for t in LINEAR_TERMS], fit_linear(x, y, GROUPS_80), strict=True))
    assert coef["log_grid"] <= 0.0
    assert coef["q_gap_pct"] <= 0.0 and coef["q_tm_gap"] <= 0.0


GROUPS_80 = np.repeat(np.arange(80), FIELD)


# ------------------------------------------- Stage-2: learning from the first places


def test_rank_stages_follow_the_finishing_order() -> None:
    """One race: P2, P1, not classified, P3, P4. Place 1 is chosen from all five, place 2
    from the four left (the unclassified car stays in), place 3 from three; a second race
    with two cars given P2 stops after its winner."""
    from pipelines.models.stage2 import RankStages

    groups = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    ranks = np.array([2, 1, np.nan, 3, 4, 1, 2, 2], dtype=float)
    st = RankStages.of(groups, ranks, depth=3, decay=0.5)
    stages = np.split(np.arange(len(st.rows)), st.starts[1:])
    got = [(sorted(st.rows[s].tolist()), int(st.rows[s][st.chosen[s] == 1][0])) for s in stages]
    assert got == [([0, 1, 2, 3, 4], 1), ([0, 2, 3, 4], 0), ([2, 3, 4], 3), ([5, 6, 7], 5)]
    assert st.weight.tolist() == [1.0, 0.5, 0.25, 1.0]
    one = RankStages.of(groups, ranks, depth=1)
    assert len(one.starts) == 2 and one.weight.tolist() == [1.0, 1.0]


def _pl_nll(
    scores: np.ndarray, groups: np.ndarray, ranks: np.ndarray, depth: int, decay: float
) -> float:
    """Plackett-Luce negative log-likelihood written out race by race, place by place."""
    total = 0.0
    for g in np.unique(groups):
        s, r = scores[groups == g], ranks[groups == g]
        for place in range(1, depth + 1):
            if (r == place).sum() != 1:
                break
            left = ~(r < place)
            total -= decay ** (place - 1) * (s[r == place][0] - np.log(np.exp(s[left]).sum()))
    return total


def test_the_boosters_objective_is_the_plackett_luce_gradient() -> None:
    """Gradient = d(nll)/d(score) by finite differences; the Hessian's diagonal too."""
    from pipelines.models.stage2 import race_softmax_objective

    rng = np.random.default_rng(31)
    groups = np.repeat(np.arange(4), 6)
    ranks = np.concatenate([rng.permutation(6) + 1.0 for _ in range(4)])
    ranks[[2, 9]] = np.nan  # not classified
    scores = rng.normal(size=len(groups))
    grad, hess = race_softmax_objective(groups, ranks, depth=3, decay=0.7)(scores, None)
    h = 1e-5
    for i in range(len(scores)):
        e = np.zeros(len(scores))
        e[i] = h
        up = _pl_nll(scores + e, groups, ranks, 3, 0.7)
        down = _pl_nll(scores - e, groups, ranks, 3, 0.7)
        mid = _pl_nll(scores, groups, ranks, 3, 0.7)
        assert grad[i] == pytest.approx((up - down) / (2 * h), abs=1e-6)
        assert hess[i] == pytest.approx((up - 2 * mid + down) / h**2, abs=1e-3)


def _pl_races(
    rng: np.random.Generator, races: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fields finishing in Plackett-Luce order on a known logit (log grid -2, win form
    1.5): a Gumbel draw per car, sorted."""
    x, _ = _linear_races(rng, races)
    win = STAGE2.names.index("d_win_ewm")
    score = -2.0 * np.log(x[:, 0]) + 1.5 * x[:, win]
    noisy = (score + rng.gumbel(size=len(score))).reshape(races, FIELD)
    ranks = (-noisy).argsort(axis=1).argsort(axis=1).ravel() + 1.0
    return x, (ranks == 1).astype(float), ranks, np.repeat(np.arange(races), FIELD)


def test_the_first_places_estimate_the_win_logit_better_than_winners_alone() -> None:
    """Three choices per race instead of one: over twelve small samples (30 races), the
    linear part fitted on the first three places lands nearer the true coefficients than
    fitted on the winners; with ``depth`` 1 the positions fit exactly the winners' logit."""
    from pipelines.models.stage2 import LINEAR_TERMS, fit_linear

    names = [t.name for t in LINEAR_TERMS]
    err = {1: 0.0, 3: 0.0}
    for seed in range(12):
        x, y, ranks, groups = _pl_races(np.random.default_rng(100 + seed), races=30)
        for depth in (1, 3):
            c = dict(zip(names, fit_linear(x, y, groups, ranks=ranks, depth=depth), strict=True))
            err[depth] += abs(c["log_grid"] + 2.0) + abs(c["d_win_ewm"] - 1.5)
        if seed == 0:
            assert fit_linear(x, y, groups, ranks=ranks, depth=1) == pytest.approx(
                fit_linear(x, y, groups)
            )
    assert err[3] < 0.7 * err[1], err


def test_stage2_fitted_on_places_says_so_and_without_them_says_winners() -> None:
    from pipelines.models.stage2 import RANK_DEPTH

    x, y, ranks, groups = _pl_races(np.random.default_rng(41), races=40)
    cfg = Stage2Config(n_estimators=20, min_child_samples=10, stack_weight=0.5)
    with_places = Stage2Model.fit(x, y, cfg, groups, ranks=ranks)
    winners = Stage2Model.fit(x, y, cfg, groups)
    assert with_places.config.rank_depth == RANK_DEPTH > 1
    assert winners.config.rank_depth == 1
    assert not np.allclose(with_places.logit(x), winners.logit(x))


@pytest.fixture(scope="module")
def stacked() -> tuple[Stage2Model, np.ndarray]:
    rng = np.random.default_rng(23)
    x, y = _linear_races(rng)
    cfg = Stage2Config(n_estimators=30, min_child_samples=10, stack_weight=0.5, temperature=1.1)
    return Stage2Model.fit(x, y, cfg, GROUPS_80), x


def test_stacked_logit_is_the_weighted_sum(stacked) -> None:
    from pipelines.models.stage2 import LINEAR_TERMS

    model, x = stacked
    assert model.config.linear_terms == [t.name for t in LINEAR_TERMS]
    assert len(model.config.linear_coef) == len(LINEAR_TERMS)
    expected = (0.5 * model.raw_score(x) + 0.5 * model.linear_score(x)) / 1.1
    np.testing.assert_allclose(model.logit(x), expected)
    # a frame with the STAGE2 columns (the benchmark's original design passes one)
    frame = pd.DataFrame(x, columns=list(STAGE2.names))
    np.testing.assert_allclose(model.logit(frame), expected)
    # without a linear part (older models, w = 1) the booster alone
    plain = Stage2Model(Stage2Config(temperature=1.1), model.booster)
    np.testing.assert_allclose(plain.logit(x), model.raw_score(x) / 1.1)


def test_stacked_logit_never_rises_with_a_worse_grid_or_slower_lap(stacked) -> None:
    model, x = stacked
    for row in x[:: FIELD * 4]:
        sweep = np.tile(row, (20, 1))
        sweep[:, 0] = np.arange(1, 21)
        assert (np.diff(model.logit(sweep)) <= 1e-12).all()
        sweep = np.tile(row, (30, 1))
        sweep[:, 1] = np.linspace(0, 4, 30)
        assert (np.diff(model.logit(sweep)) <= 1e-12).all()


def test_stacked_save_load_and_a_changed_linear_part_is_refused(stacked, tmp_path: Path) -> None:
    import json

    model, x = stacked
    model.save(tmp_path / "m")
    loaded = Stage2Model.load(tmp_path / "m")
    assert loaded.config == model.config
    np.testing.assert_array_equal(loaded.logit(x), model.logit(x))
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["linear_terms"] = ["log_grid", "something_else"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="linear part"):
        Stage2Model.load(tmp_path / "m")


def _at_rules_races(x: np.ndarray, n: float) -> np.ndarray:
    out = np.array(x, copy=True)
    out[:, STAGE2.pos["c_rules_races"]] = n
    return out


def test_the_booster_never_reads_the_rules_races(stacked) -> None:
    """Fitted without the column: the trees cannot tell a reset season apart."""
    model, x = stacked
    for n in (0.0, 2.0, 50.0):
        np.testing.assert_array_equal(model.raw_score(_at_rules_races(x, n)), model.raw_score(x))
    assert "c_rules_races" not in model.booster.feature_name()
    assert model.explain_logit(x)[:, STAGE2.pos["c_rules_races"]].tolist() == [0.0] * len(x)


def test_after_a_rules_reset_the_logit_leans_on_the_grid(stacked) -> None:
    """All grid at the first race under new rules, 3/4 at the second, none from the
    fifth on (and none when the rules era is unknown)."""
    model, x = stacked
    c = model.config
    assert (c.reset_weight, c.reset_races, len(c.grid_coef)) == (1.0, 4.0, 1)
    assert c.grid_coef[0] < 0.0  # the fields' winners follow -2 log(grid)
    full, grid = model.logit(x), grid_lean_logit(c, x)  # x: era unknown (NaN)
    np.testing.assert_allclose(model.logit(_at_rules_races(x, 50.0)), full)
    np.testing.assert_allclose(model.logit(_at_rules_races(x, 4.0)), full)
    np.testing.assert_allclose(model.logit(_at_rules_races(x, 0.0)), grid)
    np.testing.assert_allclose(model.logit(_at_rules_races(x, 1.0)), 0.25 * full + 0.75 * grid)
    for n in (0.0, 1.0, 3.0, 50.0):
        xn = _at_rules_races(x, n)
        np.testing.assert_allclose(model.explain_logit(xn).sum(axis=1), model.logit(xn), atol=1e-9)
        sweep = np.tile(xn[0], (20, 1))
        sweep[:, 0] = np.arange(1, 21)
        assert (np.diff(model.logit(sweep)) <= 1e-12).all()


def test_stage2_config_of_an_older_model_loads_as_booster_only(stage2, tmp_path: Path) -> None:
    """Models saved before the linear part existed: no stack keys, the booster alone."""
    import json

    model, x = stage2
    model.save(tmp_path / "old")
    cfg = json.loads((tmp_path / "old" / "config.json").read_text())
    for k in ("stack_weight", "linear_terms", "linear_coef"):
        cfg.pop(k)
    (tmp_path / "old" / "config.json").write_text(json.dumps(cfg))
    old = Stage2Model.load(tmp_path / "old")
    np.testing.assert_allclose(old.logit(x), model.raw_score(x) / model.config.temperature)


def test_a_stacked_stage2_explains_its_whole_logit() -> None:
    """With the linear conditional logit stacked in (weight < 1), the contributions still
    add up to the logit the service serves: booster and linear part both explained."""
    from dataclasses import replace

    rng = np.random.default_rng(5)
    x = rng.normal(size=(240, N2))
    x[:, STAGE2.pos["grid"]] = np.tile(np.arange(1.0, 21.0), 12)
    x[:, STAGE2.pos["c_rules_races"]] = 50.0  # well into a rules era: no reset blend
    groups = np.repeat(np.arange(12), 20)
    y = np.zeros(240)
    y[np.arange(12) * 20 + rng.integers(0, 3, size=12)] = 1.0
    cfg = replace(
        Stage2Config(n_estimators=20, min_child_samples=5), stack_weight=0.6, temperature=1.3
    )
    model = Stage2Model.fit(x, y, cfg, groups)
    assert model.config.linear_coef and model.config.linear_mean
    contrib = model.explain_logit(x)
    np.testing.assert_allclose(contrib.sum(axis=1), model.logit(x), atol=1e-9)
    # the linear part shows on the features its terms read (grid among them)
    trees = Stage2Model(replace(model.config, stack_weight=1.0, temperature=1.0), model.booster)
    booster_only = trees.explain_logit(x) * 0.6 / 1.3
    moved = np.abs(contrib - booster_only).max(axis=0)
    assert moved[STAGE2.pos["grid"]] > 1e-6


TEAM_COLS = [STAGE1.pos[n] for n in STAGE1_TEAM_FORM]


def _two_cars_per_team(events: int, teams: int) -> np.ndarray:
    return np.repeat([f"{e}/{t}" for e in range(events) for t in range(teams)], 2)


def test_blank_team_form_blanks_both_cars_of_picked_teams_only() -> None:
    rng = np.random.default_rng(3)
    keys = _two_cars_per_team(20, 10)
    x = rng.normal(size=(len(keys), N1))
    out = blank_team_form(x, keys, 0.3, seed=0)
    blank = np.isnan(out[:, TEAM_COLS])
    assert (blank.all(axis=1) == blank.any(axis=1)).all()  # all team-form columns or none
    picked = blank.all(axis=1)
    assert (picked[0::2] == picked[1::2]).all()  # both cars of a team at an event
    assert 0.2 < picked.mean() < 0.4
    others = [i for i in range(N1) if i not in TEAM_COLS]
    np.testing.assert_array_equal(out[:, others], x[:, others])
    assert not np.isnan(x).any()  # the input is left alone
    np.testing.assert_array_equal(np.isnan(blank_team_form(x, keys, 0.3, seed=0)), np.isnan(out))
    assert not np.isnan(blank_team_form(x, keys, 0.0, seed=0)).any()


def test_a_team_without_history_is_predicted_from_its_practice() -> None:
    """The gap is practice plus team form, which follows practice: fitted without blanked
    teams, a missing team form sends a car wherever LightGBM's default for an unseen NaN
    goes; fitted with them, the model falls back on practice."""
    rng = np.random.default_rng(5)
    keys = _two_cars_per_team(100, 10)
    n = len(keys)
    x = np.full((n, N1), np.nan)
    practice = rng.uniform(0.0, 3.0, n)
    team = practice + rng.normal(scale=0.2, size=n)
    x[:, STAGE1.pos["p_best_gap"]] = practice
    for name in STAGE1_TEAM_FORM:
        x[:, STAGE1.pos[name]] = team
    y = 0.5 * practice + 0.5 * team + rng.normal(scale=0.05, size=n)
    cfg = Stage1Config(n_estimators=150, min_child_samples=10)
    new_team = x.copy()
    new_team[:, TEAM_COLS] = np.nan
    errors = {}
    for share in (0.0, 0.1):
        model = Stage1Model.fit(x, y, replace(cfg, new_team_share=share), keys)
        errors[share] = float(np.mean(np.abs(model.raw_gap(new_team) - y)))
        known = float(np.mean(np.abs(model.raw_gap(x) - y)))
        assert known < 0.2, share  # teams with history are predicted as before
    assert errors[0.1] < 0.5 * errors[0.0], errors


# ------------------------------------------------- Stage-1 without any practice


def _weekends(events: int, field: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stage-1 rows whose gap is the car's pace: practice measures it closely, form
    loosely; 2 % of the rows are cars that ran no practice and were slow (a reserve
    standing in), the only practice-less rows a real training set holds."""
    rng = np.random.default_rng(seed)
    n = events * field
    pace = rng.uniform(0.0, 3.0, n)
    x = np.full((n, N1), np.nan)
    for name in STAGE1_PRACTICE:
        x[:, STAGE1.pos[name]] = pace + rng.normal(scale=0.1, size=n)
    x[:, STAGE1.pos["p_laps"]] = 60.0
    x[:, STAGE1.pos["p_n_sessions"]] = 3.0
    x[:, STAGE1.pos["d_q_gap_ewm"]] = pace + rng.normal(scale=0.3, size=n)
    y = pace + rng.normal(scale=0.05, size=n)
    reserve = rng.random(n) < 0.02
    x = without_practice(x, reserve)
    y[reserve] = 4.0 + rng.normal(scale=0.1, size=int(reserve.sum()))
    return x, y


def test_without_practice_is_how_serving_builds_a_car_with_no_laps() -> None:
    x, _y = _weekends(2, 10, seed=1)
    blank = without_practice(x)
    assert no_practice(blank).all() and not no_practice(x[:3]).any()
    for name in STAGE1_PRACTICE:
        col = blank[:, STAGE1.pos[name]]
        assert (col == 0).all() if name in STAGE1_PRACTICE_COUNTS else np.isnan(col).all()
    others = [i for i, n in enumerate(STAGE1.names) if n not in STAGE1_PRACTICE]
    np.testing.assert_array_equal(blank[:, others], x[:, others])


@pytest.fixture(scope="module")
def weekends_fitted() -> tuple[Stage1Model, Stage1Model, np.ndarray, np.ndarray]:
    """Stage-1 fitted on ``_weekends`` with its form-only and practice-only ensembles and
    without them (the main ensemble alone), and other weekends to ask."""
    x, y = _weekends(60, 20, seed=2)
    cfg = Stage1Config(n_estimators=150, min_child_samples=10)
    model, main_only = Stage1Model.fit(x, y, cfg), Stage1Model.fit(x, y, cfg, form=False)
    assert len(model.form_boosters) == len(model.practice_boosters) == len(cfg.members)
    assert not (main_only.form_boosters or main_only.practice_boosters)
    return model, main_only, *_weekends(10, 20, seed=3)


def test_a_field_without_practice_is_predicted_from_form(weekends_fitted) -> None:
    """Fitted on rows where missing practice means a slow stand-in, the main ensemble
    sends a whole field without practice to the back; the form-only ensemble predicts
    it from form, and leaves every car with practice exactly as the main one does."""
    with_form, main_only, tx, ty = weekends_fitted
    ran = ~no_practice(tx)
    np.testing.assert_array_equal(with_form.raw_gap(tx[ran]), main_only.raw_gap(tx[ran]))
    ahead = without_practice(tx[ran])
    err_form = float(np.mean(np.abs(with_form.predict_gap(ahead) - ty[ran])))
    err_main = float(np.mean(np.abs(main_only.predict_gap(ahead) - ty[ran])))
    assert err_form < 0.5 and err_form < 0.5 * err_main, (err_form, err_main)
    # one model, two ensembles: rows are routed by their own practice, not the field's
    mixed = tx.copy()
    mixed[:5] = without_practice(mixed[:5])
    np.testing.assert_array_equal(with_form.raw_gap(mixed)[:5], with_form.raw_gap(mixed[:5]))
    np.testing.assert_array_equal(
        with_form.raw_gap(mixed)[5:][ran[5:]], main_only.raw_gap(mixed[5:][ran[5:]])
    )
    contrib = with_form.explain_gap(mixed)
    np.testing.assert_allclose(contrib.sum(axis=1), with_form.raw_gap(mixed), atol=1e-9)
    assert (np.abs(contrib[:5, [STAGE1.pos[n] for n in STAGE1_PRACTICE]]) < 1e-12).all()


@pytest.mark.parametrize(
    ("flag", "ensemble", "rows_for_it"),
    [
        ("form_model", "form_boosters", without_practice),
        ("practice_model", "practice_boosters", lambda x: _rules(x, 0.0)),
    ],
)
def test_stage1_save_load_keeps_each_ensemble(tmp_path: Path, flag, ensemble, rows_for_it) -> None:
    """The form-only and the practice-only ensembles are saved and loaded with the main
    one; a model saved before either existed loads without it (its config says so) and
    answers those rows by the main ensemble, as before."""
    import json

    x, y = _weekends(20, 10, seed=4)
    model = Stage1Model.fit(x, y, Stage1Config(n_estimators=20, min_child_samples=5))
    model.save(tmp_path / "m1")
    loaded = Stage1Model.load(tmp_path / "m1")
    rows = rows_for_it(x)
    assert getattr(loaded, ensemble)
    np.testing.assert_array_equal(loaded.raw_gap(rows), model.raw_gap(rows))
    np.testing.assert_array_equal(loaded.raw_gap(x), model.raw_gap(x))
    cfg = json.loads((tmp_path / "m1" / "config.json").read_text())
    del cfg[flag]
    (tmp_path / "m1" / "config.json").write_text(json.dumps(cfg))
    old = Stage1Model.load(tmp_path / "m1")
    assert not getattr(old.config, flag) and not getattr(old, ensemble)
    kept = {"form_boosters": model.form_boosters, "practice_boosters": model.practice_boosters}
    without = Stage1Model(model.config, model.boosters, **(kept | {ensemble: []}))
    np.testing.assert_array_equal(old.raw_gap(rows), without.raw_gap(rows))
    assert not np.array_equal(old.raw_gap(rows), model.raw_gap(rows))


# ------------------------------------ Stage-1 at the first race under new rules


def _rules(x: np.ndarray, races: float) -> np.ndarray:
    out = x.copy()
    out[:, STAGE1.pos["c_rules_races"]] = races
    return out


def test_the_first_race_under_new_rules_is_predicted_from_practice(weekends_fitted) -> None:
    """Rows of the first race under new rules (``c_rules_races`` 0) go to the
    practice-only ensemble: their form (about cars that no longer race) moves nothing;
    every other row, a later race or rules older than the data (NaN), is the main
    ensemble's, and a car without practice the form-only one's."""
    model, main_only, tx, _ty = weekends_fitted
    ran = ~no_practice(tx)
    first, later = _rules(tx[ran], 0.0), _rules(tx[ran], 1.0)
    assert first_under_new_rules(first).all() and not first_under_new_rules(later).any()
    assert not first_under_new_rules(tx).any()  # NaN: rules older than the data
    for rows in (later, tx[ran]):
        np.testing.assert_array_equal(model.raw_gap(rows), main_only.raw_gap(rows))
    stale = first.copy()
    stale[:, STAGE1.pos["d_q_gap_ewm"]] += 2.0  # last season's car was slow
    np.testing.assert_array_equal(model.raw_gap(stale), model.raw_gap(first))
    assert not np.array_equal(main_only.raw_gap(stale), main_only.raw_gap(first))
    np.testing.assert_array_equal(model.raw_gap(first), model.raw_gap(without_form(first)))
    # without practice, the form-only ensemble still answers (form is all there is)
    ahead = _rules(without_practice(tx[ran][:5]), 0.0)
    np.testing.assert_array_equal(model.raw_gap(ahead), model.raw_gap(_rules(ahead, 1.0)))
    # and without a form-only ensemble, the main one: never the practice-only one
    no_form = Stage1Model(model.config, model.boosters, (), model.practice_boosters)
    np.testing.assert_array_equal(no_form.raw_gap(ahead), main_only.raw_gap(ahead))
    # explanations: form contributes nothing on those rows; rows still sum to the gap
    mixed = np.vstack([first[:5], later[:5]])
    contrib = model.explain_gap(mixed)
    np.testing.assert_allclose(contrib.sum(axis=1), model.raw_gap(mixed), atol=1e-9)
    form_cols = [STAGE1.pos[n] for n in STAGE1_FORM]
    assert (np.abs(contrib[:5][:, form_cols]) < 1e-12).all()
    assert (np.abs(contrib[5:][:, form_cols]) > 0).any()


def test_the_rules_count_routes_and_is_not_a_model_input() -> None:
    """``c_rules_races`` steers which ensemble answers; no booster is fitted on it, so
    within an ensemble it moves nothing and explains nothing."""
    x, y = _weekends(30, 10, seed=7)
    model = Stage1Model.fit(x, y, Stage1Config(n_estimators=30, min_child_samples=5))
    for b in model.boosters + model.form_boosters + model.practice_boosters:
        assert "c_rules_races" not in b.feature_name()
        assert len(b.feature_name()) == N1 - 1
    rows = _rules(x[:20], 3.0)
    np.testing.assert_array_equal(model.raw_gap(rows), model.raw_gap(_rules(x[:20], 40.0)))
    assert (model.explain_gap(_rules(x[:20], 0.0))[:, STAGE1.pos["c_rules_races"]] == 0).all()
