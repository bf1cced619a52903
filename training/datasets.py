"""Training rows for both stages, built through the same feature module as serving."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.f1db.parse import Tables
from pipelines.features.event import Entry, EventContext, EventField, day_number
from pipelines.features.snapshot import FeatureSnapshot
from pipelines.features.spec import STAGE1, STAGE2


@dataclass
class StageData:
    """Feature matrix, target and one row of bookkeeping per driver-event."""

    x: np.ndarray
    y: np.ndarray
    meta: pd.DataFrame

    def select(self, mask: np.ndarray) -> StageData:
        return StageData(self.x[mask], self.y[mask], self.meta[mask].reset_index(drop=True))

    def seasons(self, lo: int, hi: int) -> StageData:
        s = self.meta["season"].to_numpy()
        return self.select((s >= lo) & (s <= hi))


def _stacked(xs: list[np.ndarray], metas: list[pd.DataFrame], n: int, target: str) -> StageData:
    """The events' rows as one StageData (none: empty, and ``check_seasons`` explains)."""
    if not metas:
        meta = pd.DataFrame({"race_id": [], "season": [], "round": [], "driver_id": []})
        return StageData(np.empty((0, n)), np.empty(0), meta)
    meta = pd.concat(metas, ignore_index=True)
    return StageData(np.vstack(xs), meta[target].to_numpy(), meta)


def qualifying_field(snap: FeatureSnapshot, ctx: EventContext, rows: pd.DataFrame) -> EventField:
    """The event's field as serving builds it, plus any driver who qualified off the entry list."""
    fld = snap.event_field(ctx)
    entered = {e.driver_id for e in fld.entries}
    prac = snap.practice_laps(ctx.race_id or -1)
    extra = []
    for d, c in zip(rows["driver_id"], rows["constructor_id"], strict=True):
        if str(d) in entered:
            continue
        e = Entry(driver_id=str(d), constructor_id=str(c))
        for pd_, _c, s, t, laps in prac:
            if pd_ == e.driver_id and not math.isnan(t):
                e.practice[s], e.laps[s] = t, laps
        extra.append(e)
    return snap.event_field(ctx, extra) if extra else fld


def stage1_data(snap: FeatureSnapshot, t: Tables, first_season: int) -> StageData:
    """One row per driver with a qualifying lap; target = gap to pole in %."""
    q = t.qualifying.dropna(subset=["best_s"])
    xs, metas = [], []
    for race_id, rows in q.groupby("race_id", sort=False):
        ctx = snap.event_by_id(int(race_id))
        if ctx is None or ctx.season < first_season:
            continue
        fld = qualifying_field(snap, ctx, rows)
        at = fld.index([str(d) for d in rows["driver_id"]])
        xs.append(snap.stage1_rows(ctx, fld)[at])
        entries = [fld.entries[i] for i in at]
        pole = float(rows["best_s"].min())
        session, ref = snap.pole_reference(fld.laps)
        field_laps = [t for v in fld.laps.values() for t in v.values()]
        metas.append(
            pd.DataFrame(
                {
                    "race_id": ctx.race_id,
                    "season": ctx.season,
                    "round": ctx.round,
                    "day": day_number(ctx.date),
                    "layout_id": ctx.layout_id,
                    "course_length": ctx.course_length,
                    "driver_id": rows["driver_id"].to_numpy(),
                    "constructor_id": rows["constructor_id"].to_numpy(),
                    "best_s": rows["best_s"].to_numpy(),
                    "pole_s": pole,
                    "gap_pct": (rows["best_s"].to_numpy() / pole - 1.0) * 100.0,
                    "q_pos": rows["position"].to_numpy(float),
                    "ref_session": session,
                    "ref_lap": ref,
                    "best_practice_s": [
                        min(e.practice.values(), default=math.nan) for e in entries
                    ],
                    "dry": bool(pole <= min(field_laps, default=math.inf)),
                }
            )
        )
    return _stacked(xs, metas, len(STAGE1), "gap_pct")


def grid_slots(t: Tables) -> pd.DataFrame:
    """Starting slot per starter: pit-lane starters start behind the whole grid."""
    g = t.grid.copy()
    n = g.groupby("race_id")["driver_id"].transform("size")
    # a grid with an empty slot (2022 Belgium) can put a car at slot n: start behind it
    last = g.groupby("race_id")["grid"].transform("max").fillna(0) + 1
    g["slot"] = np.where(g["pit_lane"] | g["grid"].isna(), np.maximum(n, last), g["grid"])
    return g[["race_id", "driver_id", "slot"]]


def stage2_data(snap: FeatureSnapshot, t: Tables, first_season: int) -> StageData:
    """One row per race starter, with the actual grid and gap; target = won the race."""
    r = t.results[t.results["position_text"] != "DNS"]
    r = r.merge(grid_slots(t), on=["race_id", "driver_id"], how="inner")
    q = t.qualifying.dropna(subset=["best_s"])
    q = q.assign(q_gap=(q["best_s"] / q.groupby("race_id")["best_s"].transform("min") - 1) * 100)
    r = r.merge(q[["race_id", "driver_id", "q_gap"]], on=["race_id", "driver_id"], how="left")
    xs, metas = [], []
    for race_id, rows in r.groupby("race_id", sort=False):
        ctx = snap.event_by_id(int(race_id))
        if ctx is None or ctx.season < first_season:
            continue
        entries = [
            Entry(driver_id=str(d), constructor_id=str(c))
            for d, c in zip(rows["driver_id"], rows["constructor_id"], strict=True)
        ]
        grid, gap = rows["slot"].to_numpy(float), rows["q_gap"].to_numpy(float)
        xs.append(snap.stage2_rows(ctx, entries, grid, gap))  # the cars that started
        metas.append(
            pd.DataFrame(
                {
                    "race_id": ctx.race_id,
                    "season": ctx.season,
                    "round": ctx.round,
                    "driver_id": rows["driver_id"].to_numpy(),
                    "grid": rows["slot"].to_numpy(float),
                    "win": (rows["position"] == 1).to_numpy(float),
                    "podium": (rows["position"] <= 3).to_numpy(float),
                    "points": (rows["position"] <= 10).to_numpy(float),
                    "position": rows["position"].to_numpy(float),
                }
            )
        )
    return _stacked(xs, metas, len(STAGE2), "win")
