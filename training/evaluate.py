"""The test season scored through the served path: ``TwoStage`` with local models.

Each event is asked the way a user asks the service: before qualifying (the event
only: Stage-1 chained into Stage-2) and after it (the real grid and qualifying times
given). The numbers in the README and /model_info come from here.
"""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pandas as pd

from pipelines.features.snapshot import Entry, FeatureSnapshot
from pipelines.models.placings import podium_probability
from pipelines.models.stage1 import Stage1Model
from pipelines.models.stage2 import Stage2Model
from pipelines.serving.orchestrator import Forecast, TwoStage
from training.datasets import StageData


def _post_quali_entries(rows: pd.DataFrame) -> list[Entry]:
    """The starters with their real grid (unique slots: pit-lane starters share one in
    the data, behind the grid) and qualifying time, as a request would give them."""
    rows = rows.assign(
        key=rows["grid"].to_numpy(float),
        q=rows["best_s"].fillna(math.inf).to_numpy(float),
    ).sort_values(["key", "q", "driver_id"])
    out = []
    for slot, r in enumerate(rows.itertuples(index=False), start=1):
        t = float(r.best_s)
        out.append(
            Entry(
                driver_id=str(r.driver_id),
                grid=float(slot),
                quali_time=None if math.isnan(t) else t,
            )
        )
    return out


async def _season(
    snap: FeatureSnapshot, flow: TwoStage, s1_meta: pd.DataFrame, s2_meta: pd.DataFrame
) -> tuple[list[Forecast], list[Forecast]]:
    pre, post = [], []
    times = s1_meta.set_index(["race_id", "driver_id"])["best_s"]
    for race_id, rows in s2_meta.groupby("race_id", sort=True):
        ctx = snap.event_by_id(int(race_id))
        assert ctx is not None
        fld = snap.event_field(ctx)
        pre.append(await flow.full(ctx, fld, np.arange(len(fld.entries))))
        starters = rows.assign(
            best_s=[times.get((race_id, d), math.nan) for d in rows["driver_id"]]
        )
        given = _post_quali_entries(starters)
        for g in given:  # the entry list's team and practice, as resolution does
            known = next((e for e in fld.entries if e.driver_id == g.driver_id), None)
            if known is not None:
                g.constructor_id, g.practice, g.laps = (
                    known.constructor_id,
                    dict(known.practice),
                    dict(known.laps),
                )
        fld2 = snap.event_field(ctx, given)
        post.append(await flow.full(ctx, fld2, fld2.index([g.driver_id for g in given])))
    return pre, post


def _by_driver(forecasts: list[Forecast], stage: str) -> pd.DataFrame:
    rows = []
    for fc in forecasts:
        for i in fc.rows:
            e = fc.field.entries[i]
            rec = {"race_id": fc.ctx.race_id, "driver_id": e.driver_id}
            if stage == "quali":
                rec |= {
                    "pred_gap": fc.quali.gap_pct[i],
                    "pred_time": fc.quali.time_s[i],
                    "pred_pole": fc.quali.pole_s,
                }
            else:
                assert fc.race is not None
                rec |= {"prob": fc.race.win_prob[i], "logit": fc.race.logit[i]}
            rows.append(rec)
    return pd.DataFrame(rows)


def renormalise(prob: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Probabilities over the scored cars of each race (a non-starter had a share)."""
    s = pd.Series(prob).groupby(groups).transform("sum").to_numpy()
    return np.where(s > 0, prob / s, 0.0)


def podium_over_starters(logit: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Podium probabilities over the scored cars of each race: Plackett-Luce on their
    logits (a non-starter drops out of the order; the rest keep their strengths)."""
    out = np.empty(len(logit), dtype=float)
    for _, idx in pd.Series(groups).groupby(groups).indices.items():
        out[idx] = podium_probability(logit[idx])
    return out


def served_predictions(
    snap: FeatureSnapshot,
    s1: Stage1Model,
    s2: Stage2Model,
    te1: StageData,
    te2: StageData,
) -> dict[str, pd.DataFrame]:
    """Stage-1 rows with the served gap/time, Stage-2 rows with the served win and
    podium probabilities before qualifying (``stage2_chained``) and after it
    (``stage2``)."""
    flow = TwoStage.local(snap, s1, s2)
    pre, post = asyncio.run(_season(snap, flow, te1.meta, te2.meta))
    q = te1.meta.merge(_by_driver(pre, "quali"), on=["race_id", "driver_id"], how="inner")
    out = {"stage1": q}
    for name, fcs in (("stage2_chained", pre), ("stage2", post)):
        m = te2.meta.merge(_by_driver(fcs, "race"), on=["race_id", "driver_id"], how="inner")
        groups = m["race_id"].to_numpy()
        m["prob"] = renormalise(m["prob"].to_numpy(float), groups)
        m["podium_prob"] = podium_over_starters(m["logit"].to_numpy(float), groups)
        out[name] = m
    return out
