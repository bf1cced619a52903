"""Season intervals from resampled events, on hand-made seasons."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from training.metrics import stage1_metrics, stage2_metrics
from training.report import intervals_section
from training.uncertainty import (
    RESAMPLES,
    STAGE2_STATS,
    compare,
    interval,
    resamples,
    stage1_intervals,
    stage2_intervals,
)


def _season(n_races: int, winner_prob: list[float]) -> pd.DataFrame:
    """Races of 4 starters, the first one wins; the model gives it ``winner_prob[r]``."""
    rows = []
    for r in range(n_races):
        pw = winner_prob[r]
        for i in range(4):
            rows.append(
                {
                    "race_id": 100 + r,
                    "season": 2030,
                    "win": float(i == 0),
                    "grid": float(i + 1),
                    "prob": pw if i == 0 else (1.0 - pw) / 3.0,
                    "uniform": 0.25,
                }
            )
    return pd.DataFrame(rows)


def test_resamples_are_seeded_and_in_range() -> None:
    a, b = resamples(7, n=50, seed=3), resamples(7, n=50, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (50, 7) and a.min() >= 0 and a.max() <= 6
    assert not np.array_equal(a, resamples(7, n=50, seed=4))


def test_interval_is_the_central_share_of_finite_values() -> None:
    v = np.r_[np.arange(101.0), np.inf, np.nan]
    assert interval(v, 0.9) == pytest.approx([5.0, 95.0])
    assert interval(np.array([np.inf])) is None


def test_a_season_of_identical_races_has_no_spread() -> None:
    f = _season(6, [0.5] * 6)
    iv = stage2_intervals(f, {"model": f["prob"].to_numpy(), "uniform": f["uniform"].to_numpy()})
    ll = iv["metrics"]["winner_log_loss"]
    assert ll["model"] == pytest.approx(math.log(2))
    assert ll["interval"] == pytest.approx([math.log(2), math.log(2)])
    vs = ll["vs"]["uniform"]
    assert vs["diff"] == pytest.approx(math.log(2) - math.log(4))
    assert vs["interval"] == pytest.approx([vs["diff"], vs["diff"]])
    assert vs["better_share"] == 1.0  # lower log loss in every resample
    assert iv["resamples"] == RESAMPLES and iv["level"] == 0.9


def test_the_values_are_the_season_metrics_and_the_interval_holds_them() -> None:
    rng = np.random.default_rng(0)
    f = _season(20, list(rng.uniform(0.1, 0.9, 20)))
    iv = stage2_intervals(f, {"model": f["prob"].to_numpy()})["metrics"]
    m = stage2_metrics(f, f["prob"].to_numpy())
    for k in ("winner_log_loss", "top1"):
        assert iv[k]["model"] == pytest.approx(m[k])
        lo, hi = iv[k]["interval"]
        assert lo < hi  # the races differ, so the resamples do
    lo, hi = iv["winner_log_loss"]["interval"]
    assert lo <= m["winner_log_loss"] <= hi


def test_paired_differences_cancel_what_both_share() -> None:
    """A baseline worse by the same amount in every race: the paired difference has no
    spread even though each predictor's own interval is wide."""
    rng = np.random.default_rng(1)
    ll = rng.uniform(0.2, 3.0, 30)
    events = {
        "model": {"winner_log_loss": ll, "top1": np.ones(30)},
        "worse": {"winner_log_loss": ll + 0.1, "top1": np.ones(30)},
    }
    rec = compare(events, STAGE2_STATS)["winner_log_loss"]
    lo, hi = rec["interval"]
    assert hi - lo > 0.3
    assert rec["vs"]["worse"]["interval"] == pytest.approx([-0.1, -0.1])
    assert rec["vs"]["worse"]["better_share"] == 1.0


def test_an_infinite_baseline_is_not_paired() -> None:
    events = {
        "model": {"winner_log_loss": np.array([0.5, 1.0]), "top1": np.array([1.0, 0.0])},
        "pole": {"winner_log_loss": np.array([0.0, math.inf]), "top1": np.array([1.0, 0.0])},
    }
    out = compare(events, STAGE2_STATS)
    assert "pole" not in out["winner_log_loss"]["vs"]
    assert out["top1"]["vs"]["pole"]["diff"] == 0.0


def test_stage1_intervals_match_the_season_metrics() -> None:
    meta = pd.DataFrame(
        {
            "race_id": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3],
            "season": 2030,
            "best_s": 80.0,
            "dry": True,
            "gap_pct": [0.0, 0.5, 1.0, 0.0, 0.3, 2.0, 0.0, 0.1, 0.2, 0.4],
        }
    )
    pred = np.array([0.1, 0.4, 1.2, 0.2, 0.1, 1.0, 0.0, 0.2, 0.1, 0.5])
    iv = stage1_intervals(meta, {"model": pred})["metrics"]
    m = stage1_metrics(meta, np.full(len(meta), 80.0), pred)
    assert iv["gap_pct_mae"]["model"] == pytest.approx(m["gap_pct_mae"])
    assert iv["spearman"]["model"] == pytest.approx(m["spearman"])
    # gap MAE pools rows: resampling the event with 4 rows weighs it by its rows
    lo, hi = iv["gap_pct_mae"]["interval"]
    assert lo <= m["gap_pct_mae"] <= hi


def test_the_report_section_names_every_flow_and_baseline() -> None:
    f = _season(5, [0.4, 0.6, 0.3, 0.7, 0.5])
    probs = {"model": f["prob"].to_numpy(), "uniform": f["uniform"].to_numpy()}
    ev = {
        "stage1": {},
        "stage2": {
            "intervals": {
                "test": stage2_intervals(f, probs),
                "test_chained": stage2_intervals(f, probs),
            }
        },
    }
    text = intervals_section(ev)
    assert "## How sure: 90% intervals" in text
    assert "| stage-2 after qualifying winner_log_loss |" in text
    assert "| stage-2 before qualifying top1 |" in text
    assert "uniform -" in text and "100%" in text
    assert intervals_section({"stage1": {}, "stage2": {}}) == ""
