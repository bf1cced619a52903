"""The podium baseline: historical podium frequency by grid slot, scaled per race."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.baselines import PODIUM_SLOTS, placing_by_grid
from training.datasets import StageData


def _data(races: list[list[tuple[float, int]]]) -> StageData:
    """One list per race of (grid slot, podium 0/1)."""
    rows = [
        {"race_id": r, "season": 2020, "grid": g, "podium": float(p)}
        for r, race in enumerate(races)
        for g, p in race
    ]
    meta = pd.DataFrame(rows)
    return StageData(np.zeros((len(meta), 1)), np.zeros(len(meta)), meta)


def test_frequencies_follow_the_slots_and_sum_to_three_per_race() -> None:
    # training: 20-car races where slots 1-3 always finish on the podium
    train = _data([[(g, int(g <= 3)) for g in range(1, 21)] for _ in range(50)])
    test = _data([[(g, 0) for g in range(1, 21)], [(g, 0) for g in (2, 5, 9, 14, 17, 20)]])
    p = placing_by_grid(train, test, prior=0.0)
    first = p[:20]
    np.testing.assert_allclose(first[:3], 1.0)
    np.testing.assert_allclose(first[3:], 0.0, atol=1e-12)
    for r in (0, 1):
        m = test.meta["race_id"].to_numpy() == r
        assert p[m].sum() == pytest.approx(3.0)
        assert (p[m] <= 1.0 + 1e-12).all() and (p[m] >= 0).all()
    # race 2 has only slot 2 of the usual podium: capped at 1, the rest share the other 2
    second = p[20:]
    assert second[0] == pytest.approx(1.0)
    np.testing.assert_allclose(second[1:], 2.0 / 5.0)


def test_shrinkage_and_slots_past_the_last_share_one_rate() -> None:
    train = _data([[(1, 1), (2, 1), (3, 1), (25, 0)], [(1, 0), (2, 1), (3, 1), (24, 1)]])
    test = _data([[(1, 0), (2, 0), (3, 0), (PODIUM_SLOTS + 5, 0)]])
    p = placing_by_grid(train, test, prior=2.0)
    assert p.sum() == pytest.approx(3.0)
    assert p[1] == pytest.approx(p[2])  # slots 2 and 3: two podiums in two starts each
    assert p[0] < p[1]  # slot 1: one in two
    assert p[3] == pytest.approx(p[0])  # slots 24 and 25 pooled: one in two, like slot 1


def test_the_points_rate_by_slot_sums_to_ten_per_race() -> None:
    """The same baseline for a top-10 finish: slots 1-10 always score in training."""
    rows = [
        {"race_id": r, "season": 2020, "grid": g, "points": float(g <= 10)}
        for r in range(30)
        for g in range(1, 21)
    ]
    meta = pd.DataFrame(rows)
    train = StageData(np.zeros((len(meta), 1)), np.zeros(len(meta)), meta)
    test = _data([[(g, 0) for g in range(1, 21)], [(g, 0) for g in (1, 4, 12)]])
    p = placing_by_grid(train, test, prior=0.0, flag="points", k=10)
    np.testing.assert_allclose(p[:10], 1.0)
    np.testing.assert_allclose(p[10:20], 0.0, atol=1e-12)
    np.testing.assert_allclose(p[20:], 1.0)  # three starters: all of them score
