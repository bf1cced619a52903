"""The test season asked through the served path: before and after qualifying, a weekend ahead."""

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
from pipelines.serving.orchestrator import Forecast, TwoStage
from training.datasets import StageData

EventHook = Callable[[EventContext], None]
FlowFor = Callable[[EventContext], TwoStage]  # the flow that answers an event
KEYS = ["race_id", "driver_id"]


def _post_quali_entries(rows: pd.DataFrame, listed: EventField) -> list[Entry]:
    """The starters as a request after qualifying gives them (grid slots, qualifying times)."""
    rows = rows.assign(q=rows["best_s"].fillna(math.inf)).sort_values(["grid", "q", "driver_id"])
    known = {e.driver_id: e for e in reversed(listed.entries)}  # the first listing wins
    out = []
    for slot, r in enumerate(rows.itertuples(index=False), start=1):
        t = None if math.isnan(r.best_s) else float(r.best_s)
        e = Entry(driver_id=str(r.driver_id), grid=float(slot), quali_time=t)
        if (k := known.get(e.driver_id)) is not None:
            e.constructor_id, e.practice, e.laps = k.constructor_id, dict(k.practice), dict(k.laps)
        out.append(e)
    return out


def before_practice(fld: EventField) -> EventField:
    """The field of an event whose practice is not in the data yet: the same cars, no lap."""
    cars = [Entry(driver_id=e.driver_id, constructor_id=e.constructor_id) for e in fld.entries]
    return EventField(cars, {}, as_in_data=False)


async def _season(
    snap: FeatureSnapshot,
    flow_for: FlowFor,
    te1: StageData,
    te2: StageData,
    on_event: EventHook | None,
) -> tuple[list[Forecast], list[Forecast], list[Forecast]]:
    """Each event asked a weekend ahead, before qualifying and after it."""
    ahead, pre, post = [], [], []
    for race_id, rows in te2.meta.groupby("race_id", sort=True):
        ctx = snap.event_by_id(int(race_id))
        assert ctx is not None
        if on_event is not None:
            on_event(ctx)
        flow, fld = flow_for(ctx), snap.event_field(ctx)
        pre.append(await flow.full(ctx, fld, np.arange(len(fld.entries))))
        cars = before_practice(fld)
        ahead.append(await flow.full(ctx, cars, np.arange(len(cars.entries))))
        starters = rows.merge(te1.meta[[*KEYS, "best_s"]], on=KEYS, how="left")
        given = _post_quali_entries(starters, fld)
        fld2 = snap.event_field(ctx, given)
        post.append(await flow.full(ctx, fld2, fld2.index([g.driver_id for g in given])))
    return ahead, pre, post


def placings_over_starters(
    logit: np.ndarray, groups: np.ndarray, ids: np.ndarray, finish: float
) -> tuple[np.ndarray, np.ndarray]:
    """Podium and points odds over each race's scored cars, by the served ``placings``."""
    podium, points = np.empty(len(logit), dtype=float), np.empty(len(logit), dtype=float)
    for _, idx in pd.Series(groups).groupby(groups).indices.items():
        pl = placings(logit[idx], [str(d) for d in ids[idx]], finish=finish)
        podium[idx], points[idx] = pl.podium, pl.points
    return podium, points


@dataclass
class Served:
    """What the served flow said of a season: Stage-1 before qualifying and a weekend ahead;
    Stage-2 (``race``; its rows ``x2``) after qualifying, before it and a weekend ahead."""

    stage1: pd.DataFrame
    stage1_ahead: pd.DataFrame
    race: dict[str, pd.DataFrame]
    x2: dict[str, np.ndarray]


def served_predictions(
    snap: FeatureSnapshot,
    flow_for: FlowFor,
    te1: StageData,
    te2: StageData,
    finish: float,
    on_event: EventHook | None = None,
) -> Served:
    """Every event of the test rows asked of ``flow_for(event)`` in the three ways."""
    ahead, pre, post = asyncio.run(_season(snap, flow_for, te1, te2, on_event))
    race, x2 = {}, {}
    for name, fcs in (("stage2", post), ("stage2_chained", pre), ("stage2_ahead", ahead)):
        race[name], x2[name] = _race_rows(snap, fcs, te2, finish)
    return Served(_quali_rows(pre, te1), _quali_rows(ahead, te1), race, x2)


def _quali_rows(forecasts: list[Forecast], te1: StageData) -> pd.DataFrame:
    """The Stage-1 rows with the flow's forecast of each driver before qualifying."""
    rows = []
    for fc in forecasts:
        q, ids = fc.quali, [e.driver_id for e in fc.field.entries]
        rows += [
            (fc.event.race_id, ids[i], q.gap_pct[i], q.time_s[i], q.pole_s, q.pole_prob[i])
            for i in fc.rows
        ]
    cols = [*KEYS, "pred_gap", "pred_time", "pred_pole", "pole_prob"]
    return te1.meta.merge(pd.DataFrame(rows, columns=cols), on=KEYS)


def _race_rows(
    snap: FeatureSnapshot, forecasts: list[Forecast], te2: StageData, finish: float
) -> tuple[pd.DataFrame, np.ndarray]:
    """The starters' rows (win odds renormalised over them) and the Stage-2 rows the flow built."""
    rows, xs = [], []
    for fc in forecasts:
        race = fc.race
        assert race is not None
        xs.append(snap.stage2_rows(fc.event, fc.field.entries, race.grid, race.q_gap)[fc.rows])
        ids = [e.driver_id for e in fc.field.entries]
        rows += [
            (fc.event.race_id, ids[i], race.win_prob[i], race.logit[i], race.grid[i])
            for i in fc.rows
        ]
    cols = [*KEYS, "prob", "logit", "flow_grid"]
    said = pd.DataFrame(rows, columns=cols).assign(_x=np.arange(len(rows)))
    m = te2.meta.merge(said, on=KEYS, how="inner")
    groups = m["race_id"].to_numpy()
    prob = m["prob"].to_numpy(float)
    total = pd.Series(prob).groupby(groups).transform("sum").to_numpy()
    m["prob"] = np.where(total > 0, prob / total, 0.0)
    m["podium_prob"], m["points_prob"] = placings_over_starters(
        m["logit"].to_numpy(float), groups, m["driver_id"].to_numpy(), finish
    )
    x = np.vstack(xs) if xs else np.empty((0, 0))
    return m.drop(columns=["_x"]), x[m["_x"].to_numpy()]
