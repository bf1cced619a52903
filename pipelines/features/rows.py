"""The snapshot's feature rows for an event's whole field (never only the drivers a
request names), what they read of the time before the event, and the pole-lap history."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipelines.features.event import Entry, EventContext, EventField, PoleHistory, day_number
from pipelines.features.history import (
    DRIVER_STATE,
    STAND_STATE,
    TEAM_STATE,
    History,
    build_leader_state,
)
from pipelines.features.lookups import SnapshotLookups
from pipelines.features.spec import PRACTICE_SESSIONS, RULES_RESETS, STAGE1, STAGE2, Rows


class SnapshotRows(SnapshotLookups):
    """Form and standings histories (read point in time) and the rows built from them."""

    def __init__(self, frames: dict[str, pd.DataFrame], meta: dict[str, Any]) -> None:
        super().__init__(frames, meta)
        self.driver = History(frames["driver_state"], "driver_id", DRIVER_STATE)
        self.team = History(frames["team_state"], "lineage", TEAM_STATE)
        self.dstand = History(frames["dstand"], "id", STAND_STATE)
        self.leader = History(build_leader_state(frames["dstand"]), "id", ["points"])
        self.cstand = History(frames["cstand"], "id", STAND_STATE)
        self._pole_hist: pd.DataFrame | None = None
        self._pole_arrays: tuple[np.ndarray, PoleHistory] | None = None
        ev = self.events
        self._first_season = int(ev["season"].min()) if len(ev) else 0
        held = ev[ev["has_results"].astype(bool)]
        self._held_season = held["season"].to_numpy(int)
        self._held_day = np.array([day_number(d) for d in held["date"]], dtype=int)
        self._last_held_day = int(self._held_day.max()) if len(self._held_day) else None
        self._calendar_day = np.sort([day_number(d) for d in ev["date"]]).astype(int)

    def stage1_rows(self, ctx: EventContext, fld: EventField) -> np.ndarray:
        """Stage-1 rows for every car of the field, memoised (a copy) for a field as the
        data has it (a request's laps rarely repeat: its memo key would cost more)."""
        if not fld.as_in_data:
            return self._stage1(ctx, fld)
        return self._memo_rows("stage1", _ctx_key(ctx), lambda: self._stage1(ctx, fld))

    def stage2_rows(
        self,
        ctx: EventContext,
        entries: Sequence[Entry],
        grid: np.ndarray,
        q_gap: np.ndarray,
    ) -> np.ndarray:
        """Stage-2 rows for every car of a field (memoised like ``stage1_rows``)."""
        key = (
            _ctx_key(ctx),
            _cars(entries),
            np.asarray(grid, dtype=float).tobytes(),
            np.asarray(q_gap, dtype=float).tobytes(),
        )
        return self._memo_rows("stage2", key, lambda: self._stage2(ctx, entries, grid, q_gap))

    def _memo_rows(self, name: str, key: Any, build: Callable[[], np.ndarray]) -> np.ndarray:
        return np.array(self.cached(name, key, build), copy=True)

    def rules_races(self, ctx: EventContext) -> float:
        """Races held (in the data) under the technical rules of ``ctx``'s season before
        its date (``RULES_RESETS``); NaN when that era began before the data does."""
        start = max((s for s in RULES_RESETS if s <= ctx.season), default=None)
        if start is None or start < self._first_season:
            return math.nan
        day = day_number(ctx.date)
        return float(np.count_nonzero((self._held_season >= start) & (self._held_day < day)))

    def results_behind(self, ctx: EventContext) -> tuple[int, int] | None:
        """For an event after the latest results: the calendar events between them without
        results, and the days between; None for an event on or before them."""
        if self._last_held_day is None:
            return None
        last, day = self._last_held_day, day_number(ctx.date)
        if day <= last:
            return None
        cal = self._calendar_day
        between = int(np.searchsorted(cal, day, "left") - np.searchsorted(cal, last, "right"))
        return between, day - last

    def has_form(
        self, ctx: EventContext, entries: Sequence[Entry]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Whether each car's driver, and its team (by lineage), has a result in the data
        before the event (else its form features are empty)."""
        d, tm = self._form(entries, day_number(ctx.date))
        return ~np.isnan(d).all(axis=1), ~np.isnan(tm).all(axis=1)

    def _form(self, entries: Sequence[Entry], day: int) -> tuple[np.ndarray, np.ndarray]:
        """Each car's driver and team form before ``day`` (NaN rows where unknown),
        memoised (read-only) on the day and the cars, which alone it depends on."""

        def build() -> tuple[np.ndarray, np.ndarray]:
            teams = [
                self.lineage.get(e.constructor_id or "", e.constructor_id or "") for e in entries
            ]
            d, tm = _read_only(
                self.driver.many([e.driver_id for e in entries], day), self.team.many(teams, day)
            )
            return d, tm

        return self.cached("form", (day, _cars(entries)), build)

    def _standings(
        self, entries: Sequence[Entry], day: int, season: int
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """Each car's driver and constructor (points, position) in ``season`` before ``day``,
        and the leader's points (memoised like ``_form``)."""

        def build() -> tuple[np.ndarray, np.ndarray, float]:
            ds, cs = _read_only(
                self.dstand.many([e.driver_id for e in entries], day, season=season),
                self.cstand.many([e.constructor_id or "" for e in entries], day, season=season),
            )
            lead = self.leader.before(str(season), day, season=season)
            return ds, cs, float(lead[0]) if lead is not None else 0.0

        return self.cached("standings", (day, season, _cars(entries)), build)

    def _stage1(self, ctx: EventContext, fld: EventField) -> np.ndarray:
        entries = fld.entries
        n = len(entries)
        rows = STAGE1.rows(n)
        # practice: gaps to the session's best lap of the whole field, and each car's
        # rank among the field's cars that ran (0-1: 1 = slowest)
        gaps = np.full((n, len(PRACTICE_SESSIONS)), np.nan)
        ranks = np.full((n, len(PRACTICE_SESSIONS)), np.nan)
        for j, s in enumerate(PRACTICE_SESSIONS):
            t = np.array([e.practice.get(s, np.nan) for e in entries], dtype=float)
            best = min(fld.laps.get(s, {}).values(), default=math.nan)
            gaps[:, j] = (t / best - 1.0) * 100.0
            ok = ~np.isnan(t)
            if ok.any():
                order = np.argsort(np.argsort(np.where(ok, t, np.inf)))
                ranks[:, j] = np.where(ok, (order + 1) / ok.sum(), np.nan)
            rows[f"p_{s}_gap"] = gaps[:, j]
        with np.errstate(all="ignore"):
            rows["p_best_gap"] = np.fmin.reduce(gaps, axis=1)
            rows["p_last_gap"] = _last_valid(gaps)
            ran = ~np.isnan(ranks)
            rows["p_mean_rank"] = np.where(ran, ranks, 0.0).sum(axis=1) / ran.sum(axis=1)
        rows["p_laps"] = np.array(
            [sum(v for v in e.laps.values() if not math.isnan(v)) for e in entries], dtype=float
        )
        rows["p_n_sessions"] = (~np.isnan(gaps)).sum(axis=1)
        rows["p_tm_gap"] = _teammate_diff(entries, rows["p_best_gap"])
        self._fill_form(rows, *self._form(entries, day_number(ctx.date)))
        rows["d_n_events"] = np.nan_to_num(rows["d_n_events"], nan=0.0)
        rows["d_vs_team_gap"] = rows["d_q_gap_ewm"] - rows["t_q_gap_ewm"]
        rows["c_street"] = 1.0 if ctx.circuit_type == "STREET" else 0.0
        rows["c_sprint"] = 1.0 if ctx.is_sprint else 0.0
        rows["c_length_km"] = ctx.course_length
        rows["c_rules_races"] = self.rules_races(ctx)
        return rows.x

    def _stage2(
        self,
        ctx: EventContext,
        entries: Sequence[Entry],
        grid: np.ndarray,
        q_gap: np.ndarray,
    ) -> np.ndarray:
        day = day_number(ctx.date)
        rows = STAGE2.rows(len(entries))
        rows["grid"] = grid
        rows["q_gap_pct"] = q_gap
        rows["q_tm_gap"] = _teammate_diff(entries, np.asarray(q_gap, dtype=float))
        self._fill_form(rows, *self._form(entries, day))
        ds, cs, leader = self._standings(entries, day, ctx.season)
        rows["d_champ_points"] = np.nan_to_num(ds[:, 0], nan=0.0)
        rows["d_champ_pos"] = ds[:, 1]
        rows["d_champ_share"] = rows["d_champ_points"] / leader if leader > 0 else 0.0
        rows["c_champ_points"] = np.nan_to_num(cs[:, 0], nan=0.0)
        rows["c_champ_pos"] = cs[:, 1]
        rows["c_rules_races"] = self.rules_races(ctx)
        return rows.x

    @staticmethod
    def _fill_form(rows: Rows, d: np.ndarray, tm: np.ndarray) -> None:
        """The driver's (``d_<state>``) and team's form columns that ``rows`` have."""
        for i, name in enumerate(DRIVER_STATE):
            if f"d_{name}" in rows.spec.pos:
                rows[f"d_{name}"] = d[:, i]
        for i, name in enumerate(TEAM_STATE):
            if name in rows.spec.pos:
                rows[name] = tm[:, i]

    # ------------------------------------------------------------------ pole

    @staticmethod
    def pole_reference(laps: dict[str, dict[str, float]]) -> tuple[str | None, float]:
        """The fastest pre-qualifying session of the field, and its best lap: the
        fastest, not the latest, as a wet or red-flagged final practice is seconds off."""
        best: tuple[str | None, float] = (None, math.nan)
        for s in PRACTICE_SESSIONS:
            times = [t for t in laps.get(s, {}).values() if not math.isnan(t)]
            if times and (best[0] is None or min(times) < best[1]):
                best = (s, min(times))
        return best

    def pole_history(self, before_day: int) -> pd.DataFrame:
        """Past events with a pole lap: their reference session, lap and pole ratio."""
        if self._pole_hist is None:
            rows = []
            ev = self.events[self.events["pole_s"].notna()]
            for r in ev.itertuples(index=False):
                laps = {s: {"": getattr(r, f"best_{s}")} for s in PRACTICE_SESSIONS}
                s, ref = self.pole_reference(laps)  # the same rule as for the event asked
                if s is not None:
                    row = (r.layout_id, s, ref, r.pole_s, r.pole_s / ref, r.day)
                    rows.append((*row, r.course_length))
            self._pole_hist = pd.DataFrame(
                rows,
                columns=["layout_id", "session", "ref", "pole_s", "ratio", "day", "course_length"],
            )
        h = self._pole_hist
        return h[h["day"].to_numpy() < before_day]

    def pole_arrays(self, before_day: int) -> PoleHistory:
        """``pole_history`` as arrays (the serving path: no DataFrame per request)."""
        if self._pole_arrays is None:
            full = self.pole_history(2**62)
            self._pole_arrays = (full["day"].to_numpy(np.int64), PoleHistory.from_frame(full))
        days, arrays = self._pole_arrays
        return arrays.head(int(np.searchsorted(days, before_day, side="left")))


def _cars(entries: Sequence[Entry]) -> tuple[tuple[str, str | None], ...]:
    """A field's cars as a memo key: what form and standings look-ups depend on."""
    return tuple((e.driver_id, e.constructor_id) for e in entries)


def _read_only(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    for a in arrays:
        a.setflags(write=False)
    return arrays


def _ctx_key(ctx: EventContext) -> tuple[Any, ...]:
    """Everything of the event its rows depend on (and a little more)."""
    return tuple(vars(ctx).values())


def _last_valid(a: np.ndarray) -> np.ndarray:
    out = np.full(a.shape[0], np.nan)
    for j in range(a.shape[1]):
        out = np.where(np.isnan(a[:, j]), out, a[:, j])
    return out


def _teammate_diff(entries: Sequence[Entry], values: np.ndarray) -> np.ndarray:
    """Value minus the mean of the same team's other cars at this event (vectorised)."""
    teams: dict[str, int] = {}
    code = np.array(
        [teams.setdefault(e.constructor_id or f"?{i}", len(teams)) for i, e in enumerate(entries)],
        dtype=np.int64,
    )
    ok = ~np.isnan(values)
    total = np.bincount(code, weights=np.where(ok, values, 0.0), minlength=len(teams))
    count = np.bincount(code, weights=ok.astype(float), minlength=len(teams))
    mates_n = count[code] - ok
    mates_mean = (total[code] - np.where(ok, values, 0.0)) / np.maximum(mates_n, 1)
    return np.where(ok & (mates_n > 0), values - mates_mean, np.nan)
