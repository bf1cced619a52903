"""Turning model outputs into answers: grid estimates, pole and win probabilities.

Pure functions over numpy arrays, shared by the CLI, the Bento services and the
benchmark's in-process server, so every path gives the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.features import Entry, EventContext, FeatureSnapshot, _day
from pipelines.models import PoleParams, Stage1Model, Stage2Model, estimate_pole, group_softmax


def unique_ranks(values: np.ndarray, tie_keys: Sequence[str]) -> np.ndarray:
    """1..N by ascending value; ties (and NaN, last) broken by key so the answer is stable."""
    v = np.where(np.isnan(values), np.inf, values)
    order = sorted(range(len(v)), key=lambda i: (v[i], tie_keys[i]))
    ranks = np.empty(len(v), dtype=int)
    ranks[order] = np.arange(1, len(v) + 1)
    return ranks


def pole_estimate(
    snapshot: FeatureSnapshot,
    ctx: EventContext,
    field_practice: dict[str, list[float]],
    params: PoleParams,
) -> float:
    """The pole-lap estimate for an event; memoised per snapshot, since the inputs below
    fully determine it (every request about a known event asks the same question)."""
    session, ref = snapshot.pole_reference(ctx, field_practice)
    day = _day(ctx.date)
    key = (day, session, ref, ctx.layout_id, params.window, params.shrink, ctx.course_length)
    memo = snapshot.memo.setdefault("pole", {})
    if key not in memo:
        if len(memo) > 4096:
            memo.clear()
        memo[key] = estimate_pole(
            snapshot.pole_arrays(day), session, ref, ctx.layout_id, params, ctx.course_length
        )
    return float(memo[key])


@dataclass
class QualiOut:
    gap_pct: np.ndarray
    time_s: np.ndarray
    grid: np.ndarray
    pole_prob: np.ndarray
    pole_s: float


def quali_outputs(
    gap: np.ndarray, pole_s: float, tau: float, driver_ids: Sequence[str]
) -> QualiOut:
    """Predicted time = pole estimate x (1 + gap); grid by gap; pole probability by softmax."""
    prob = group_softmax(-gap / tau, np.zeros(len(gap), dtype=int))
    return QualiOut(
        gap_pct=gap,
        time_s=pole_s * (1.0 + gap / 100.0),
        grid=unique_ranks(gap, driver_ids),
        pole_prob=prob,
        pole_s=pole_s,
    )


def race_grid(entries: Sequence[Entry], est_grid: np.ndarray) -> np.ndarray:
    """Known grid slots where given, Stage-1's estimate elsewhere."""
    return np.array(
        [
            e.grid if e.grid is not None else float(g)
            for e, g in zip(entries, est_grid, strict=True)
        ],
        dtype=float,
    )


def race_gap(entries: Sequence[Entry], est_gap: np.ndarray) -> np.ndarray:
    """Gap to pole from given qualifying times where every car has one, else Stage-1's."""
    times = [e.quali_time for e in entries]
    if all(t is not None and not math.isnan(t) for t in times):
        arr = np.array(times, dtype=float)
        return (arr / arr.min() - 1.0) * 100.0
    return est_gap


class Predictor:
    """Both stages in one process (CLI and benchmarks); the Bento splits the same calls
    across services."""

    def __init__(self, snapshot: FeatureSnapshot, stage1: Stage1Model, stage2: Stage2Model):
        self.snapshot = snapshot
        self.stage1 = stage1
        self.stage2 = stage2

    def quali(
        self, ctx: EventContext, entries: Sequence[Entry], field: dict[str, list[float]]
    ) -> QualiOut:
        x1 = self.snapshot.stage1_matrix(ctx, entries, field)
        gap = self.stage1.predict_gap(x1)
        pole = pole_estimate(self.snapshot, ctx, field, self.stage1.config.pole)
        return quali_outputs(gap, pole, self.stage1.config.pole_tau, [e.driver_id for e in entries])

    def race(self, ctx: EventContext, entries: Sequence[Entry], q: QualiOut) -> np.ndarray:
        grid = race_grid(entries, q.grid)
        gap = race_gap(entries, q.gap_pct)
        x2 = self.snapshot.stage2_matrix(ctx, entries, grid, gap)
        return self.stage2.win_probability(x2, np.zeros(len(entries), dtype=int))
