"""Turning model outputs into answers: ranks, pole and win probabilities, the Predictor."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.features import Entry
from pipelines.predict import Predictor, quali_outputs, race_gap, race_grid, unique_ranks


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


def test_race_grid_and_gap_prefer_known_values() -> None:
    entries = [Entry("a", grid=3.0, quali_time=80.5), Entry("b", quali_time=80.0), Entry("c")]
    grid = race_grid(entries, np.array([1, 2, 3]))
    assert grid.tolist() == [3.0, 2.0, 3.0]
    est = np.array([0.1, 0.2, 0.3])
    # not every car has a time: Stage-1's estimates
    np.testing.assert_array_equal(race_gap(entries, est), est)
    entries[2].quali_time = 81.0
    np.testing.assert_allclose(race_gap(entries, est), [0.625, 0.0, 1.25])


def test_predictor_end_to_end_on_synthetic_models(tiny_models, synthetic_tables) -> None:
    tree, _t = synthetic_tables
    snap, s1, s2 = tiny_models
    pred = Predictor(snap, s1, s2)
    ctx = snap.event_by_round(2024, 2)
    entries = snap.entries(ctx)
    q = pred.quali(ctx, entries, snap.field_practice(ctx))
    assert sorted(q.grid.tolist()) == list(range(1, len(entries) + 1))
    assert q.pole_prob.sum() == pytest.approx(1.0)
    assert np.isfinite(q.pole_s) and q.pole_s > 0
    win = pred.race(ctx, entries, q)
    assert win.shape == (len(entries),)
    assert win.sum() == pytest.approx(1.0)
    assert {e.driver_id for e in entries} == set(tree.race(2024, 2).quali)
