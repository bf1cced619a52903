"""The two-stage flow, written once: event field -> Stage-1 -> grid -> Stage-2.

The model calls are injected (``RowsFn``: feature rows in, one number per row out):
local models for the CLI, the evaluation and the benchmarks; the coalesced calls to
the model services in the Bento. What is evaluated is what serves.

Both stages always run on the event's whole field (``EventField``) and a request's
drivers are picked out at the end, so a driver's gap, grid slot, logit and
probabilities are the same whoever else the request names.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from pipelines.features.snapshot import Entry, EventContext, EventField, FeatureSnapshot
from pipelines.models.pole import PoleParams, pole_estimate
from pipelines.models.stage1 import Stage1Model
from pipelines.models.stage2 import Stage2Model, group_softmax
from pipelines.serving.errors import RequestError

RowsFn = Callable[[np.ndarray], Awaitable[np.ndarray]]
T = TypeVar("T")


def unique_ranks(values: np.ndarray, tie_keys: Sequence[str]) -> np.ndarray:
    """1..N by ascending value; ties (and NaN, last) broken by key so the answer is stable."""
    v = np.where(np.isnan(values), np.inf, values)
    order = sorted(range(len(v)), key=lambda i: (v[i], tie_keys[i]))
    ranks = np.empty(len(v), dtype=int)
    ranks[order] = np.arange(1, len(v) + 1)
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


@dataclass
class RaceOut:
    """Stage-2 over the field: the grid and gaps it was given, logits, win probability."""

    grid: np.ndarray
    q_gap: np.ndarray
    logit: np.ndarray
    win_prob: np.ndarray


@dataclass
class Forecast:
    """A prediction for a field; ``rows`` are the requested drivers' positions in it."""

    ctx: EventContext
    field: EventField
    rows: np.ndarray
    quali: QualiOut
    race: RaceOut | None = None

    @property
    def entries(self) -> list[Entry]:
        return [self.field.entries[i] for i in self.rows]


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
    """Starting slots and qualifying gaps for Stage-2, over the field.

    Qualifying order follows given qualifying times where present and Stage-1's
    predicted times elsewhere (anchored on the given times when there is no pole
    estimate). Given grid positions are kept; every other car takes the free slots in
    qualifying order, so the slots are unique (1..N when the given ones are <= N).
    Gaps: Stage-1's when no time is given, else from the times (given or predicted).
    """
    n = len(entries)
    ids = [e.driver_id for e in entries]
    given_t = np.array([np.nan if e.quali_time is None else e.quali_time for e in entries])
    has_t = ~np.isnan(given_t)
    q_gap = q.gap_pct
    order_key = q.gap_pct
    if has_t.any():
        pred_t = q.time_s
        if not math.isfinite(q.pole_s):
            pole = float(np.median(given_t[has_t] / (1.0 + q.gap_pct[has_t] / 100.0)))
            pred_t = pole * (1.0 + q.gap_pct / 100.0)
        t = np.where(has_t, given_t, pred_t)
        order_key = t
        if np.isfinite(t).all():
            q_gap = (t / t.min() - 1.0) * 100.0
    grid = np.full(n, np.nan)
    taken: set[int] = set()
    for i, e in enumerate(entries):
        if e.grid is not None:
            grid[i] = e.grid
            taken.add(int(e.grid))
    rest = [i for i in range(n) if entries[i].grid is None]
    key = np.where(np.isnan(order_key), np.inf, order_key)
    rest.sort(key=lambda i: (key[i], ids[i]))
    free = (s for s in range(1, n + len(taken) + 1) if s not in taken)
    for i, slot in zip(rest, free, strict=False):
        grid[i] = slot
    return grid, np.asarray(q_gap, dtype=float)


def check_given_grid(entries: Sequence[Entry], given_at: Sequence[int]) -> None:
    """Given grid positions are unique and within the field (RequestError naming one)."""
    seen: dict[int, int] = {}
    n = len(entries)
    for e, at in zip(entries, given_at, strict=True):
        if e.grid is None:
            continue
        slot = int(e.grid)
        if slot in seen:
            raise RequestError(
                ["drivers", at, "grid_position"],
                f"grid position {slot} is also given to drivers[{seen[slot]}]",
            )
        if slot > n:
            raise RequestError(
                ["drivers", at, "grid_position"],
                f"grid position {slot} but the field has {n} cars",
            )
        seen[slot] = at


class TwoStage:
    """Qualifying, then the race, for an event's field."""

    def __init__(
        self,
        snapshot: FeatureSnapshot,
        stage1: RowsFn,
        stage2: RowsFn,
        pole: PoleParams,
        pole_tau: float,
    ) -> None:
        self.snapshot = snapshot
        self.stage1 = stage1
        self.stage2 = stage2
        self.pole = pole
        self.pole_tau = pole_tau

    @classmethod
    def local(cls, snapshot: FeatureSnapshot, s1: Stage1Model, s2: Stage2Model) -> TwoStage:
        """Both stages in this process (CLI, evaluation, benchmarks)."""

        async def stage1(rows: np.ndarray) -> np.ndarray:
            return s1.predict_gap(rows)

        async def stage2(rows: np.ndarray) -> np.ndarray:
            return s2.logit(rows)

        return cls(snapshot, stage1, stage2, s1.config.pole, s1.config.pole_tau)

    async def quali(self, ctx: EventContext, fld: EventField, rows: np.ndarray) -> Forecast:
        x1 = self.snapshot.stage1_rows(ctx, fld)
        gap = np.asarray(await self.stage1(x1), dtype=float)
        pole = pole_estimate(self.snapshot, ctx, fld.laps, self.pole)
        ids = [e.driver_id for e in fld.entries]
        return Forecast(ctx, fld, rows, quali_outputs(gap, pole, self.pole_tau, ids))

    async def race(self, fc: Forecast) -> Forecast:
        grid, q_gap = race_grid(fc.field.entries, fc.quali)
        x2 = self.snapshot.stage2_rows(fc.ctx, fc.field.entries, grid, q_gap)
        logit = np.asarray(await self.stage2(x2), dtype=float)
        prob = group_softmax(logit, np.zeros(len(logit), dtype=int))
        fc.race = RaceOut(grid, q_gap, logit, prob)
        return fc

    async def full(self, ctx: EventContext, fld: EventField, rows: np.ndarray) -> Forecast:
        return await self.race(await self.quali(ctx, fld, rows))


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run the flow from synchronous code (CLI, evaluation)."""
    return asyncio.run(coro)
