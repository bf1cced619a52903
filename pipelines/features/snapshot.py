"""The feature snapshot: history and calendar as of any day, and the feature rows.

A ``FeatureSnapshot`` holds, for every driver and team, the history of their form
*after* each event, plus the calendar and each event's pre-qualifying practice. A
feature for an event reads only history dated strictly before that event (the
point-in-time rule), so a snapshot built from the whole data tree can still answer
"what did we know before Monaco 2025?".

Features are relative to the event's *field* (``EventField``: every car entered and
every lap set before qualifying), never to the drivers a request happens to name, so
a driver's rows are the same whoever else is asked. Row assembly is plain numpy so the
serving path never builds a DataFrame; columns are filled by name (``features.spec``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import numpy as np
import pandas as pd

from pipelines.f1db.parse import Tables, iter_race_rounds, team_lineage
from pipelines.features.event import Entry, EventContext, EventField, PoleHistory, day_number
from pipelines.features.history import (
    DRIVER_STATE,
    STAND_STATE,
    TEAM_STATE,
    History,
    build_driver_state,
    build_event_frame,
    build_leader_state,
    build_standings_state,
    build_team_state,
    driver_events,
    pre_quali_practice,
)
from pipelines.features.spec import PRACTICE_SESSIONS, RULES_RESETS, STAGE1, STAGE2

SNAPSHOT_FORMAT = 3
"""2: an ``outcomes`` frame (actual results, for /ui); 3: a ``names`` frame
(driver and team names for the answers)."""


T = TypeVar("T")

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
    "outcomes",
    "names",
)


IdKind = Literal["circuit", "driver", "constructor"]
"""The kinds of F1DB id a request names."""


class FeatureSnapshot:
    """History and calendar for feature building, saved with the models (serving never
    reads the raw YAML)."""

    def __init__(self, frames: dict[str, pd.DataFrame], meta: dict[str, Any]) -> None:
        self.frames = frames
        self.meta = meta
        ev = frames["events"].sort_values(["date", "round"]).reset_index(drop=True)
        self.events = ev
        self._by_id = {int(r): i for i, r in enumerate(ev["race_id"])}
        self._first_season = int(ev["season"].min()) if len(ev) else 0
        held = ev[ev["has_results"].astype(bool)]
        self._held_season = held["season"].to_numpy(int)
        self._held_day = np.array([day_number(d) for d in held["date"]], dtype=int)
        self._last_held_day = int(self._held_day.max()) if len(self._held_day) else None
        self._calendar_day = np.sort([day_number(d) for d in ev["date"]]).astype(int)
        self._circuits: dict[str, tuple[str, str, float]] = {}
        """Each circuit's latest calendar event's layout, type and lap length (the latest
        row wins: ``ev`` is in date order), read per request without pandas."""
        for c, lay, typ, km in zip(
            ev["circuit_id"], ev["layout_id"], ev["circuit_type"], ev["course_length"], strict=True
        ):
            self._circuits[str(c)] = (str(lay), str(typ), float(km))
        self._by_place = {
            (int(s), str(c), pd.Timestamp(d).date().isoformat()): i
            for i, (s, c, d) in enumerate(
                zip(ev["season"], ev["circuit_id"], ev["date"], strict=True)
            )
        }
        self._by_round = {
            (int(s), int(r)): i
            for i, (s, r) in enumerate(zip(ev["season"], ev["round"], strict=True))
        }
        self.driver = History(frames["driver_state"], "driver_id", DRIVER_STATE)
        self.team = History(frames["team_state"], "lineage", TEAM_STATE)
        self.dstand = History(frames["dstand"], "id", STAND_STATE)
        self.leader = History(build_leader_state(frames["dstand"]), "id", ["points"])
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
        names = frames["names"]
        self._names: dict[tuple[str, str], str] = {
            (str(k), str(i)): str(n)
            for k, i, n in zip(names["kind"], names["id"], names["name"], strict=True)
        }
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
        ev = driver_events(t, races, lineage)
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
            "outcomes": outcomes_frame(t),
            "names": _names_frame(t),
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

    @staticmethod
    def format_of(path: Path) -> int | None:
        """The format a saved snapshot was written in (None if unreadable)."""
        try:
            fmt = json.loads((path / "snapshot.json").read_text()).get("format")
        except (OSError, ValueError):
            return None
        return fmt if isinstance(fmt, int) else None

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
        return dataclasses.replace(self.cached("context", i, lambda: self._build_context(i)))

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
            grand_prix_id=str(r["grand_prix_id"]),
        )

    def next_event(self) -> EventContext | None:
        """The first calendar event after the latest one with results."""
        if "next" not in self.memo:
            done = self.events.index[self.events["has_results"]]
            self.memo["next"] = {"start": int(done.max()) + 1 if len(done) else 0}
        start = self.memo["next"]["start"]
        return self._context(start) if start < len(self.events) else None

    def season_events(self, season: int) -> list[EventContext]:
        """The season's calendar, in round order."""
        return [self._context(i) for i, s in enumerate(self.events["season"]) if s == season]

    def rules_races(self, ctx: EventContext) -> float:
        """Races held (in the data) under the technical rules of ``ctx``'s season before
        its date: 0 at the first race after a reset (``RULES_RESETS``), and for every
        event of a reset season the data has no race of; NaN when the rules era began
        before the data does (its length is not known) or before the first reset."""
        start = max((s for s in RULES_RESETS if s <= ctx.season), default=None)
        if start is None or start < self._first_season:
            return math.nan
        day = day_number(ctx.date)
        return float(np.count_nonzero((self._held_season >= start) & (self._held_day < day)))

    def results_behind(self, ctx: EventContext) -> tuple[int, int] | None:
        """For an event after the latest results: how many calendar events between them
        have no results in the data, and how many days the latest results are before it.
        None for an event on or before the latest results (its form is up to date)."""
        if self._last_held_day is None:
            return None
        last, day = self._last_held_day, day_number(ctx.date)
        if day <= last:
            return None
        cal = self._calendar_day
        between = int(np.searchsorted(cal, day, "left") - np.searchsorted(cal, last, "right"))
        return between, day - last

    def has_results(self, ctx: EventContext) -> bool:
        i = self._by_id.get(ctx.race_id or -1)
        return bool(i is not None and self.events["has_results"].iloc[i])

    def outcomes(self, race_id: int) -> pd.DataFrame:
        """Actual qualifying and race results of an event (empty before it is run)."""
        o = self.frames["outcomes"]
        return o[o["race_id"] == race_id]

    def event_on(self, season: int, circuit_id: str, day: pd.Timestamp) -> EventContext | None:
        """The calendar's event of ``season`` at ``circuit_id`` on ``day`` (its race
        date), or None: an event named by circuit and date may be one the data has."""
        i = self._by_place.get((season, circuit_id, pd.Timestamp(day).date().isoformat()))
        return None if i is None else self._context(i)

    def circuit_event(self, season: int, circuit_id: str, day: pd.Timestamp) -> EventContext:
        """Context for an event not in the data, from the circuit's last visit."""
        ctx = EventContext(season=season, date=pd.Timestamp(day), circuit_id=circuit_id)
        last = self._circuits.get(circuit_id)
        if last is not None:
            ctx.layout_id, ctx.circuit_type, ctx.course_length = last
        return ctx

    def known_circuit(self, circuit_id: str) -> bool:
        return circuit_id in self._circuits

    def entries(self, ctx: EventContext) -> tuple[Entry, ...]:
        """The entry list and pre-qualifying practice for a known event, from a per-event
        cache shared by every request (copying it was 8 % of the front's CPU): read only,
        never change what it returns."""
        key = (ctx.season, ctx.round, ctx.race_id)
        return self.cached("entries", key, lambda: tuple(self._entries(ctx)))

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

    def field_laps(self, ctx: EventContext) -> dict[str, dict[str, float]]:
        """Every best lap set in each pre-qualifying session of a known event, by driver
        (reserves included); a fresh copy of a per-event cache."""
        key = ctx.race_id or -1

        def build() -> dict[str, dict[str, float]]:
            laps: dict[str, dict[str, float]] = {}
            for d, _c, s, t, _l in self._practice.get(key, []):
                if not math.isnan(t):
                    laps.setdefault(s, {})[d] = t
            return laps

        return {s: dict(v) for s, v in self.cached("field", key, build).items()}

    def event_field(self, ctx: EventContext, given: Sequence[Entry] | None = None) -> EventField:
        """The event's field with the ``given`` entries merged in (see ``EventField``).

        A given entry carries its own practice (what a request gave, else the data's):
        its laps replace the driver's laps from the data in every session.
        """
        known = ctx.race_id is not None
        entries = list(self.entries(ctx)) if known else []
        laps = self.field_laps(ctx) if known else {}
        pos = {e.driver_id: i for i, e in enumerate(entries)}
        as_in_data = known and all(
            g.driver_id in pos and _same_car(g, entries[pos[g.driver_id]]) for g in given or ()
        )
        for g in given or ():
            if g.driver_id in pos:
                entries[pos[g.driver_id]] = g  # a given grid slot or time travels with it
            else:
                pos[g.driver_id] = len(entries)
                entries.append(g)
            if not as_in_data:
                for session in laps.values():
                    session.pop(g.driver_id, None)
        if not as_in_data:
            for e in given or ():
                for s, t in e.practice.items():
                    if not math.isnan(t):
                        laps.setdefault(s, {})[e.driver_id] = t
        return EventField(entries, laps, as_in_data=as_in_data)

    # ----------------------------------------------------------- resolution

    def driver_for_number(self, number: int, season: int) -> str | None:
        return self._numbers.get((season, number)) or self._latest_number.get(number)

    def latest_team(self, driver_id: str) -> str | None:
        return self._latest_team.get(driver_id)

    def driver_name(self, driver_id: str | None) -> str | None:
        """F1DB's name for a driver ("Max Verstappen"); None for an id not in F1DB."""
        return self._names.get(("driver", driver_id or ""))

    def constructor_name(self, constructor_id: str | None) -> str | None:
        """F1DB's name for a constructor ("Red Bull"); None for an id not in F1DB."""
        return self._names.get(("constructor", constructor_id or ""))

    def similar_ids(self, kind: IdKind, given: str) -> list[str]:
        """F1DB ids of ``kind`` spelt like ``given`` (a typo's likely meaning), closest
        first; none when ``given`` is one (a known id means what it says)."""
        import difflib

        def known() -> list[str]:
            if kind == "circuit":
                return sorted(self._circuits)
            return sorted(i for k, i in self._names if k == kind)

        ids = self.cached("ids", kind, known)
        return [] if given in ids else difflib.get_close_matches(given, ids, 2, 0.75)

    # -------------------------------------------------------------- features

    def stage1_rows(self, ctx: EventContext, fld: EventField) -> np.ndarray:
        """Stage-1 rows for every car of the field (columns ``STAGE1.names``), memoised:
        a pure function of the snapshot and these inputs (a copy is returned)."""
        if not fld.as_in_data:  # laps from a request: building a memo key cost more
            return self._stage1(ctx, fld)  # than the rows, and such bodies rarely repeat
        return self._memo_rows("stage1", _ctx_key(ctx), lambda: self._stage1(ctx, fld))

    def _memo_rows(self, name: str, key: Any, build: Callable[[], np.ndarray]) -> np.ndarray:
        return np.array(self.cached(name, key, build), copy=True)

    def cached(self, name: str, key: Any, build: Callable[[], T]) -> T:
        """``build()``, kept per snapshot under ``key`` (callers make it a pure function
        of the snapshot and the key); each memo is cleared when it reaches 4096 entries."""
        memo = self.memo.setdefault(name, {})
        hit = memo.get(key)
        if hit is None:
            if len(memo) >= 4096:
                memo.clear()
            hit = memo[key] = build()
        return cast(T, hit)

    def _form(self, entries: Sequence[Entry], day: int) -> tuple[np.ndarray, np.ndarray]:
        """Each car's driver and team form before ``day`` (NaN rows where unknown).

        Memoised (read-only arrays) on the day and the cars: a request's own laps change
        the practice features, never the form, so jittered bodies about one event share
        it (both stages ask)."""

        def build() -> tuple[np.ndarray, np.ndarray]:
            teams = [
                self.lineage.get(e.constructor_id or "", e.constructor_id or "") for e in entries
            ]
            d, tm = _read_only(
                self.driver.many([e.driver_id for e in entries], day), self.team.many(teams, day)
            )
            return d, tm

        return self.cached("form", (day, _cars(entries)), build)

    def has_form(
        self, ctx: EventContext, entries: Sequence[Entry]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Whether each car's driver, and its team (by lineage), has a result in the data
        before the event; where not (a rookie's or a new team's first race, an id F1DB
        does not know) the form features are empty. Reads the memoised form both stages
        use: no history look-up of its own."""
        d, tm = self._form(entries, day_number(ctx.date))
        return ~np.isnan(d).all(axis=1), ~np.isnan(tm).all(axis=1)

    def _standings(
        self, entries: Sequence[Entry], day: int, season: int
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """Championship standings before ``day`` in ``season``: each car's driver and
        constructor (points, position) and the leader's points; memoised like ``_form``."""

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
        day = day_number(ctx.date)
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
            rows["p_best_gap"] = _nanmin_rows(gaps)
            rows["p_last_gap"] = _last_valid(gaps)
            rows["p_mean_rank"] = _nanmean_rows(ranks)
        rows["p_laps"] = np.array(
            [sum(v for v in e.laps.values() if not math.isnan(v)) for e in entries], dtype=float
        )
        rows["p_n_sessions"] = (~np.isnan(gaps)).sum(axis=1)
        rows["p_tm_gap"] = _teammate_diff(entries, rows["p_best_gap"])
        d, tm = self._form(entries, day)
        col = self.driver.col
        rows["d_q_gap_ewm"] = d[:, col("q_gap_ewm")]
        rows["d_q_gap_last"] = d[:, col("q_gap_last")]
        rows["d_q_pos_ewm"] = d[:, col("q_pos_ewm")]
        rows["d_n_events"] = np.nan_to_num(d[:, col("n_events")], nan=0.0)
        rows["d_points_ewm"] = d[:, col("points_ewm")]
        rows["t_q_gap_ewm"] = tm[:, self.team.col("t_q_gap_ewm")]
        rows["t_points_ewm"] = tm[:, self.team.col("t_points_ewm")]
        rows["d_vs_team_gap"] = rows["d_q_gap_ewm"] - rows["t_q_gap_ewm"]
        rows["c_street"] = 1.0 if ctx.circuit_type == "STREET" else 0.0
        rows["c_sprint"] = 1.0 if ctx.is_sprint else 0.0
        rows["c_length_km"] = ctx.course_length
        rows["c_rules_races"] = self.rules_races(ctx)
        return rows.x

    def stage2_rows(
        self,
        ctx: EventContext,
        entries: Sequence[Entry],
        grid: np.ndarray,
        q_gap: np.ndarray,
    ) -> np.ndarray:
        """Stage-2 rows for every car of a field: grid slot and qualifying gap (actual
        or Stage-1's) plus form (memoised like ``stage1_rows``)."""
        key = (
            _ctx_key(ctx),
            _cars(entries),
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
        day = day_number(ctx.date)
        rows = STAGE2.rows(len(entries))
        rows["grid"] = grid
        rows["q_gap_pct"] = q_gap
        rows["q_tm_gap"] = _teammate_diff(entries, np.asarray(q_gap, dtype=float))
        d, tm = self._form(entries, day)
        col = self.driver.col
        rows["d_r_pos_ewm"] = d[:, col("r_pos_ewm")]
        rows["d_points_ewm"] = d[:, col("points_ewm")]
        rows["d_win_ewm"] = d[:, col("win_ewm")]
        rows["d_podium_ewm"] = d[:, col("podium_ewm")]
        rows["d_q_gap_ewm"] = d[:, col("q_gap_ewm")]
        rows["t_points_ewm"] = tm[:, self.team.col("t_points_ewm")]
        rows["t_win_ewm"] = tm[:, self.team.col("t_win_ewm")]
        ds, cs, leader = self._standings(entries, day, ctx.season)
        rows["d_champ_points"] = np.nan_to_num(ds[:, 0], nan=0.0)
        rows["d_champ_pos"] = ds[:, 1]
        rows["d_champ_share"] = rows["d_champ_points"] / leader if leader > 0 else 0.0
        rows["c_champ_points"] = np.nan_to_num(cs[:, 0], nan=0.0)
        rows["c_champ_pos"] = cs[:, 1]
        rows["c_rules_races"] = self.rules_races(ctx)
        return rows.x

    # ------------------------------------------------------------------ pole

    @staticmethod
    def pole_reference(laps: dict[str, dict[str, float]]) -> tuple[str | None, float]:
        """The fastest pre-qualifying session of the field, and its best lap.

        The fastest, not the latest: a wet or red-flagged final practice would otherwise
        set the pole estimate seconds off (Hungary 2022, Zandvoort 2024). Backtests
        2012-2024: dry-event pole MAE 0.86 s with the latest session, 0.50 s with this.
        """
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


def outcomes_frame(t: Tables) -> pd.DataFrame:
    """What happened at each event with results: qualifying position and best lap, race
    classification. Never a feature: shown beside a forecast for a past event."""
    q = t.qualifying[["race_id", "driver_id", "position", "best_s"]].rename(
        columns={"position": "q_pos", "best_s": "q_time_s"}
    )
    r = t.results[["race_id", "driver_id", "position", "position_text"]].rename(
        columns={"position": "r_pos", "position_text": "r_text"}
    )
    out = q.merge(r, on=["race_id", "driver_id"], how="outer")
    out["r_text"] = out["r_text"].fillna("").astype(str)
    return out.astype({"q_pos": float, "q_time_s": float, "r_pos": float})


def _names_frame(t: Tables) -> pd.DataFrame:
    """Every F1DB driver and constructor with a name: (kind, id, name)."""
    parts = []
    for kind, frame, col in (
        ("driver", t.drivers, "driver_id"),
        ("constructor", t.constructors, "constructor_id"),
    ):
        f = frame[[col, "name"]].dropna()
        parts.append(
            pd.DataFrame({"kind": kind, "id": f[col].astype(str), "name": f["name"].astype(str)})
        )
    return pd.concat(parts, ignore_index=True)


def _cars(entries: Sequence[Entry]) -> tuple[tuple[str, str | None], ...]:
    """A field's cars as a memo key: what form and standings look-ups depend on."""
    return tuple((e.driver_id, e.constructor_id) for e in entries)


def _read_only(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    for a in arrays:
        a.setflags(write=False)
    return arrays


def _same_car(a: Entry, b: Entry) -> bool:
    """Same driver, team and laps: what Stage-1's rows read of an entry."""
    return (a.driver_id, a.constructor_id, a.practice, a.laps) == (
        b.driver_id,
        b.constructor_id,
        b.practice,
        b.laps,
    )


def _ctx_key(ctx: EventContext) -> tuple[Any, ...]:
    return (
        ctx.season,
        ctx.round,
        ctx.race_id,
        day_number(ctx.date),
        ctx.layout_id,
        ctx.circuit_type,
        ctx.course_length,
        ctx.is_sprint,
    )


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
