"""Evaluation metrics on hand-made examples (expected values worked out by hand)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from training.metrics import placing_metrics, pole_metrics, stage1_metrics, stage2_metrics


def _s2(races: list[tuple[int, list[float], int | None]]) -> tuple[pd.DataFrame, np.ndarray]:
    """(race id, probabilities, index of the winner or None) -> meta, prob."""
    rows, probs = [], []
    for rid, p, winner in races:
        for i, pi in enumerate(p):
            rows.append({"race_id": rid, "season": 2025, "win": float(i == winner)})
            probs.append(pi)
    return pd.DataFrame(rows), np.array(probs)


def test_stage2_metrics_two_races() -> None:
    # race 1: the favourite (0.5) wins; race 2: a 0.4/0.4 tie at the top, one of them wins
    meta, prob = _s2([(1, [0.5, 0.3, 0.2], 0), (2, [0.4, 0.4, 0.2], 1)])
    m = stage2_metrics(meta, prob)
    assert m["season"] == 2025
    assert m["races"] == 2
    # top-1: 1 for race 1, half credit for the two-way tie in race 2
    assert m["top1"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["winner_log_loss"] == pytest.approx((-math.log(0.5) - math.log(0.4)) / 2)
    sq = [(0.5 - 1) ** 2, 0.3**2, 0.2**2, 0.4**2, (0.4 - 1) ** 2, 0.2**2]
    assert m["brier"] == pytest.approx(sum(sq) / 6)


def test_stage2_tie_credit_is_split_among_all_tied() -> None:
    meta, prob = _s2([(1, [0.25, 0.25, 0.25, 0.25], 3)])
    assert stage2_metrics(meta, prob)["top1"] == pytest.approx(0.25)
    # a miss gets nothing, a tie the winner is not part of gets nothing
    meta, prob = _s2([(1, [0.4, 0.4, 0.2], 2)])
    assert stage2_metrics(meta, prob)["top1"] == 0.0


def test_stage2_skips_races_without_a_winner_and_handles_zero() -> None:
    meta, prob = _s2([(1, [0.6, 0.4], 0), (2, [0.5, 0.5], None), (3, [1.0, 0.0], 1)])
    m = stage2_metrics(meta, prob)
    assert m["races"] == 2
    assert m["top1"] == pytest.approx(0.5)
    assert m["winner_log_loss"] == math.inf  # a certain loser won
    # Brier still counts every row
    y = np.array([1, 0, 0, 0, 0, 1.0])
    assert m["brier"] == pytest.approx(np.mean((prob - y) ** 2))


def _s1() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "race_id": [1, 1, 1, 1, 2, 2, 2, 3, 3],
            "season": 2025,
            "best_s": [80.0, 80.2, 80.5, 81.0, 90.0, 90.9, 91.8, 70.0, 70.7],
            "gap_pct": [0.0, 0.25, 0.625, 1.25, 0.0, 1.0, 2.0, 0.0, 1.0],
            "dry": [True] * 4 + [False] * 3 + [True] * 2,
        }
    )


def test_stage1_metrics_hand_made() -> None:
    meta = _s1()
    pred_time = meta["best_s"].to_numpy() + np.array(
        [0.1, -0.2, 0.3, 0.0, 1.0, -1.0, 2.0, 0.5, 0.5]
    )
    # event 1: the predicted order is right; event 2: exactly reversed; event 3 has two rows
    pred_gap = np.array([0.1, 0.2, 0.7, 1.0, 2.0, 1.0, 0.0, 1.0, 0.0])
    m = stage1_metrics(meta, pred_time, pred_gap)
    err = [0.1, 0.2, 0.3, 0.0, 1.0, 1.0, 2.0, 0.5, 0.5]
    assert m["season"] == 2025
    assert (m["events"], m["rows"]) == (3, 9)
    assert m["mae_s"] == pytest.approx(sum(err) / 9)
    dry = [0.1, 0.2, 0.3, 0.0, 0.5, 0.5]
    assert m["mae_dry_s"] == pytest.approx(sum(dry) / 6)
    assert m["median_ae_s"] == pytest.approx(sorted(err)[4])  # 5th of 9: 0.5
    gap_err = np.abs(pred_gap - meta["gap_pct"].to_numpy())
    assert m["gap_pct_mae"] == pytest.approx(gap_err.mean())
    # per-event Spearman: +1 and -1 (event 3 has too few rows), mean 0
    assert m["spearman"] == pytest.approx(0.0)
    assert m["dry_events"] == 2
    # the dry events alone (1 and 3): event 2, reversed and wet, is left out of both
    dry_rows = meta["dry"].to_numpy(bool)
    assert m["gap_pct_mae_dry"] == pytest.approx(gap_err[dry_rows].mean())
    assert m["gap_pct_mae_dry"] < m["gap_pct_mae"]
    assert m["spearman_dry"] == pytest.approx(1.0)


def test_stage1_spearman_is_per_event_not_pooled() -> None:
    """Pooled over events the ranks would look good (events differ in scale)."""
    meta = _s1().iloc[:7].reset_index(drop=True)
    pred_gap = np.array([0.0, 0.3, 0.6, 1.2, 2.0, 1.8, 1.6])  # event 2 reversed, but larger
    m = stage1_metrics(meta, meta["best_s"].to_numpy(), pred_gap)
    pooled = spearmanr(pred_gap, meta["gap_pct"]).statistic
    assert m["spearman"] == pytest.approx((1.0 + -1.0) / 2)
    assert abs(pooled) > 0.2  # so a pooled implementation would not give 0


def test_stage1_metrics_without_dry_events() -> None:
    meta = _s1().assign(dry=False)
    m = stage1_metrics(meta, meta["best_s"].to_numpy(), meta["gap_pct"].to_numpy())
    assert m["mae_dry_s"] is None
    assert m["gap_pct_mae_dry"] is None and m["spearman_dry"] is None
    assert m["mae_s"] == 0.0
    assert m["spearman"] == pytest.approx(1.0)


def test_podium_metrics_by_hand() -> None:
    """Two races of four: race 1's three most likely cars are its podium; in race 2 the
    favourite misses it (two of three found)."""
    meta = pd.DataFrame(
        {
            "race_id": [1] * 4 + [2] * 4,
            "season": 2025,
            "podium": [1, 1, 1, 0, 0, 1, 1, 1],
        }
    )
    prob = np.array([0.9, 0.8, 0.7, 0.6, 0.9, 0.8, 0.7, 0.6])
    m = placing_metrics(meta, prob)
    y = meta["podium"].to_numpy(float)
    assert m["season"] == 2025 and m["races"] == 2 and m["rows"] == 8
    assert m["brier"] == pytest.approx(np.mean((prob - y) ** 2))
    ll = -np.mean([math.log(p) if yy else math.log(1 - p) for p, yy in zip(prob, y, strict=True)])
    assert m["log_loss"] == pytest.approx(ll)
    assert m["top3_hits"] == pytest.approx((1.0 + 2 / 3) / 2)


def test_points_metrics_count_the_top_ten() -> None:
    """A 12-car race: the ten most likely are nine of the ten that scored."""
    scored = [1] * 9 + [0, 1, 0]
    meta = pd.DataFrame({"race_id": [1] * 12, "season": 2025, "points": scored})
    prob = np.linspace(0.99, 0.4, 12)
    m = placing_metrics(meta, prob, "points", 10)
    assert m["top10_hits"] == pytest.approx(0.9)
    assert "top3_hits" not in m
    assert m["brier"] == pytest.approx(np.mean((prob - np.array(scored, float)) ** 2))


def test_podium_log_loss_is_finite_for_certain_misses() -> None:
    meta = pd.DataFrame({"race_id": [1] * 4, "season": 2025, "podium": [1, 1, 1, 0]})
    m = placing_metrics(meta, np.array([1.0, 1.0, 0.0, 1.0]))
    assert math.isfinite(m["log_loss"]) and m["log_loss"] > 10


def test_pole_win_share_counts_wins_from_the_best_slot() -> None:
    from training.metrics import pole_win_share

    meta = pd.DataFrame(
        {
            "race_id": [1, 1, 2, 2, 3, 3, 4, 4],
            # race 3: the pole-sitter started from the pit lane, slot 2 is the best one
            "grid": [1, 2, 1, 2, 20, 2, 1, 2],
            "win": [1, 0, 0, 1, 0, 1, 0, 0],  # race 4: no classified winner
        }
    )
    assert pole_win_share(meta) == pytest.approx(2 / 3)
    assert pole_win_share(meta[meta["race_id"] == 4]) is None


def test_pole_metrics_by_hand() -> None:
    # event 1: the second car took pole (0.3); event 2: odds 0.4/0.4 over the cars with a
    # lap (a car without one had 0.2): renormalised to a tie, the pole-sitter in it;
    # event 3: the pole-sitter set no lap in the rows, not scored
    meta = pd.DataFrame(
        {
            "race_id": [1, 1, 1, 2, 2, 3, 3],
            "season": 2025,
            "q_pos": [2.0, 1.0, 3.0, 1.0, 2.0, 2.0, 3.0],
        }
    )
    prob = np.array([0.5, 0.3, 0.2, 0.4, 0.4, 0.6, 0.4])
    m = pole_metrics(meta, prob)
    assert m["season"] == 2025 and m["events"] == 2
    assert m["log_loss"] == pytest.approx((-math.log(0.3) - math.log(0.5)) / 2)
    assert m["top1"] == pytest.approx((0.0 + 0.5) / 2)
    sq = [0.5**2, 0.7**2, 0.2**2, 0.5**2, 0.5**2]
    assert m["brier"] == pytest.approx(sum(sq) / 5)
    # a certain miss is an infinite log loss, no event at all is no score
    assert pole_metrics(meta.iloc[:3], np.array([1.0, 0.0, 0.0]))["log_loss"] == math.inf
    none = pole_metrics(meta.iloc[5:], prob[5:])
    assert none["events"] == 0 and none["log_loss"] is None
