"""The test season asked through the served path: ``TwoStage`` with local models.

Each event is asked as a user asks the service: before qualifying (Stage-1 chained into
Stage-2), after it (the real grid and times given), and a weekend ahead (the entry list
without a practice lap). The README's and /model_info's numbers come from here.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.features.event import Entry, EventContext, EventField
from pipelines.features.snapshot import FeatureSnapshot
from pipelines.models.placings import placings
from pipelines.models.stage1 import Stage1Model
from pipelines.models.stage2 import Stage2Model
from pipelines.serving.orchestrator import Forecast, TwoStage
from training.datasets import StageData


def _post_quali_entries(rows: pd.DataFrame, listed: EventField) -> list[Entry]:
    """The starters as a request gives them after qualifying: their real grid (unique
    slots: pit-lane starters share one in the data), qualifying time, and the entry
    list's team and practice (as resolution adds them)."""
    rows = rows.assign(
        key=rows["grid"].to_numpy(float),
        q=rows["best_s"].fillna(math.inf).to_numpy(float),
    ).sort_values(["key", "q", "driver_id"])
    known = {e.driver_id: e for e in reversed(listed.entries)}  # the first listing wins
    out = []
    for slot, r in enumerate(rows.itertuples(index=False), start=1):
        t = None if math.isnan(r.best_s) else float(r.best_s)
        e = Entry(driver_id=str(r.driver_id), grid=float(slot), quali_time=t)
        if (k := known.get(e.driver_id)) is not None:
            e.constructor_id, e.practice, e.laps = k.constructor_id, dict(k.practice), dict(k.laps)
        out.append(e)
    return out


EventHook = Callable[[EventContext], None]
Stage1For = Callable[[EventContext], Stage1Model]
"""The Stage-1 that answers an event (``InSeason``: refitted before each event)."""
Stage2For = Callable[[EventContext], Stage2Model]


def before_practice(fld: EventField) -> EventField:
    """The field as the service sees an event whose practice is not in the data yet: the
    same cars, not a lap."""
    cars = [Entry(driver_id=e.driver_id, constructor_id=e.constructor_id) for e in fld.entries]
    return EventField(cars, {}, as_in_data=False)


async def _ahead(snap: FeatureSnapshot, flow: TwoStage, ctx: EventContext) -> Forecast:
    """The event asked a weekend ahead: its cars, not a lap."""
    fld = before_practice(snap.event_field(ctx))
    return await flow.full(ctx, fld, np.arange(len(fld.entries)))


async def _season(
    snap: FeatureSnapshot,
    flow_for: Callable[[EventContext], TwoStage],
    s1_meta: pd.DataFrame,
    s2_meta: pd.DataFrame,
    on_event: EventHook | None = None,
) -> tuple[list[Forecast], list[Forecast], list[Forecast]]:
    ahead, pre, post = [], [], []
    times = s1_meta.set_index(["race_id", "driver_id"])["best_s"]
    for race_id, rows in s2_meta.groupby("race_id", sort=True):
        ctx = snap.event_by_id(int(race_id))
        assert ctx is not None
        if on_event is not None:
            on_event(ctx)
        flow = flow_for(ctx)
        fld = snap.event_field(ctx)
        pre.append(await flow.full(ctx, fld, np.arange(len(fld.entries))))
        ahead.append(await _ahead(snap, flow, ctx))
        starters = rows.assign(
            best_s=[times.get((race_id, d), math.nan) for d in rows["driver_id"]]
        )
        given = _post_quali_entries(starters, fld)
        fld2 = snap.event_field(ctx, given)
        post.append(await flow.full(ctx, fld2, fld2.index([g.driver_id for g in given])))
    return ahead, pre, post


def _by_driver(
    snap: FeatureSnapshot, forecasts: list[Forecast], stage: str
) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per forecast driver; for the race stage also the Stage-2 rows the flow
    built, for baselines fed the same grid."""
    rows, xs = [], []
    for fc in forecasts:
        if stage == "race":
            assert fc.race is not None
            x2 = snap.stage2_rows(fc.event, fc.field.entries, fc.race.grid, fc.race.q_gap)
            xs.append(x2[fc.rows])
        for i in fc.rows:
            e = fc.field.entries[i]
            rec = {"race_id": fc.event.race_id, "driver_id": e.driver_id}
            if stage == "quali":
                rec |= {
                    "pred_gap": fc.quali.gap_pct[i],
                    "pred_time": fc.quali.time_s[i],
                    "pred_pole": fc.quali.pole_s,
                    "pole_prob": fc.quali.pole_prob[i],
                }
            else:
                assert fc.race is not None
                rec |= {
                    "prob": fc.race.win_prob[i],
                    "logit": fc.race.logit[i],
                    "flow_grid": fc.race.grid[i],
                }
            rows.append(rec)
    x = np.vstack(xs) if xs else np.empty((0, 0))
    return pd.DataFrame(rows), x


def renormalise(prob: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Probabilities over the scored cars of each race (a non-starter had a share)."""
    s = pd.Series(prob).groupby(groups).transform("sum").to_numpy()
    return np.where(s > 0, prob / s, 0.0)


def placings_over_starters(
    logit: np.ndarray, groups: np.ndarray, ids: np.ndarray, finish: float
) -> tuple[np.ndarray, np.ndarray]:
    """Podium and points probabilities over the scored cars of each race, by the served
    ``placings`` (a non-starter drops out; the rest keep their strengths)."""
    podium, points = np.empty(len(logit), dtype=float), np.empty(len(logit), dtype=float)
    for _, idx in pd.Series(groups).groupby(groups).indices.items():
        pl = placings(logit[idx], [str(d) for d in ids[idx]], finish=finish)
        podium[idx], points[idx] = pl.podium, pl.points
    return podium, points


@dataclass
class Served:
    """What the served flow said about a season, row-aligned with the scored rows.

    ``stage1``: drivers with a qualifying lap, forecast before qualifying (``pred_gap``,
    ``pred_time``, ``pred_pole``, ``pole_prob``). ``stage2`` (real grid) and
    ``stage2_chained`` (Stage-1's grid): the starters with ``prob``, ``podium_prob``,
    ``points_prob`` and ``flow_grid``, the slot Stage-2 was given; ``x2*`` are the
    Stage-2 rows the flow built. ``*_ahead``: the same without any practice.
    """

    stage1: pd.DataFrame
    stage2: pd.DataFrame
    stage2_chained: pd.DataFrame
    x2: np.ndarray
    x2_chained: np.ndarray
    stage1_ahead: pd.DataFrame
    stage2_ahead: pd.DataFrame
    x2_ahead: np.ndarray


def served_predictions(
    snap: FeatureSnapshot,
    s1: Stage1Model,
    s2: Stage2Model,
    te1: StageData,
    te2: StageData,
    on_event: EventHook | None = None,
    s1_for: Stage1For | None = None,
    s2_for: Stage2For | None = None,
) -> Served:
    """Every event of the test rows asked through ``TwoStage`` in the three ways, by
    ``s1_for(event)`` / ``s2_for(event)`` when given, else by ``s1`` / ``s2``
    (``on_event``: told each event as it is asked)."""

    def flow_for(ctx: EventContext) -> TwoStage:
        one = s1 if s1_for is None else s1_for(ctx)
        return TwoStage.local(snap, one, s2 if s2_for is None else s2_for(ctx))

    ahead, pre, post = asyncio.run(_season(snap, flow_for, te1.meta, te2.meta, on_event))
    q, q_ahead = (_quali_rows(snap, fcs, te1) for fcs in (pre, ahead))
    (s2_post, x2), (s2_pre, x2_pre), (s2_ahead, x2_ahead) = (
        _race_rows(snap, fcs, te2, s2.config.finish_rate) for fcs in (post, pre, ahead)
    )
    return Served(q, s2_post, s2_pre, x2, x2_pre, q_ahead, s2_ahead, x2_ahead)


def ahead_predictions(
    snap: FeatureSnapshot, s1_for: Stage1For, s2: Stage2Model, te1: StageData, te2: StageData
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Only the weekend-ahead forecasts (``Served.stage1_ahead``/``stage2_ahead``), for
    the same season asked of other models."""

    async def ask() -> list[Forecast]:
        out = []
        for race_id in sorted(te2.meta["race_id"].unique()):
            ctx = snap.event_by_id(int(race_id))
            assert ctx is not None
            out.append(await _ahead(snap, TwoStage.local(snap, s1_for(ctx), s2), ctx))
        return out

    ahead = asyncio.run(ask())
    return _quali_rows(snap, ahead, te1), _race_rows(snap, ahead, te2, s2.config.finish_rate)[0]


def _quali_rows(snap: FeatureSnapshot, forecasts: list[Forecast], te1: StageData) -> pd.DataFrame:
    return te1.meta.merge(_by_driver(snap, forecasts, "quali")[0], on=["race_id", "driver_id"])


def _race_rows(
    snap: FeatureSnapshot, forecasts: list[Forecast], te2: StageData, finish: float
) -> tuple[pd.DataFrame, np.ndarray]:
    """The starters' rows with the win probability renormalised over them, Plackett-Luce
    podium odds, and the Stage-2 feature rows the flow built (row-aligned)."""
    race, x = _by_driver(snap, forecasts, "race")
    race["_x"] = np.arange(len(race))
    m = te2.meta.merge(race, on=["race_id", "driver_id"], how="inner")
    groups = m["race_id"].to_numpy()
    m["prob"] = renormalise(m["prob"].to_numpy(float), groups)
    m["podium_prob"], m["points_prob"] = placings_over_starters(
        m["logit"].to_numpy(float), groups, m["driver_id"].to_numpy(), finish
    )
    return m.drop(columns=["_x"]), x[m["_x"].to_numpy()]
