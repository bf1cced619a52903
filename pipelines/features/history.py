"""Form and calendar history, built once from the parsed tables and read point in time:
a state row is what was known *after* an event, ``History.before`` reads strictly before."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipelines.f1db.parse import Tables
from pipelines.features.event import day_number
from pipelines.features.spec import PRACTICE_SESSIONS

GAP_CLIP = 5.0
"""Qualifying gaps above 5 % (crashes, wet Q1 laps) are clipped in form features."""

EWM_ALPHA = 0.3
DNF_POSITION = 20.0

DRIVER_EWM = ("q_pos", "r_pos", "points", "win", "podium")
"""Event columns each driver's form averages (``<column>_ewm``) beside the qualifying gap."""
DRIVER_STATE = ["q_gap_ewm", "q_gap_last", *(f"{c}_ewm" for c in DRIVER_EWM), "n_events"]
TEAM_STATE = ["t_q_gap_ewm", "t_points_ewm", "t_win_ewm"]
STAND_STATE = ["points", "position"]


class History:
    """Per-key state rows sorted by date; ``before(key, day)`` is the last row dated
    strictly before ``day`` (days since epoch), or ``None``."""

    def __init__(self, frame: pd.DataFrame, key: str, cols: Sequence[str]) -> None:
        self.cols = list(cols)
        self._idx: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        frame = frame.sort_values([key, "day"])
        keys = frame[key].to_numpy()
        days = frame["day"].to_numpy(np.int64)
        seasons = frame["season"].to_numpy(np.int64)
        vals = frame[self.cols].to_numpy(np.float64)
        bounds = np.flatnonzero(keys[1:] != keys[:-1]) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(keys)], strict=True):
            if hi > lo:
                self._idx[str(keys[lo])] = (days[lo:hi], seasons[lo:hi], vals[lo:hi])

    def many(self, keys: Sequence[str], day: int, season: int | None = None) -> np.ndarray:
        """``before`` for each key as rows of one matrix (NaN where nothing is known)."""
        out = np.full((len(keys), len(self.cols)), np.nan)
        for i, key in enumerate(keys):
            row = self.before(key, day, season)
            if row is not None:
                out[i] = row
        return out

    def before(self, key: str, day: int, season: int | None = None) -> np.ndarray | None:
        hit = self._idx.get(key)
        if hit is None:
            return None
        days, seasons, vals = hit
        i = int(np.searchsorted(days, day, side="left")) - 1
        if i < 0 or (season is not None and seasons[i] != season):
            return None
        return np.asarray(vals[i])


def driver_events(t: Tables, races: pd.DataFrame, lineage: dict[str, str]) -> pd.DataFrame:
    """Each driver's qualifying gap (%) and position and race result at each event."""
    q = t.qualifying.merge(races[["race_id", "date", "season"]], on="race_id")
    q["gap_pct"] = (q["best_s"] / q.groupby("race_id")["best_s"].transform("min") - 1.0) * 100.0
    q = q[["race_id", "driver_id", "constructor_id", "gap_pct", "position"]]
    q = q.rename(columns={"position": "q_pos", "constructor_id": "q_team"})
    r = t.results[
        ["race_id", "driver_id", "constructor_id", "position", "points", "position_text"]
    ].copy()
    r = r[r["position_text"] != "DNS"]
    r["r_pos"] = r["position"].fillna(DNF_POSITION).clip(upper=DNF_POSITION)
    r["win"] = (r["position"] == 1).astype(float)
    r["podium"] = (r["position"] <= 3).astype(float)
    ev = q.merge(
        r.drop(columns=["position", "position_text"]), on=["race_id", "driver_id"], how="outer"
    )
    ev["constructor_id"] = ev["constructor_id"].fillna(ev["q_team"])
    ev = ev.drop(columns=["q_team"]).merge(races[["race_id", "date", "season"]], on="race_id")
    ev["lineage"] = ev["constructor_id"].map(lambda c: lineage.get(c, c))
    ev["day"] = ev["date"].map(day_number)
    return ev.sort_values(["date", "race_id"]).reset_index(drop=True)


def _ewm(frame: pd.DataFrame, by: str, col: str) -> pd.Series:
    return frame.groupby(by)[col].transform(lambda s: s.ewm(alpha=EWM_ALPHA, ignore_na=True).mean())


def build_driver_state(ev: pd.DataFrame) -> pd.DataFrame:
    """Each driver's form *after* each event they took part in."""
    ev = ev.sort_values(["driver_id", "day"]).copy()
    ev["gap_c"] = ev["gap_pct"].clip(0.0, GAP_CLIP)
    out = ev[["driver_id", "day", "season"]].copy()
    out["q_gap_ewm"] = _ewm(ev, "driver_id", "gap_c")
    out["q_gap_last"] = ev.groupby("driver_id")["gap_c"].transform(lambda s: s.ffill())
    for col in DRIVER_EWM:
        out[f"{col}_ewm"] = _ewm(ev, "driver_id", col)
    out["n_events"] = ev.groupby("driver_id").cumcount() + 1.0
    return out.reset_index(drop=True)


def build_team_state(ev: pd.DataFrame) -> pd.DataFrame:
    """Each team lineage's form after each event (best car's gap, points, wins)."""
    ev = ev.assign(gap_c=ev["gap_pct"].clip(0.0, GAP_CLIP))
    g = ev.groupby(["lineage", "race_id", "day", "season"], as_index=False).agg(
        gap=("gap_c", "min"), pts=("points", "sum"), win=("win", "max")
    )
    g = g.sort_values(["lineage", "day"])
    out = g[["lineage", "day", "season"]].copy()
    out["t_q_gap_ewm"] = _ewm(g, "lineage", "gap")
    out["t_points_ewm"] = _ewm(g, "lineage", "pts")
    out["t_win_ewm"] = _ewm(g, "lineage", "win")
    return out.reset_index(drop=True)


def build_standings_state(stand: pd.DataFrame, races: pd.DataFrame) -> pd.DataFrame:
    s = stand.merge(races[["race_id", "date", "season"]], on="race_id")
    s = s.assign(day=s["date"].map(day_number))
    return s[["id", "day", "season", "points", "position"]].reset_index(drop=True)


def build_event_frame(t: Tables) -> pd.DataFrame:
    """The calendar with each event's pre-qualifying reference lap and pole (if held)."""
    races = t.races.copy()
    races["day"] = races["date"].map(day_number)
    prac = pre_quali_practice(t)
    ref = (
        prac.dropna(subset=["time_s"])
        .groupby(["race_id", "session"])["time_s"]
        .min()
        .unstack("session")
        .reindex(columns=list(PRACTICE_SESSIONS))
    )
    races = races.merge(ref.add_prefix("best_"), left_on="race_id", right_index=True, how="left")
    pole = t.qualifying.groupby("race_id")["best_s"].min().rename("pole_s")
    return races.merge(pole, left_on="race_id", right_index=True, how="left")


def pre_quali_practice(t: Tables) -> pd.DataFrame:
    """Practice rows from sessions held before qualifying (only those may be features)."""
    before = t.sessions[t.sessions["before_quali"]][["race_id", "session"]]
    p = t.practice.merge(before, on=["race_id", "session"])
    return p[p["session"].isin(PRACTICE_SESSIONS)].reset_index(drop=True)


def build_leader_state(dstand: pd.DataFrame) -> pd.DataFrame:
    """The championship leader's points after each round of each season."""
    lead = dstand.groupby(["season", "day"], as_index=False)["points"].max()
    return lead.assign(id=lead["season"].astype(str))[["id", "day", "season", "points"]]
