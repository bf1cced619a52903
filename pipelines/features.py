"""The one feature module: training and serving both build their rows here.

A ``FeatureSnapshot`` holds, for every driver and team, the history of their form
*after* each event, plus the calendar and each event's pre-qualifying practice. A
feature for an event reads only history dated strictly before that event (the
point-in-time rule), so a snapshot built from the whole data tree can still answer
"what did we know before Monaco 2025?". Row assembly is plain numpy so that the
serving path never builds a DataFrame.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.data import Tables, iter_race_rounds, team_lineage

SNAPSHOT_FORMAT = 1
PRACTICE_SESSIONS = ("fp1", "fp2", "fp3", "sq")
"""Pre-qualifying sessions used as features; the order is their order in a weekend."""

GAP_CLIP = 5.0
"""Qualifying gaps above 5 % (crashes, wet Q1 laps) are clipped in form features."""

EWM_ALPHA = 0.3
DNF_POSITION = 20.0

DRIVER_STATE = [
    "q_gap_ewm",
    "q_gap_last",
    "q_pos_ewm",
    "r_pos_ewm",
    "points_ewm",
    "win_ewm",
    "podium_ewm",
    "n_events",
]
TEAM_STATE = ["t_q_gap_ewm", "t_points_ewm", "t_win_ewm"]
STAND_STATE = ["points", "position"]

STAGE1_FEATURES = [
    "p_fp1_gap",
    "p_fp2_gap",
    "p_fp3_gap",
    "p_sq_gap",
    "p_best_gap",
    "p_last_gap",
    "p_mean_rank",
    "p_laps",
    "p_n_sessions",
    "p_tm_gap",
    "d_q_gap_ewm",
    "d_q_gap_last",
    "d_q_pos_ewm",
    "d_n_events",
    "d_points_ewm",
    "t_q_gap_ewm",
    "t_points_ewm",
    "d_vs_team_gap",
    "c_street",
    "c_sprint",
    "c_length_km",
]
STAGE2_FEATURES = [
    "grid",
    "q_gap_pct",
    "q_tm_gap",
    "d_r_pos_ewm",
    "d_points_ewm",
    "d_win_ewm",
    "d_podium_ewm",
    "d_q_gap_ewm",
    "t_points_ewm",
    "t_win_ewm",
    "d_champ_points",
    "d_champ_pos",
    "d_champ_share",
    "c_champ_points",
    "c_champ_pos",
]
STAGE2_MONOTONE = [-1, -1, -1] + [0] * (len(STAGE2_FEATURES) - 3)
"""Win probability never rises with a worse grid slot or a slower qualifying lap."""


# ----------------------------------------------------------------- request shapes


@dataclass
class EventContext:
    """What is known about an event before its weekend (no results)."""

    season: int
    date: pd.Timestamp
    round: int | None = None
    race_id: int | None = None
    circuit_id: str | None = None
    layout_id: str | None = None
    circuit_type: str | None = None
    course_length: float = math.nan
    is_sprint: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "season": self.season,
            "round": self.round,
            "date": self.date.date().isoformat(),
            "circuit_id": self.circuit_id,
            "race_id": self.race_id,
            "is_sprint": self.is_sprint,
        }


@dataclass
class Entry:
    """One driver at one event, with whatever is known before qualifying."""

    driver_id: str
    constructor_id: str | None = None
    practice: dict[str, float] = field(default_factory=dict)
    laps: dict[str, float] = field(default_factory=dict)
    grid: float | None = None
    quali_time: float | None = None


# ------------------------------------------------------------------ history index


@dataclass(frozen=True)
class PoleHistory:
    """Past events with a pole lap, oldest first, as arrays (what the estimate reads)."""

    session: np.ndarray
    layout: np.ndarray
    ratio: np.ndarray
    pole_s: np.ndarray

    @classmethod
    def from_frame(cls, history: pd.DataFrame) -> PoleHistory:
        return cls(
            history["session"].to_numpy(object),
            history["layout_id"].to_numpy(object),
            history["ratio"].to_numpy(float),
            history["pole_s"].to_numpy(float),
        )

    def head(self, n: int) -> PoleHistory:
        """The first ``n`` events (history is sorted by day, so: those before a day)."""
        return PoleHistory(self.session[:n], self.layout[:n], self.ratio[:n], self.pole_s[:n])


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

    def __contains__(self, key: str) -> bool:
        return key in self._idx

    def before(self, key: str, day: int, season: int | None = None) -> np.ndarray | None:
        hit = self._idx.get(key)
        if hit is None:
            return None
        days, seasons, vals = hit
        i = int(np.searchsorted(days, day, side="left")) - 1
        if i < 0 or (season is not None and seasons[i] != season):
            return None
        return vals[i]


def _day(ts: pd.Timestamp | Any) -> int:
    return int(pd.Timestamp(ts).value // 86_400_000_000_000)


# --------------------------------------------------------------- building history


def _quali_frame(t: Tables, races: pd.DataFrame) -> pd.DataFrame:
    q = t.qualifying.merge(races[["race_id", "date", "season"]], on="race_id")
    pole = q.groupby("race_id")["best_s"].transform("min")
    q = q.assign(pole_s=pole, gap_pct=(q["best_s"] / pole - 1.0) * 100.0)
    return q


def _driver_events(t: Tables, races: pd.DataFrame, lineage: dict[str, str]) -> pd.DataFrame:
    q = _quali_frame(t, races)[["race_id", "driver_id", "constructor_id", "gap_pct", "position"]]
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
    ev["day"] = ev["date"].map(_day)
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
    out["q_pos_ewm"] = _ewm(ev, "driver_id", "q_pos")
    out["r_pos_ewm"] = _ewm(ev, "driver_id", "r_pos")
    ev["points_f"] = ev["points"]
    out["points_ewm"] = _ewm(ev, "driver_id", "points_f")
    out["win_ewm"] = _ewm(ev, "driver_id", "win")
    out["podium_ewm"] = _ewm(ev, "driver_id", "podium")
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
    s = s.assign(day=s["date"].map(_day))
    return s[["id", "day", "season", "points", "position"]].reset_index(drop=True)


def build_event_frame(t: Tables) -> pd.DataFrame:
    """The calendar with each event's pre-qualifying reference lap and pole (if held)."""
    races = t.races.copy()
    races["day"] = races["date"].map(_day)
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


# --------------------------------------------------------------------- snapshot


FRAME_NAMES = (
    "events",
    "driver_state",
    "team_state",
    "dstand",
    "cstand",
    "practice",
    "entrants",
    "numbers",
    "lineage",
)


class FeatureSnapshot:
    """History and calendar for feature building, saved with the models (serving never
    reads the raw YAML)."""

    def __init__(self, frames: dict[str, pd.DataFrame], meta: dict[str, Any]) -> None:
        self.frames = frames
        self.meta = meta
        ev = frames["events"].sort_values(["date", "round"]).reset_index(drop=True)
        self.events = ev
        self._by_id = {int(r): i for i, r in enumerate(ev["race_id"])}
        self._by_round = {
            (int(s), int(r)): i
            for i, (s, r) in enumerate(zip(ev["season"], ev["round"], strict=True))
        }
        self.driver = History(frames["driver_state"], "driver_id", DRIVER_STATE)
        self.team = History(frames["team_state"], "lineage", TEAM_STATE)
        self.dstand = History(frames["dstand"], "id", STAND_STATE)
        self.cstand = History(frames["cstand"], "id", STAND_STATE)
        lin = frames["lineage"]
        self.lineage = dict(zip(lin["constructor_id"], lin["lineage"], strict=True))
        self._practice: dict[int, list[tuple[str, str, str, float, float]]] = {}
        for row in frames["practice"].itertuples(index=False):
            self._practice.setdefault(int(row.race_id), []).append(
                (
                    str(row.driver_id),
                    str(row.constructor_id),
                    str(row.session),
                    float(row.time_s),
                    float(row.laps),
                )
            )
        num = frames["numbers"].sort_values("season")
        self._numbers: dict[tuple[int, int], str] = {}
        self._latest_number: dict[int, str] = {}
        for s, n, d in zip(num["season"], num["number"], num["driver_id"], strict=True):
            self._numbers[(int(s), int(n))] = str(d)
            self._latest_number[int(n)] = str(d)
        ent = frames["entrants"]
        self._entrants = ent
        self.known_drivers = set(frames["driver_state"]["driver_id"]) | set(ent["driver_id"])
        self.known_teams = set(lin["constructor_id"]) | set(ent["constructor_id"])
        self._pole_hist: pd.DataFrame | None = None
        self._pole_arrays: tuple[np.ndarray, PoleHistory] | None = None
        self.memo: dict[str, dict[Any, Any]] = {}
        """Per-snapshot caches of pure functions of it (the snapshot never changes)."""
        self._latest_team: dict[str, str] = {}
        latest: dict[str, tuple[int, int]] = {}
        for d, c, s, rounds in zip(
            ent["driver_id"], ent["constructor_id"], ent["season"], ent["rounds"], strict=True
        ):
            # the team of the latest round raced (a mid-season move, e.g. Tsunoda 2025)
            key = (int(s), max(iter_race_rounds(rounds), default=0))
            if key >= latest.get(str(d), key):
                latest[str(d)] = key
                self._latest_team[str(d)] = str(c)

    # ---------------------------------------------------------------- building

    @classmethod
    def build(cls, t: Tables) -> FeatureSnapshot:
        """Everything serving needs, computed once from the parsed tables."""
        lineage = team_lineage(t.constructors)
        races = t.races
        ev = _driver_events(t, races, lineage)
        events = build_event_frame(t)
        prac = pre_quali_practice(t)
        ent = t.entrants.merge(
            races.groupby("season")["round"].max().rename("n_rounds"),
            left_on="season",
            right_index=True,
            how="left",
        ).sort_values("season")
        nums = (
            pd.concat(
                [
                    t.qualifying[["race_id", "driver_id", "driver_number"]],
                    t.results[["race_id", "driver_id", "driver_number"]],
                ]
            )
            .dropna(subset=["driver_number"])
            .merge(races[["race_id", "season"]], on="race_id")
        )
        nums = nums.rename(columns={"driver_number": "number"}).drop_duplicates(
            ["season", "number"], keep="last"
        )[["season", "number", "driver_id"]]
        lin = pd.DataFrame({"constructor_id": list(lineage), "lineage": list(lineage.values())})
        frames = {
            "events": events,
            "driver_state": build_driver_state(ev),
            "team_state": build_team_state(ev),
            "dstand": build_standings_state(t.driver_standings, races),
            "cstand": build_standings_state(t.constructor_standings, races),
            "practice": prac[
                ["race_id", "session", "driver_id", "constructor_id", "time_s", "laps"]
            ],
            "entrants": ent[["season", "constructor_id", "driver_id", "rounds", "test_driver"]],
            "numbers": nums.astype({"season": int, "number": int}),
            "lineage": lin,
        }
        with_results = events[events["has_results"]]
        last = with_results.iloc[-1] if len(with_results) else None
        meta = {
            "format": SNAPSHOT_FORMAT,
            "data_hash": t.content_hash,
            "seasons": [int(races["season"].min()), int(races["season"].max())],
            "latest_event": None
            if last is None
            else {
                "season": int(last["season"]),
                "round": int(last["round"]),
                "grand_prix_id": str(last["grand_prix_id"]),
                "date": pd.Timestamp(last["date"]).date().isoformat(),
            },
        }
        return cls(frames, meta)

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        for name in FRAME_NAMES:
            self.frames[name].to_parquet(path / f"{name}.parquet", index=False)
        (path / "snapshot.json").write_text(json.dumps(self.meta, indent=2))

    @classmethod
    def load(cls, path: Path) -> FeatureSnapshot:
        meta = json.loads((path / "snapshot.json").read_text())
        if meta.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(
                f"{path}: feature snapshot format {meta.get('format')} is not "
                f"{SNAPSHOT_FORMAT}; run `f1 refresh`"
            )
        frames = {name: pd.read_parquet(path / f"{name}.parquet") for name in FRAME_NAMES}
        return cls(frames, meta)

    # ----------------------------------------------------------------- events

    def event_by_round(self, season: int, rnd: int) -> EventContext | None:
        i = self._by_round.get((season, rnd))
        return None if i is None else self._context(i)

    def event_by_id(self, race_id: int) -> EventContext | None:
        i = self._by_id.get(race_id)
        return None if i is None else self._context(i)

    def _context(self, i: int) -> EventContext:
        """The calendar row as an EventContext (a fresh copy of a memoised one: building
        it from a pandas row costs more than everything else a request needs)."""
        memo = self.memo.setdefault("context", {})
        if i not in memo:
            memo[i] = self._build_context(i)
        return dataclasses.replace(memo[i])

    def _build_context(self, i: int) -> EventContext:
        r = self.events.iloc[i]
        return EventContext(
            season=int(r["season"]),
            round=int(r["round"]),
            race_id=int(r["race_id"]),
            date=pd.Timestamp(r["date"]),
            circuit_id=str(r["circuit_id"]),
            layout_id=str(r["layout_id"]),
            circuit_type=str(r["circuit_type"]),
            course_length=float(r["course_length"]),
            is_sprint=bool(r["is_sprint"]),
        )

    def next_event(self) -> EventContext | None:
        """The first calendar event after the latest one with results."""
        if "next" not in self.memo:
            done = self.events.index[self.events["has_results"]]
            self.memo["next"] = {"start": int(done.max()) + 1 if len(done) else 0}
        start = self.memo["next"]["start"]
        return self._context(start) if start < len(self.events) else None

    def circuit_event(self, season: int, circuit_id: str, day: pd.Timestamp) -> EventContext:
        """Context for an event not in the data, from the circuit's last visit."""
        ev = self.events[self.events["circuit_id"] == circuit_id]
        ctx = EventContext(season=season, date=pd.Timestamp(day), circuit_id=circuit_id)
        if len(ev):
            r = ev.iloc[-1]
            ctx.layout_id = str(r["layout_id"])
            ctx.circuit_type = str(r["circuit_type"])
            ctx.course_length = float(r["course_length"])
        return ctx

    def known_circuit(self, circuit_id: str) -> bool:
        return bool((self.events["circuit_id"] == circuit_id).any())

    def entries(self, ctx: EventContext) -> list[Entry]:
        """The entry list and pre-qualifying practice for a known event (fresh copies of a
        per-event cache, so callers may change them)."""
        memo = self.memo.setdefault("entries", {})
        key = (ctx.season, ctx.round, ctx.race_id)
        if key not in memo:
            memo[key] = self._entries(ctx)
        return [
            Entry(e.driver_id, e.constructor_id, dict(e.practice), dict(e.laps)) for e in memo[key]
        ]

    def _entries(self, ctx: EventContext) -> list[Entry]:
        """The entry list and pre-qualifying practice for a known event.

        Drivers come from the season's entrant list: those entered for this round. A
        test driver's practice outings are not rounds, so FP1-only reserves are left out,
        while F1DB's ``testDriver`` flag also marks drivers who raced some rounds (Doohan
        and Colapinto in 2024): they count for those rounds. Practice only from sessions
        held before qualifying.
        """
        ent = self._entrants
        ent = ent[ent["season"] == ctx.season]
        out: dict[str, Entry] = {}
        for d, c, rounds in zip(
            ent["driver_id"], ent["constructor_id"], ent["rounds"], strict=True
        ):
            if ctx.round is not None and ctx.round in set(iter_race_rounds(rounds)):
                out.setdefault(str(d), Entry(driver_id=str(d), constructor_id=str(c)))
        for d, _c, s, t, laps in self._practice.get(ctx.race_id or -1, []):
            e = out.get(d)
            if e is not None and not math.isnan(t):
                e.practice[s] = t
                e.laps[s] = laps
        return list(out.values())

    def practice_laps(self, race_id: int) -> list[tuple[str, str, str, float, float]]:
        """(driver, team, session, best lap s, laps) for each pre-qualifying session result."""
        return self._practice.get(race_id, [])

    def field_practice(self, ctx: EventContext) -> dict[str, list[float]]:
        """Every lap time set in each pre-qualifying session (reserves included)."""
        memo = self.memo.setdefault("field", {})
        key = ctx.race_id or -1
        if key not in memo:
            memo[key] = self._field_practice(key)
        return {s: list(v) for s, v in memo[key].items()}

    def _field_practice(self, race_id: int) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for _d, _c, s, t, _l in self._practice.get(race_id, []):
            if not math.isnan(t):
                out.setdefault(s, []).append(t)
        return out

    # ----------------------------------------------------------- resolution

    def driver_for_number(self, number: int, season: int) -> str | None:
        return self._numbers.get((season, number)) or self._latest_number.get(number)

    def latest_team(self, driver_id: str) -> str | None:
        return self._latest_team.get(driver_id)

    # -------------------------------------------------------------- features

    def stage1_matrix(
        self,
        ctx: EventContext,
        entries: Sequence[Entry],
        field_practice: dict[str, list[float]] | None = None,
    ) -> np.ndarray:
        """Stage-1 rows (one per entry, columns ``STAGE1_FEATURES``), memoised: a pure
        function of the snapshot and these inputs (a copy is returned)."""
        key = (
            _ctx_key(ctx),
            tuple(
                (e.driver_id, e.constructor_id, tuple(sorted(e.practice.items())),
                 tuple(sorted(e.laps.items())))
                for e in entries
            ),
            tuple(sorted((s, tuple(v)) for s, v in (field_practice or {}).items())),
        )  # fmt: skip
        return self._memo_rows("stage1", key, lambda: self._stage1(ctx, entries, field_practice))

    def _memo_rows(self, name: str, key: Any, build: Any) -> np.ndarray:
        memo = self.memo.setdefault(name, {})
        hit = memo.get(key)
        if hit is None:
            if len(memo) >= 2048:
                memo.clear()
            hit = memo[key] = build()
        return np.array(hit, copy=True)

    def _stage1(
        self,
        ctx: EventContext,
        entries: Sequence[Entry],
        field_practice: dict[str, list[float]] | None = None,
    ) -> np.ndarray:
        n = len(entries)
        day = _day(ctx.date)
        x = np.full((n, len(STAGE1_FEATURES)), np.nan)
        # practice: gaps and ranks within each session held before qualifying
        sess_best: dict[str, float] = {}
        times: dict[str, np.ndarray] = {}
        for s in PRACTICE_SESSIONS:
            t = np.array([e.practice.get(s, np.nan) for e in entries], dtype=float)
            times[s] = t
            field = list((field_practice or {}).get(s, [])) + [v for v in t if not math.isnan(v)]
            sess_best[s] = min(field) if field else math.nan
        gaps = np.full((n, len(PRACTICE_SESSIONS)), np.nan)
        ranks = np.full((n, len(PRACTICE_SESSIONS)), np.nan)
        for j, s in enumerate(PRACTICE_SESSIONS):
            t = times[s]
            gaps[:, j] = (t / sess_best[s] - 1.0) * 100.0
            ok = ~np.isnan(t)
            if ok.any():
                order = np.argsort(np.argsort(np.where(ok, t, np.inf)))
                ranks[:, j] = np.where(ok, (order + 1) / ok.sum(), np.nan)
        x[:, 0:4] = gaps
        with np.errstate(all="ignore"):
            x[:, 4] = _nanmin_rows(gaps)
            x[:, 5] = _last_valid(gaps)
            x[:, 6] = _nanmean_rows(ranks)
        x[:, 7] = np.array([sum(v for v in e.laps.values() if not math.isnan(v)) for e in entries])
        x[:, 8] = (~np.isnan(gaps)).sum(axis=1)
        x[:, 9] = _teammate_diff(entries, x[:, 4])
        for i, e in enumerate(entries):
            d = self.driver.before(e.driver_id, day)
            if d is not None:
                x[i, 10] = d[0]
                x[i, 11] = d[1]
                x[i, 12] = d[2]
                x[i, 13] = d[7]
                x[i, 14] = d[4]
            else:
                x[i, 13] = 0.0
            tm = self.team.before(
                self.lineage.get(e.constructor_id or "", e.constructor_id or ""), day
            )
            if tm is not None:
                x[i, 15] = tm[0]
                x[i, 16] = tm[1]
        x[:, 17] = x[:, 10] - x[:, 15]
        x[:, 18] = 1.0 if ctx.circuit_type == "STREET" else 0.0
        x[:, 19] = 1.0 if ctx.is_sprint else 0.0
        x[:, 20] = ctx.course_length
        return x

    def stage2_matrix(
        self,
        ctx: EventContext,
        entries: Sequence[Entry],
        grid: np.ndarray,
        q_gap: np.ndarray,
    ) -> np.ndarray:
        """Stage-2 rows: grid slot and qualifying gap (actual or Stage-1's) plus form
        (memoised like ``stage1_matrix``)."""
        key = (
            _ctx_key(ctx),
            tuple((e.driver_id, e.constructor_id) for e in entries),
            np.asarray(grid, dtype=float).tobytes(),
            np.asarray(q_gap, dtype=float).tobytes(),
        )
        return self._memo_rows("stage2", key, lambda: self._stage2(ctx, entries, grid, q_gap))

    def _stage2(
        self,
        ctx: EventContext,
        entries: Sequence[Entry],
        grid: np.ndarray,
        q_gap: np.ndarray,
    ) -> np.ndarray:
        n = len(entries)
        day = _day(ctx.date)
        x = np.full((n, len(STAGE2_FEATURES)), np.nan)
        x[:, 0] = grid
        x[:, 1] = q_gap
        x[:, 2] = _teammate_diff(entries, q_gap)
        leader = 0.0
        for i, e in enumerate(entries):
            d = self.driver.before(e.driver_id, day)
            if d is not None:
                x[i, 3], x[i, 4], x[i, 5], x[i, 6], x[i, 7] = d[3], d[4], d[5], d[6], d[0]
            tm = self.team.before(
                self.lineage.get(e.constructor_id or "", e.constructor_id or ""), day
            )
            if tm is not None:
                x[i, 8], x[i, 9] = tm[1], tm[2]
            ds = self.dstand.before(e.driver_id, day, season=ctx.season)
            x[i, 10], x[i, 11] = (ds[0], ds[1]) if ds is not None else (0.0, np.nan)
            leader = max(leader, x[i, 10])
            cs = self.cstand.before(e.constructor_id or "", day, season=ctx.season)
            x[i, 13], x[i, 14] = (cs[0], cs[1]) if cs is not None else (0.0, np.nan)
        x[:, 12] = x[:, 10] / leader if leader > 0 else 0.0
        return x

    # ------------------------------------------------------------------ pole

    def pole_reference(
        self, ctx: EventContext, field_practice: dict[str, list[float]]
    ) -> tuple[str | None, float]:
        """The latest pre-qualifying session with laps, and its best lap."""
        for s in reversed(PRACTICE_SESSIONS):
            laps = [t for t in field_practice.get(s, []) if not math.isnan(t)]
            if laps:
                return s, min(laps)
        return None, math.nan

    def pole_history(self, before_day: int) -> pd.DataFrame:
        """Past events with a pole lap: their reference session, lap and pole ratio."""
        if self._pole_hist is None:
            rows = []
            ev = self.events[self.events["pole_s"].notna()]
            for r in ev.itertuples(index=False):
                for s in reversed(PRACTICE_SESSIONS):
                    ref = getattr(r, f"best_{s}")
                    if not math.isnan(ref):
                        rows.append((r.layout_id, s, ref, r.pole_s, r.pole_s / ref, r.day))
                        break
            self._pole_hist = pd.DataFrame(
                rows, columns=["layout_id", "session", "ref", "pole_s", "ratio", "day"]
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


def _ctx_key(ctx: EventContext) -> tuple[Any, ...]:
    return (ctx.season, ctx.round, ctx.race_id, _day(ctx.date), ctx.layout_id,
            ctx.circuit_type, ctx.course_length, ctx.is_sprint)  # fmt: skip


def _nanmin_rows(a: np.ndarray) -> np.ndarray:
    out = np.where(np.isnan(a), np.inf, a).min(axis=1)
    return np.where(np.isinf(out), np.nan, out)


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    ok = ~np.isnan(a)
    cnt = ok.sum(axis=1)
    s = np.where(ok, a, 0.0).sum(axis=1)
    return np.where(cnt > 0, s / np.maximum(cnt, 1), np.nan)


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


def entries_from_ids(driver_ids: Iterable[str], snapshot: FeatureSnapshot) -> list[Entry]:
    """Entries for bare driver ids, each in their latest team (unknown ids keep no team)."""
    return [Entry(driver_id=d, constructor_id=snapshot.latest_team(d)) for d in driver_ids]
