"""The two-stage flow, written once: event field -> Stage-1 -> grid -> Stage-2, on the
whole field. The model calls are injected (``RowsFn``: local models or the Bento's model
services), so what is evaluated is what serves."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from pipelines.features.event import Entry, EventContext, EventField
from pipelines.models.placings import placings
from pipelines.models.pole import pole_estimate
from pipelines.models.stage1 import Stage1Config, Stage1Model, no_practice
from pipelines.models.stage2 import Stage2Config, Stage2Model, group_softmax
from pipelines.serving.coalesce import RowsFn

if TYPE_CHECKING:
    from pipelines.features.snapshot import FeatureSnapshot

T = TypeVar("T")


def unique_ranks(values: np.ndarray, tie_keys: Sequence[str]) -> np.ndarray:
    """1..N by ascending value; ties (and NaN, last) broken by key so the answer is stable."""
    v = np.where(np.isnan(values), np.inf, values)
    ranks = np.empty(len(v), dtype=int)
    ranks[np.lexsort((np.asarray(tie_keys, dtype=str), v))] = np.arange(1, len(v) + 1)
    return ranks


@dataclass
class QualiOut:
    """Stage-1 over the field: gap (raw and >= 0), time, grid 1..N, pole probability."""

    gap_raw: np.ndarray
    gap_pct: np.ndarray
    time_s: np.ndarray
    grid: np.ndarray
    pole_prob: np.ndarray
    pole_s: float
    contrib: np.ndarray | None = None
    """When explained: (N, features + 1) contributions to the unclipped gap, base last."""


@dataclass
class RaceOut:
    """Stage-2 over the field: the grid and gaps it was given, logits, and the win, podium
    and points (top 10) probabilities."""

    grid: np.ndarray
    q_gap: np.ndarray
    logit: np.ndarray
    win_prob: np.ndarray
    podium_prob: np.ndarray
    points_prob: np.ndarray
    contrib: np.ndarray | None = None
    """When explained: (N, features + 1) contributions to the logit, base last."""


@dataclass
class Forecast:
    """A prediction for a field; ``rows`` are the requested drivers' positions in it."""

    event: EventContext
    field: EventField
    rows: np.ndarray
    quali: QualiOut
    race: RaceOut | None = None
    driver_names: list[str | None] = dataclasses.field(default_factory=list)
    constructor_names: list[str | None] = dataclasses.field(default_factory=list)
    """F1DB names of the field's drivers and teams (None where F1DB has no such id)."""


def quali_outputs(gap_raw: np.ndarray, pole_s: float, tau: float, ids: Sequence[str]) -> QualiOut:
    """Predicted time = pole estimate x (1 + gap); grid by gap; pole probability by a
    softmax over the field."""
    gap = np.clip(np.asarray(gap_raw, dtype=float), 0.0, None)
    return QualiOut(
        gap_raw=np.asarray(gap_raw, dtype=float),
        gap_pct=gap,
        time_s=pole_s * (1.0 + gap / 100.0),
        grid=unique_ranks(gap, ids),
        pole_prob=group_softmax(-gap / tau, np.zeros(len(gap), dtype=int)),
        pole_s=pole_s,
    )


def race_grid(entries: Sequence[Entry], q: QualiOut) -> tuple[np.ndarray, np.ndarray]:
    """Starting slots and qualifying gaps for Stage-2, over the field: given grid positions
    are kept, the other cars take the free slots in qualifying order (given times, else
    Stage-1's); gaps come from the times when any is given."""
    n = len(entries)
    ids = [e.driver_id for e in entries]
    given_t = np.array([np.nan if e.quali_time is None else e.quali_time for e in entries])
    has_t = ~np.isnan(given_t)
    q_gap = order_key = q.gap_pct
    if has_t.any():
        pred_t = q.time_s
        if not math.isfinite(q.pole_s):
            pole = float(np.median(given_t[has_t] / (1.0 + q.gap_pct[has_t] / 100.0)))
            pred_t = pole * (1.0 + q.gap_pct / 100.0)
        order_key = t = np.where(has_t, given_t, pred_t)
        if np.isfinite(t).all():
            q_gap = (t / t.min() - 1.0) * 100.0
    grid = np.array([np.nan if e.grid is None else e.grid for e in entries], dtype=float)
    taken = {int(g) for g in grid[~np.isnan(grid)]}
    rest = [i for i in range(n) if np.isnan(grid[i])]
    key = np.where(np.isnan(order_key), np.inf, order_key)
    rest.sort(key=lambda i: (key[i], ids[i]))
    free = (s for s in range(1, n + len(taken) + 1) if s not in taken)
    for i, slot in zip(rest, free, strict=False):
        grid[i] = slot
    return grid, np.asarray(q_gap, dtype=float)


def race_outputs(
    grid: np.ndarray,
    q_gap: np.ndarray,
    logit: np.ndarray,
    ids: Sequence[str],
    finish: float = 1.0,
) -> RaceOut:
    """Win probability = the softmax over the field; podium and points from the same
    strengths (Plackett-Luce; every car but the winner classified at rate ``finish``)."""
    logit = np.asarray(logit, dtype=float)
    win = group_softmax(logit, np.zeros(len(logit), dtype=int))
    pl = placings(logit, ids, win=win, finish=finish)
    return RaceOut(grid, q_gap, logit, win, pl.podium, pl.points)


@dataclass
class TwoStage:
    """Qualifying, then the race, for an event's field: ``stage1``/``stage2`` give the gap
    % or logit per row; ``explain1``/``explain2`` its contributions (for ``explain``)."""

    snapshot: FeatureSnapshot
    stage1_config: Stage1Config
    stage2_config: Stage2Config
    stage1: RowsFn
    stage2: RowsFn
    explain1: RowsFn | None = None
    explain2: RowsFn | None = None

    @classmethod
    def local(cls, snapshot: FeatureSnapshot, s1: Stage1Model, s2: Stage2Model) -> TwoStage:
        """Both stages in this process (CLI, evaluation, benchmarks)."""
        calls = (s1.predict_gap, s2.logit, s1.explain_gap, s2.explain_logit)
        return cls(snapshot, s1.config, s2.config, *(_in_process(f) for f in calls))

    @staticmethod
    async def _with_contrib(
        predict: RowsFn, explain: RowsFn | None, x: np.ndarray, stage: str, wanted: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The prediction and, when wanted, the contributions (both calls at once)."""
        if not wanted:
            return np.asarray(await predict(x), dtype=float), None
        if explain is None:
            raise RuntimeError(f"this flow has no {stage} explainer")
        pred, contrib = await asyncio.gather(predict(x), explain(x))
        contrib = np.asarray(contrib, dtype=float)
        if contrib.shape != (len(x), x.shape[1] + 1):
            raise RuntimeError(f"{stage} explainer returned {contrib.shape} for {x.shape}")
        return np.asarray(pred, dtype=float), contrib

    async def quali(
        self, ctx: EventContext, fld: EventField, rows: np.ndarray, explain: bool = False
    ) -> Forecast:
        x1 = self.snapshot.stage1_rows(ctx, fld)
        gap, contrib = await self._with_contrib(self.stage1, self.explain1, x1, "stage-1", explain)
        c1 = self.stage1_config
        pole = pole_estimate(self.snapshot, ctx, fld.laps, c1.pole)
        ids = [e.driver_id for e in fld.entries]
        # a field without a practice lap is forecast by the form-only ensemble, whose
        # gaps have a temperature of their own
        tau = c1.pole_tau
        if c1.pole_tau_ahead is not None and no_practice(x1).all():
            tau = c1.pole_tau_ahead
        q = quali_outputs(gap, pole, tau, ids)
        q.contrib = contrib
        names = [self.snapshot.driver_name(e.driver_id) for e in fld.entries]
        teams = [self.snapshot.constructor_name(e.constructor_id) for e in fld.entries]
        return Forecast(ctx, fld, rows, q, driver_names=names, constructor_names=teams)

    async def race(self, fc: Forecast, explain: bool = False) -> Forecast:
        grid, q_gap = race_grid(fc.field.entries, fc.quali)
        x2 = self.snapshot.stage2_rows(fc.event, fc.field.entries, grid, q_gap)
        logit, contrib = await self._with_contrib(
            self.stage2, self.explain2, x2, "stage-2", explain
        )
        ids = [e.driver_id for e in fc.field.entries]
        fc.race = race_outputs(grid, q_gap, logit, ids, self.stage2_config.finish_rate)
        fc.race.contrib = contrib
        return fc

    async def full(
        self, ctx: EventContext, fld: EventField, rows: np.ndarray, explain: bool = False
    ) -> Forecast:
        return await self.race(await self.quali(ctx, fld, rows, explain), explain)


def _in_process(fn: Callable[[np.ndarray], np.ndarray]) -> RowsFn:
    """A model's method as a model call."""

    async def call(rows: np.ndarray) -> np.ndarray:
        return fn(rows)

    return call


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run the flow from synchronous code (CLI, evaluation)."""
    return asyncio.run(coro)
