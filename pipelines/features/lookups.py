"""The snapshot's look-ups (calendar, entry lists, fields, names and ids): plain dicts
and arrays built once, no DataFrame per request."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar, cast

import pandas as pd

from pipelines.f1db.parse import iter_race_rounds
from pipelines.features.event import Entry, EventContext, EventField

T = TypeVar("T")
MEMO_SIZE = 4096
"""Entries a memo holds before it is cleared."""

IdKind = Literal["circuit", "driver", "constructor"]
"""The kinds of F1DB id a request names."""


class SnapshotLookups:
    """The snapshot's frames and meta, the look-ups built from them, and its memos."""

    def __init__(self, frames: dict[str, pd.DataFrame], meta: dict[str, Any]) -> None:
        self.frames = frames
        self.meta = meta
        self.memo: dict[str, dict[Any, Any]] = {}
        """Per-snapshot caches of pure functions of it (the snapshot never changes)."""
        ev = frames["events"].sort_values(["date", "round"]).reset_index(drop=True)
        self.events = ev
        self._index_calendar(ev)
        self._practice: dict[int, list[tuple[str, str, str, float, float]]] = {}
        for p in frames["practice"].itertuples(index=False):
            driver, team, session = str(p.driver_id), str(p.constructor_id), str(p.session)
            lap = (driver, team, session, float(p.time_s), float(p.laps))
            self._practice.setdefault(int(p.race_id), []).append(lap)
        self._index_people(frames)

    def _index_calendar(self, ev: pd.DataFrame) -> None:
        self._by_id = {int(r): i for i, r in enumerate(ev["race_id"])}
        self._circuits: dict[str, tuple[str, str, float]] = {}
        """Each circuit's latest layout, type and lap length (``ev`` is in date order)."""
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

    def _index_people(self, frames: dict[str, pd.DataFrame]) -> None:
        lin = frames["lineage"]
        self.lineage = dict(zip(lin["constructor_id"], lin["lineage"], strict=True))
        num = frames["numbers"].sort_values("season")
        self._numbers: dict[tuple[int, int], str] = {}
        self._latest_number: dict[int, str] = {}
        for s, n, d in zip(num["season"], num["number"], num["driver_id"], strict=True):
            self._numbers[(int(s), int(n))] = str(d)
            self._latest_number[int(n)] = str(d)
        ent = self._entrants = frames["entrants"]
        names = frames["names"]
        self._names: dict[tuple[str, str], str] = {
            (str(k), str(i)): str(n)
            for k, i, n in zip(names["kind"], names["id"], names["name"], strict=True)
        }
        self._latest_team: dict[str, str] = {}
        latest: dict[str, tuple[int, int]] = {}
        for d, c, s, rounds in zip(
            ent["driver_id"], ent["constructor_id"], ent["season"], ent["rounds"], strict=True
        ):
            # the team of the latest round raced (a driver may move mid-season)
            key = (int(s), max(iter_race_rounds(rounds), default=0))
            if key >= latest.get(str(d), key):
                latest[str(d)] = key
                self._latest_team[str(d)] = str(c)

    def cached(self, name: str, key: Any, build: Callable[[], T]) -> T:
        """``build()`` (a pure function of the snapshot and ``key``), memoised per snapshot."""
        memo = self.memo.setdefault(name, {})
        hit = memo.get(key)
        if hit is None:
            if len(memo) >= MEMO_SIZE:
                memo.clear()
            hit = memo[key] = build()
        return cast(T, hit)

    # ----------------------------------------------------------------- calendar

    def event_by_round(self, season: int, rnd: int) -> EventContext | None:
        i = self._by_round.get((season, rnd))
        return None if i is None else self._context(i)

    def event_by_id(self, race_id: int) -> EventContext | None:
        i = self._by_id.get(race_id)
        return None if i is None else self._context(i)

    def _context(self, i: int) -> EventContext:
        """The calendar row as an EventContext (a fresh copy of a memoised one)."""
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

    def event_on(self, season: int, circuit_id: str, day: pd.Timestamp) -> EventContext | None:
        """The calendar's event of ``season`` at ``circuit_id`` on ``day``, or None."""
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

    def has_results(self, ctx: EventContext) -> bool:
        i = self._by_id.get(ctx.race_id or -1)
        return bool(i is not None and self.events["has_results"].iloc[i])

    def outcomes(self, race_id: int) -> pd.DataFrame:
        """Actual qualifying and race results of an event (empty before it is run)."""
        o = self.frames["outcomes"]
        return o[o["race_id"] == race_id]

    # ---------------------------------------------------------- entries, field

    def entries(self, ctx: EventContext) -> tuple[Entry, ...]:
        """The entry list and pre-qualifying practice of a known event (memoised: read only)."""
        key = (ctx.season, ctx.round, ctx.race_id)
        return self.cached("entries", key, lambda: tuple(self._entries(ctx)))

    def _entries(self, ctx: EventContext) -> list[Entry]:
        """The drivers entered for this round (FP1-only reserves are not; a ``testDriver``
        who raced a round is), with their practice from sessions before qualifying."""
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
        """Every best lap of each pre-qualifying session of a known event, by driver (a copy)."""
        key = ctx.race_id or -1

        def build() -> dict[str, dict[str, float]]:
            laps: dict[str, dict[str, float]] = {}
            for d, _c, s, t, _l in self._practice.get(key, []):
                if not math.isnan(t):
                    laps.setdefault(s, {})[d] = t
            return laps

        return {s: dict(v) for s, v in self.cached("field", key, build).items()}

    def event_field(self, ctx: EventContext, given: Sequence[Entry] | None = None) -> EventField:
        """The event's field with the ``given`` entries merged in, a given entry's laps
        replacing the driver's laps from the data in every session."""
        known = ctx.race_id is not None
        entries = list(self.entries(ctx)) if known else []
        laps = self.field_laps(ctx) if known else {}
        pos = {e.driver_id: i for i, e in enumerate(entries)}
        as_in_data = known and all(
            g.driver_id in pos and _car(g) == _car(entries[pos[g.driver_id]]) for g in given or ()
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

    # ------------------------------------------------------------- names, ids

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
        """F1DB ids of ``kind`` spelt like ``given``, closest first (none if it is one)."""
        import difflib

        def known() -> list[str]:
            if kind == "circuit":
                return sorted(self._circuits)
            return sorted(i for k, i in self._names if k == kind)

        ids = self.cached("ids", kind, known)
        return [] if given in ids else difflib.get_close_matches(given, ids, 2, 0.75)


def _car(e: Entry) -> tuple[Any, ...]:
    """What Stage-1's rows read of an entry: driver, team and laps."""
    return (e.driver_id, e.constructor_id, e.practice, e.laps)
