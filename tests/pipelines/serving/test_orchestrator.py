"""The two-stage flow: ranks, pole and win probabilities, the grid, TwoStage."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.features import Entry
from pipelines.serving.errors import RequestError
from pipelines.serving.orchestrator import (
    TwoStage,
    check_given_grid,
    quali_outputs,
    race_grid,
    run,
    unique_ranks,
)


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
    assert dup.value.loc == ["drivers", 1, "grid_position"]
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
