"""The two-stage flow: ranks, pole and win probabilities, the grid, TwoStage."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from pipelines.features.event import Entry, EventField
from pipelines.models.placings import classified_top_k
from pipelines.models.stage2 import GRID_TERMS, Stage2Model, linear_design
from pipelines.serving.errors import RequestError
from pipelines.serving.orchestrator import (
    TwoStage,
    quali_outputs,
    race_grid,
    race_outputs,
    run,
    unique_ranks,
)
from pipelines.serving.resolve import check_given_grid


def test_unique_ranks_are_one_to_n_by_value() -> None:
    v = np.array([0.3, 0.0, 1.2, 0.7])
    r = unique_ranks(v, ["a", "b", "c", "d"])
    assert r.tolist() == [2, 1, 4, 3]


def test_unique_ranks_break_ties_by_key_not_position() -> None:
    v = np.array([0.5, 0.1, 0.5, 0.5])
    keys = ["zhou", "max", "alonso", "norris"]
    r = unique_ranks(v, keys)
    assert sorted(r.tolist()) == [1, 2, 3, 4]
    assert r[1] == 1
    # the three tied at 0.5 are ordered by key: alonso, norris, zhou
    assert (r[2], r[3], r[0]) == (2, 3, 4)
    # the same field listed in another order gets the same ranks per driver
    perm = [3, 0, 2, 1]
    r2 = unique_ranks(v[perm], [keys[i] for i in perm])
    assert dict(zip([keys[i] for i in perm], r2.tolist(), strict=True)) == dict(
        zip(keys, r.tolist(), strict=True)
    )


def test_unique_ranks_put_nan_last() -> None:
    v = np.array([np.nan, 0.2, np.nan, 0.1])
    r = unique_ranks(v, ["b", "x", "a", "y"])
    assert r.tolist() == [4, 2, 3, 1]


def test_quali_outputs() -> None:
    gap = np.array([0.4, 0.0, 1.1, 0.4])
    out = quali_outputs(gap, 80.0, 0.2, ["d", "a", "c", "b"])
    assert out.pole_prob.sum() == pytest.approx(1.0)
    assert np.argmax(out.pole_prob) == 1
    assert out.pole_prob[0] == pytest.approx(out.pole_prob[3])  # same gap, same chance
    np.testing.assert_allclose(out.time_s, 80.0 * (1 + gap / 100))
    assert out.time_s[1] == 80.0
    assert out.grid.tolist() == [3, 1, 4, 2]
    assert out.pole_s == 80.0


def _q(gap: list[float], pole: float = 80.0) -> object:
    return quali_outputs(np.array(gap), pole, 0.2, [f"d{i}" for i in range(len(gap))])


def test_race_grid_follows_given_times_and_keeps_slots_unique() -> None:
    """A given qualifying time places a car even without a grid position (it used to be
    ignored: Stage-2 then saw Stage-1's slot with the given time's gap), and mixing
    given and estimated slots never duplicates a position."""
    q = _q([0.0, 0.5, 1.0, 1.5])  # predicted: 80.0, 80.4, 80.8, 81.2 s
    entries = [Entry("d0"), Entry("d1"), Entry("d2", quali_time=79.9), Entry("d3", grid=1.0)]
    grid, gap = race_grid(entries, q)
    # d3 keeps slot 1; the rest by time: d2 (79.9 given), d0 (80.0), d1 (80.4)
    assert grid.tolist() == [3.0, 4.0, 2.0, 1.0]
    assert sorted(grid.tolist()) == [1.0, 2.0, 3.0, 4.0]
    np.testing.assert_allclose(gap[2], 0.0)  # the fastest time is the pole
    np.testing.assert_allclose(gap[0], (80.0 / 79.9 - 1) * 100)


def test_race_grid_without_given_values_is_stage1s() -> None:
    q = _q([0.3, 0.0, 0.9])
    grid, gap = race_grid([Entry("d0"), Entry("d1"), Entry("d2")], q)
    assert grid.tolist() == [2.0, 1.0, 3.0]
    np.testing.assert_array_equal(gap, q.gap_pct)


def test_race_grid_given_slots_never_collide_with_estimates() -> None:
    q = _q([0.0, 0.1, 0.2, 0.3, 0.4])
    entries = [Entry("d0"), Entry("d1", grid=1.0), Entry("d2", grid=2.0), Entry("d3"),
               Entry("d4", grid=5.0)]  # fmt: skip
    grid, _ = race_grid(entries, q)
    assert grid.tolist() == [3.0, 1.0, 2.0, 4.0, 5.0]


def test_race_grid_anchors_times_when_there_is_no_pole_estimate() -> None:
    q = _q([0.0, 1.0, 2.0], pole=float("nan"))
    entries = [Entry("d0"), Entry("d1", quali_time=70.0), Entry("d2")]
    grid, gap = race_grid(entries, q)
    assert sorted(grid.tolist()) == [1.0, 2.0, 3.0] and np.isfinite(gap).all()
    assert grid[0] == 1.0  # predicted 1 % faster than the given 70.0 s


def test_given_grid_must_be_unique_and_within_the_field() -> None:
    with pytest.raises(RequestError) as dup:
        check_given_grid([Entry("a", grid=2.0), Entry("b", grid=2.0)], [0, 1])
    assert dup.value.detail[0]["loc"] == ["body", "drivers", 1, "grid_position"]
    with pytest.raises(RequestError, match="field has 2 cars"):
        check_given_grid([Entry("a", grid=3.0), Entry("b")], [0, 1])
    check_given_grid([Entry("a", grid=2.0), Entry("b")], [0, 1])


def test_two_stage_end_to_end_on_synthetic_models(tiny_models, synthetic_tables) -> None:
    tree, _t = synthetic_tables
    snap, s1, s2 = tiny_models
    flow = TwoStage.local(snap, s1, s2)
    ctx = snap.event_by_round(2024, 2)
    fld = snap.event_field(ctx)
    fc = run(flow.full(ctx, fld, np.arange(len(fld.entries))))
    q = fc.quali
    assert sorted(q.grid.tolist()) == list(range(1, len(fld.entries) + 1))
    assert q.pole_prob.sum() == pytest.approx(1.0)
    assert np.isfinite(q.pole_s) and q.pole_s > 0
    assert fc.race is not None
    assert fc.race.win_prob.shape == (len(fld.entries),)
    assert fc.race.win_prob.sum() == pytest.approx(1.0)
    assert {e.driver_id for e in fld.entries} == set(tree.race(2024, 2).quali)


# ------------------------------------------------- explanations, placings, names


def _counting(fn):
    calls: list[int] = []

    async def wrapped(rows: np.ndarray) -> np.ndarray:
        calls.append(len(rows))
        return await fn(rows)

    return wrapped, calls


def _counted_flow(snap, s1, s2):
    base = TwoStage.local(snap, s1, s2)
    assert base.explain1 is not None and base.explain2 is not None
    e1, calls1 = _counting(base.explain1)
    e2, calls2 = _counting(base.explain2)
    flow = TwoStage(snap, s1.config, s2.config, base.stage1, base.stage2, e1, e2)
    return flow, calls1, calls2


def test_explanations_are_free_when_not_asked(tiny_models) -> None:
    snap, s1, s2 = tiny_models
    flow, calls1, calls2 = _counted_flow(snap, s1, s2)
    ctx = snap.event_by_round(2024, 2)
    fld = snap.event_field(ctx)
    fc = run(flow.full(ctx, fld, np.arange(len(fld.entries))))
    assert calls1 == [] and calls2 == []
    assert fc.quali.contrib is None and fc.race is not None and fc.race.contrib is None
    fc = run(flow.full(ctx, fld, np.arange(len(fld.entries)), explain=True))
    assert calls1 == [len(fld.entries)] and calls2 == [len(fld.entries)]  # the whole field
    assert fc.quali.contrib is not None and fc.race is not None and fc.race.contrib is not None


def test_explained_flow_gives_the_same_numbers(tiny_models) -> None:
    snap, s1, s2 = tiny_models
    flow = TwoStage.local(snap, s1, s2)
    ctx = snap.event_by_round(2024, 2)
    fld = snap.event_field(ctx)
    plain = run(flow.full(ctx, fld, np.arange(len(fld.entries))))
    told = run(flow.full(ctx, fld, np.arange(len(fld.entries)), explain=True))
    assert plain.race is not None and told.race is not None
    np.testing.assert_array_equal(plain.quali.gap_raw, told.quali.gap_raw)
    np.testing.assert_array_equal(plain.race.logit, told.race.logit)
    np.testing.assert_array_equal(plain.race.points_prob, told.race.points_prob)


def test_a_flow_without_explainers_says_so(tiny_models) -> None:
    snap, s1, s2 = tiny_models
    base = TwoStage.local(snap, s1, s2)
    flow = TwoStage(snap, s1.config, s2.config, base.stage1, base.stage2)
    ctx = snap.event_by_round(2024, 2)
    fld = snap.event_field(ctx)
    run(flow.full(ctx, fld, np.arange(len(fld.entries))))  # fine without explaining
    with pytest.raises(RuntimeError, match="no stage-1 explainer"):
        run(flow.quali(ctx, fld, np.arange(len(fld.entries)), explain=True))


def test_a_field_without_practice_has_its_own_pole_temperature(tiny_models) -> None:
    snap, s1, s2 = tiny_models
    base = TwoStage.local(snap, s1, s2)
    c1 = replace(s1.config, pole_tau=0.3, pole_tau_ahead=2.0)
    ctx = snap.event_by_round(2024, 2)
    with_laps = snap.event_field(ctx)
    cars = [
        Entry(driver_id=e.driver_id, constructor_id=e.constructor_id) for e in with_laps.entries
    ]
    no_laps = EventField(cars, {}, as_in_data=False)
    # without a temperature of its own, a field without laps takes the other one
    for ahead, tau_ahead in ((2.0, 2.0), (None, 0.3)):
        flow = TwoStage(
            snap, replace(c1, pole_tau_ahead=ahead), s2.config, base.stage1, base.stage2
        )
        for fld, tau in ((with_laps, 0.3), (no_laps, tau_ahead)):
            q = run(flow.quali(ctx, fld, np.arange(len(fld.entries)))).quali
            want = np.exp(-(q.gap_pct - q.gap_pct.min()) / tau)
            np.testing.assert_allclose(q.pole_prob, want / want.sum())


def test_explainer_of_the_wrong_shape_is_refused(tiny_models) -> None:
    snap, s1, s2 = tiny_models
    base = TwoStage.local(snap, s1, s2)

    async def short(rows: np.ndarray) -> np.ndarray:
        return np.zeros((len(rows), rows.shape[1]))  # no base column

    flow = TwoStage(snap, s1.config, s2.config, base.stage1, base.stage2, short, short)
    ctx = snap.event_by_round(2024, 2)
    fld = snap.event_field(ctx)
    with pytest.raises(RuntimeError, match="explainer returned"):
        run(flow.quali(ctx, fld, np.arange(len(fld.entries)), explain=True))


def test_race_outputs_carry_podium_and_points_over_the_field(tiny_models) -> None:
    snap, s1, s2 = tiny_models
    flow = TwoStage.local(snap, s1, s2)
    ctx = snap.event_by_round(2024, 2)
    fld = snap.event_field(ctx)
    fc = run(flow.full(ctx, fld, np.arange(len(fld.entries))))
    race = fc.race
    assert race is not None
    n = len(fld.entries)
    assert race.podium_prob.sum() == pytest.approx(min(3, n), abs=1e-9)
    assert race.points_prob.sum() == pytest.approx(min(10, n), abs=1e-9)
    assert (race.win_prob <= race.podium_prob).all()
    assert (race.podium_prob <= race.points_prob).all()


def test_race_outputs_on_a_bigger_field() -> None:
    logit = np.linspace(2.0, -3.0, 20)
    ids = [f"d{i:02d}" for i in range(20)]
    out = race_outputs(np.arange(1.0, 21.0), np.zeros(20), logit, ids)
    assert out.win_prob.sum() == pytest.approx(1.0)
    assert out.podium_prob.sum() == pytest.approx(3.0, abs=1e-9)
    assert out.points_prob.sum() == pytest.approx(10.0, abs=1e-9)
    assert (np.diff(out.podium_prob) < 0).all() and (np.diff(out.points_prob) < 0).all()
    assert (out.win_prob <= out.podium_prob).all() and (out.podium_prob <= out.points_prob).all()


def test_race_outputs_classify_at_stage2s_finish_rate(tiny_models) -> None:
    """Cars other than the winner may retire: the flow passes Stage-2's finish rate to
    the podium and points odds; the win probabilities do not move."""
    snap, s1, s2 = tiny_models
    ctx = snap.event_by_round(2024, 2)
    fld = snap.event_field(ctx)
    rows = np.arange(len(fld.entries))
    every = run(TwoStage.local(snap, s1, s2).full(ctx, fld, rows)).race
    s2r = Stage2Model(replace(s2.config, finish_rate=0.85), s2.booster)
    some = run(TwoStage.local(snap, s1, s2r).full(ctx, fld, rows)).race
    assert every is not None and some is not None
    np.testing.assert_array_equal(some.win_prob, every.win_prob)
    want = classified_top_k(some.logit, (3, 10), 0.85)
    np.testing.assert_allclose(some.podium_prob, want[0], atol=1e-12)
    np.testing.assert_allclose(some.points_prob, want[1], atol=1e-12)
    assert some.podium_prob.sum() < every.podium_prob.sum()
    assert some.podium_prob.max() < every.podium_prob.max()  # the favourite may retire


def test_forecast_carries_f1db_names(tiny_models) -> None:
    snap, s1, s2 = tiny_models
    flow = TwoStage.local(snap, s1, s2)
    ctx = snap.event_by_round(2024, 2)
    fld = snap.event_field(ctx, [Entry("jane-rookie", "new-team")])
    fc = run(flow.quali(ctx, fld, np.arange(len(fld.entries))))
    names = dict(zip([e.driver_id for e in fld.entries], fc.driver_names, strict=True))
    teams = dict(zip([e.driver_id for e in fld.entries], fc.constructor_names, strict=True))
    assert names["max-verstappen"] == "Max Verstappen" and teams["max-verstappen"] == "Red-Bull"
    assert names["jane-rookie"] is None and teams["jane-rookie"] is None


# -------------------------------------------------- real rows: additivity


@pytest.fixture(scope="module")
def real_flow(trained) -> TwoStage:
    return TwoStage.local(trained.snapshot, trained.stage1, trained.stage2)


@pytest.mark.slow
@pytest.mark.parametrize(("season", "rnd"), [(2025, 8), (2024, 5), (2023, 1), (2022, 2)])
def test_contributions_add_up_to_the_raw_outputs_on_real_rows(
    real_flow: TwoStage, trained, season: int, rnd: int
) -> None:
    """base + contributions = Stage-1's unclipped gap and Stage-2's logit, per driver,
    for real events through the served flow (full field, before qualifying)."""
    snap = trained.snapshot
    ctx = snap.event_by_round(season, rnd)
    fld = snap.event_field(ctx)
    fc = run(real_flow.full(ctx, fld, np.arange(len(fld.entries)), explain=True))
    assert fc.quali.contrib is not None and fc.race is not None and fc.race.contrib is not None
    raw_gap = trained.stage1.raw_gap(snap.stage1_rows(ctx, fld))
    np.testing.assert_allclose(fc.quali.contrib.sum(axis=1), raw_gap, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(np.clip(raw_gap, 0, None), fc.quali.gap_pct)
    np.testing.assert_allclose(fc.race.contrib.sum(axis=1), fc.race.logit, rtol=0, atol=1e-9)
    # the answers' explanation objects keep the sum (top 5 + "other")
    from pipelines.serving.responses import quali_predictions, race_predictions

    by_q = {p.driver_id: p for p in quali_predictions(fc)}
    by_r = {p.driver_id: p for p in race_predictions(fc)}
    for i, e in enumerate(fld.entries):
        qe, re_ = by_q[e.driver_id].explanation, by_r[e.driver_id].explanation
        assert qe is not None and re_ is not None
        assert qe.unit == "gap %" and re_.unit == "log-odds"
        assert len(qe.contributions) == len(re_.contributions) == 6
        assert qe.base + sum(c.value for c in qe.contributions) == pytest.approx(
            raw_gap[i], abs=1e-6
        )
        assert re_.base + sum(c.value for c in re_.contributions) == pytest.approx(
            fc.race.logit[i], abs=1e-6
        )


@pytest.mark.slow
@pytest.mark.parametrize(("rnd", "share"), [(1, 1.0), (3, 0.5), (6, 0.0)])
def test_early_races_under_new_rules_lean_on_the_grid(
    real_flow: TwoStage, trained, rnd: int, share: float
) -> None:
    """2022's new rules, through the served flow: the first race forecast from the grid
    alone, the third half and half, the sixth by the full model."""
    from dataclasses import replace

    from pipelines.models.stage2 import Stage2Model

    snap, m2 = trained.snapshot, trained.stage2
    ctx = snap.event_by_round(2022, rnd)
    fld = snap.event_field(ctx)
    fc = run(real_flow.full(ctx, fld, np.arange(len(fld.entries))))
    assert fc.race is not None
    x2 = snap.stage2_rows(ctx, fld.entries, fc.race.grid, fc.race.q_gap)
    plain = Stage2Model(replace(m2.config, reset_weight=0.0), m2.booster)
    grid = linear_design(x2, GRID_TERMS) @ np.asarray(m2.config.grid_coef)  # the grid-only logit
    expected = (1.0 - share) * plain.logit(x2) + share * grid
    np.testing.assert_allclose(fc.race.logit, expected, rtol=0, atol=1e-12)
    if share:
        assert not np.allclose(fc.race.logit, plain.logit(x2))
