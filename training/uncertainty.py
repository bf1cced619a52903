"""How much of a season's score is luck: intervals from resampling its events."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from training.metrics import stage1_events, stage2_events

RESAMPLES = 2000
SEED = 0
LEVEL = 0.9

Stat = Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray]  # per resample (index rows)


def _gap_mae(ev: dict[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
    return np.asarray(ev["err_sum"][idx].sum(axis=1) / ev["n"][idx].sum(axis=1))


def _spearman(ev: dict[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
    rho = ev["rho"][idx]
    ok = ~np.isnan(rho)
    total, count = np.where(ok, rho, 0.0).sum(axis=1), ok.sum(axis=1)
    return np.asarray(np.where(count > 0, total / np.maximum(count, 1), np.nan))


# season metric -> (statistic, +1 if higher is better else -1)
STAGE1_STATS: dict[str, tuple[Stat, int]] = {
    "gap_pct_mae": (_gap_mae, -1),
    "spearman": (_spearman, 1),
}
STAGE2_STATS: dict[str, tuple[Stat, int]] = {
    "winner_log_loss": (lambda ev, idx: np.asarray(ev["winner_log_loss"][idx].mean(axis=1)), -1),
    "top1": (lambda ev, idx: np.asarray(ev["top1"][idx].mean(axis=1)), 1),
}


def resamples(n_events: int, n: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(n, n_events) event indices drawn with replacement, the same for every predictor."""
    return np.random.default_rng(seed).integers(0, n_events, size=(n, n_events))


def interval(values: np.ndarray, level: float = LEVEL) -> list[float] | None:
    """The central ``level`` interval of the finite resampled values (None if none)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return None
    lo, hi = np.quantile(v, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return [float(lo), float(hi)]


def compare(
    events: Mapping[str, dict[str, np.ndarray]], stats: Mapping[str, tuple[Stat, int]]
) -> dict[str, Any]:
    """Per metric: the model's value and interval, and its paired difference to each baseline."""
    model = events["model"]
    n_events = len(next(iter(model.values())))
    if n_events == 0:
        return {}
    idx, all_rows = resamples(n_events), np.arange(n_events)[None, :]
    out: dict[str, Any] = {}
    for metric, (stat, sign) in stats.items():
        m = stat(model, idx)
        rec: dict[str, Any] = {"model": float(stat(model, all_rows)[0]), "interval": interval(m)}
        rec["vs"] = {}
        for name, ev in events.items():
            base = float(stat(ev, all_rows)[0])
            if name == "model" or not math.isfinite(base):
                continue  # e.g. the pole-sitter rule's infinite log loss: nothing to pair
            diff = m - stat(ev, idx)
            rec["vs"][name] = {
                "diff": float(rec["model"] - base),
                "interval": interval(diff),
                "better_share": float(np.mean(sign * diff > 0)),
            }
        out[metric] = rec
    return out


def _described(metrics: dict[str, Any]) -> dict[str, Any]:
    return {"level": LEVEL, "resamples": RESAMPLES, "seed": SEED, "metrics": metrics}


def stage1_intervals(frame: pd.DataFrame, gaps: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Intervals of a Stage-1 season: ``gaps``, predicted gaps by predictor, model first."""
    return _described(compare({k: stage1_events(frame, g) for k, g in gaps.items()}, STAGE1_STATS))


def stage2_intervals(frame: pd.DataFrame, probs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Intervals of a Stage-2 season: ``probs``, win odds by predictor, model first."""
    return _described(compare({k: stage2_events(frame, p) for k, p in probs.items()}, STAGE2_STATS))
