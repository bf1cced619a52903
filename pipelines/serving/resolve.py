"""From a validated request to the event, its field, the requested drivers and the
answer's warnings: one path for the Bento, the CLI and the benchmark servers."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.features.event import Entry, EventContext, EventField
from pipelines.models.stage1 import Stage1Config
from pipelines.models.stage2 import Stage2Config, grid_lean_share
from pipelines.serving.errors import RequestError
from pipelines.serving.schemas import DriverInput, EventInput
from pipelines.serving.text import quote

if TYPE_CHECKING:
    from pipelines.features.lookups import IdKind
    from pipelines.features.snapshot import FeatureSnapshot
    from pipelines.models.store import Stored


@dataclass
class Resolved:
    """The event, its whole field, and where the requested drivers are in it."""

    event: EventContext
    field: EventField
    rows: np.ndarray
    warnings: list[str] = dataclasses.field(default_factory=list)
    fitted_on_event: bool = False  # the served models were fitted on this event's results


@dataclass(frozen=True)
class ServedModels:
    """What an answer's warnings say of the served models: their settings, what they saw."""

    stage1: Stage1Config
    stage2: Stage2Config
    fitted: FittedOn | None = None

    @classmethod
    def of(cls, stage1: Stored, stage2: Stored) -> ServedModels:
        """From the two stored models' configurations and metadata."""
        from pipelines.models import store

        return cls(
            store.open_stage1_config(stage1),
            store.open_stage2_config(stage2),
            FittedOn.of(stage1.info.metadata, stage2.info.metadata),
        )


@dataclass(frozen=True)
class FittedOn:
    """The events the served models were fitted on: Stage-1 from ``first_season`` through
    ``stage1_through`` (season, round), Stage-2 ``first_season``-``stage2_last``."""

    first_season: int
    stage1_through: tuple[int, int]
    stage2_last: int

    @classmethod
    def of(cls, stage1_meta: Mapping[str, Any], stage2_meta: Mapping[str, Any]) -> FittedOn | None:
        """From the stored models' metadata; None when it does not say."""
        seasons1, seasons2 = (m.get("training_seasons") for m in (stage1_meta, stage2_meta))
        if not (
            isinstance(seasons1, list) and seasons1 and isinstance(seasons2, list) and seasons2
        ):
            return None
        through = stage1_meta.get("fitted_through")
        if isinstance(through, dict) and {"season", "round"} <= through.keys():
            last1 = (int(through["season"]), int(through["round"]))
        else:
            last1 = (int(seasons1[-1]), LAST_ROUND)
        return cls(int(seasons1[0]), last1, int(seasons2[-1]))


LAST_ROUND = 10**6  # a round after any season's last


def resolve_request(
    snap: FeatureSnapshot,
    event: EventInput | None,
    drivers: Sequence[DriverInput] | None,
    served: ServedModels | None = None,
    *,
    race: bool = False,
) -> Resolved:
    """Event, field, requested drivers and warnings for a request (raises RequestError);
    ``race``: a win forecast is asked (Stage-2's warnings too)."""
    warnings: list[str] = []
    ctx = resolve_event(snap, event, warnings)
    numbered: set[int] | None = None
    if drivers is None:
        fld = _data_field(snap, ctx, event)
        rows = np.arange(len(fld.entries))
    else:
        entries, at, numbered = _given_entries(snap, ctx, drivers, warnings)
        fld = snap.event_field(ctx, entries)
        if any(e.grid is not None for e in entries):
            check_given_grid(fld.entries, [at.get(e.driver_id, -1) for e in fld.entries])
        rows = fld.index([e.driver_id for e in entries])
    warnings.extend(_no_practice_warning(fld) + _no_form_warnings(snap, ctx, fld, rows, numbered))
    warnings.extend(_stale_data_warning(snap, ctx))
    rules_races = snap.rules_races(ctx)
    seen = fitted_on_warning(ctx, served.fitted, race) if served else None
    notes = [seen]
    if served is not None and served.stage1.practice_model:
        notes.append(new_rules_quali_warning(ctx, fld, rules_races))
    if served is not None and race:
        notes.append(rules_reset_warning(ctx, served.stage2, rules_races))
    warnings.extend(n for n in notes if n)
    return Resolved(ctx, fld, rows, warnings, fitted_on_event=seen is not None)


def resolve_event(
    snap: FeatureSnapshot, event: EventInput | None, warnings: list[str]
) -> EventContext:
    """The event to predict: given, else the next one in the calendar, else a blank one."""
    import pandas as pd  # with the snapshot: loaded already in the process that calls this

    if event is None:
        ctx = snap.next_event()
        if ctx is not None:
            warnings.append(
                f"no event given: using the next event in the calendar, {ctx.season} round "
                f"{ctx.round} ({ctx.circuit_id})"
            )
            return ctx
        last = snap.meta.get("latest_event") or {}
        day = pd.Timestamp(last.get("date", "2000-01-01")) + pd.Timedelta(days=1)
        warnings.append(
            "no event given and the calendar has no event after the latest results "
            f"({last.get('season')} round {last.get('round')}): circuit features are unknown "
            "and no lap time can be predicted; pass an event to get one"
        )
        return EventContext(season=int(day.year) + (1 if day.month == 12 else 0), date=day)
    if event.round is not None:
        ctx = snap.event_by_round(event.season, event.round)
        if ctx is None:
            lo, hi = snap.meta.get("seasons", ["?", "?"])
            raise RequestError(
                ["event", "round"],
                f"season {event.season} round {event.round} is not in the data (seasons "
                f"{lo}-{hi}); give circuit_id and date for an event that is not",
            )
        _check_same_event(ctx, event)
        return ctx
    assert event.circuit_id is not None and event.date is not None
    known = snap.event_on(event.season, event.circuit_id, pd.Timestamp(event.date))
    if known is not None:  # the data's event, named by circuit and date: its entry list
        return known
    ctx = snap.circuit_event(event.season, event.circuit_id, pd.Timestamp(event.date))
    if not snap.known_circuit(event.circuit_id):
        warnings.append(
            f"circuit {quote(event.circuit_id)} is not in the data: circuit features are unknown "
            "and no lap time can be predicted without practice laps"
            + _did_you_mean(snap, "circuit", event.circuit_id)
        )
    return ctx


def _check_same_event(ctx: EventContext, event: EventInput) -> None:
    """A ``circuit_id`` or ``date`` given beside ``round`` must be that round's."""
    if event.circuit_id is not None and event.circuit_id != ctx.circuit_id:
        raise RequestError(
            ["event", "circuit_id"],
            f"season {ctx.season} round {ctx.round} is at {quote(str(ctx.circuit_id))}, not "
            f"{quote(event.circuit_id)}; give the round alone, or circuit_id and date alone",
        )
    day = ctx.date.date()
    if event.date is not None and event.date != day:
        raise RequestError(
            ["event", "date"],
            f"season {ctx.season} round {ctx.round} is raced on {day}, not "
            f"{event.date.isoformat()}; give the round alone, or circuit_id and date alone",
        )


def _data_field(snap: FeatureSnapshot, ctx: EventContext, event: EventInput | None) -> EventField:
    """The data's field of an event asked without drivers (RequestError without one)."""
    if ctx.race_id is not None:
        return snap.event_field(ctx)
    if event is None:  # "{}" once the data's calendar has run out
        last = snap.meta.get("latest_event")
        latest = f"{last['season']} round {last['round']}" if last else "none"
        raise RequestError(
            ["drivers"],
            "required: no event was given and the data has no event after its latest "
            f"results ({latest}), so there is no entry list to use; give an event in "
            "the data, or the drivers",
        )
    raise RequestError(
        ["drivers"],
        "required: the event is not in the data, so there is no entry list to use",
    )


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


def _given_entries(
    snap: FeatureSnapshot, ctx: EventContext, drivers: Sequence[DriverInput], warnings: list[str]
) -> tuple[list[Entry], dict[str, int], set[int]]:
    """The request's drivers as entries (the data's team and laps where none are given),
    where each was asked, and the indexes of car numbers no driver raced with."""
    known = ctx.race_id is not None
    data_entries = {e.driver_id: e for e in snap.entries(ctx)} if known else {}
    entries: list[Entry] = []
    at: dict[str, int] = {}
    unused: set[str] = set()
    numbered: set[int] = set()  # warned about already
    for i, d in enumerate(drivers):
        driver_id = d.driver_id
        if isinstance(driver_id, int):
            found = snap.driver_for_number(driver_id, ctx.season)
            if found is None:
                numbered.add(i)
                warnings.append(
                    f"drivers[{i}]: no driver raced with number {driver_id}: predicted "
                    "without history"
                )
            driver_id = found or f"car-{driver_id}"
        if driver_id in at:
            raise RequestError(
                ["drivers", i, "driver_id"],
                f"duplicated driver '{driver_id}' (also drivers[{at[driver_id]}])",
            )
        at[driver_id] = i
        from_data = data_entries.get(driver_id)
        team = d.constructor_id or (from_data.constructor_id if from_data else None)
        e = Entry(driver_id=driver_id, constructor_id=team or snap.latest_team(driver_id))
        given = d.practice.model_dump(exclude_none=True) if d.practice else {}
        if given:
            e.practice = given
        elif from_data is not None:
            e.practice, e.laps = dict(from_data.practice), dict(from_data.laps)
        if d.grid_position is not None:
            e.grid = float(d.grid_position)
        if d.qualifying_time is not None:
            e.quali_time = float(d.qualifying_time)
        unused.update(d.extra_inputs())
        entries.append(e)
    if unused:
        warnings.append(
            "inputs not used by the model (accepted for compatibility): "
            + ", ".join(quote(u) for u in sorted(unused))
        )
    missing = [e.driver_id for e in entries if not e.practice]
    if known and missing and len(missing) < len(entries):
        warnings.append("no practice laps for: " + ", ".join(missing))
    return entries, at, numbered


def fitted_on_warning(ctx: EventContext, fitted: FittedOn | None, race: bool) -> str | None:
    """The warning for an event whose own qualifying (Stage-1) or race (Stage-2, when
    ``race``) the served models were fitted on: the answer has seen the outcome."""
    if fitted is None or ctx.race_id is None or ctx.round is None:
        return None
    if ctx.season < fitted.first_season:
        return None
    stage1 = (ctx.season, ctx.round) <= fitted.stage1_through
    stage2 = race and ctx.season <= fitted.stage2_last
    if not (stage1 or stage2):
        return None
    s1_season, s1_round = fitted.stage1_through
    last1 = f"{s1_season}" if s1_round >= LAST_ROUND else f"{s1_season} round {s1_round}"
    which = [f"Stage-1 fitted through {last1}"] if stage1 else []
    if stage2:
        which.append(f"Stage-2 on {fitted.first_season}-{fitted.stage2_last}")
    return (
        f"{ctx.season} round {ctx.round} is in the served models' training data "
        f"({', '.join(which)}): this answer knows how the event went, so it is not the "
        "forecast they would have made before it; held-out figures: /model_info"
    )


def new_rules_quali_warning(ctx: EventContext, fld: EventField, rules_races: float) -> str | None:
    """The warning for a qualifying forecast at the first race under new technical rules
    (Stage-1's practice-only ensemble answers for every car with a practice lap)."""
    if rules_races != 0 or not any(e.practice for e in fld.entries):
        return None
    return (
        f"{ctx.season}: the first race under new technical rules in the data: the "
        "qualifying gaps of cars with a practice lap come from practice alone (form from "
        "before the rules changed is about cars that no longer race)"
    )


def rules_reset_warning(ctx: EventContext, stage2: Stage2Config, n: float) -> str | None:
    """The warning for a win forecast ``n`` races under new technical rules, when Stage-2's
    grid lean takes a share."""
    share = float(grid_lean_share(stage2, np.array(n)))
    if share <= 0.0:
        return None
    return (
        f"{ctx.season}: {n:.0f} race(s) under the current technical rules in the data: the "
        f"win forecast takes {share:.0%} of its log-odds from the grid alone (form from "
        "before the rules changed says little about the new order)"
    )


STALE_DAYS = 120  # latest results further before an event (past a winter break): a warning


def _stale_data_warning(snap: FeatureSnapshot, ctx: EventContext) -> list[str]:
    """The warning for an event the data's results stop well short of."""
    behind = snap.results_behind(ctx)
    if behind is None:
        return []
    missing, days = behind
    last = snap.meta.get("latest_event") or {}
    latest = f"{last.get('season')} round {last.get('round')}, {last.get('date')}"
    if missing:
        return [
            f"{missing} event(s) of the calendar before this one have no results in the data "
            f"(latest results: {latest}): form and standings are as of then"
        ]
    if days > STALE_DAYS:
        return [
            f"the data's latest results ({latest}) are {days} days before this event: form "
            "and standings are as of then"
        ]
    return []


def _no_practice_warning(fld: EventField) -> list[str]:
    """The warning for a field without a single practice lap: Stage-1 reads form alone."""
    if any(e.practice for e in fld.entries):
        return []
    return [
        "no practice laps for this event (none in the data yet, none given): the "
        "qualifying gaps and the grid come from form alone"
    ]


def _no_form_warnings(
    snap: FeatureSnapshot,
    ctx: EventContext,
    fld: EventField,
    rows: np.ndarray,
    numbered: set[int] | None,
) -> list[str]:
    """Warnings for the asked drivers or teams with no result before the event; one line
    per kind for the data's entry list (``numbered`` None: no request indexes warned)."""
    driver_ok, team_ok = snap.has_form(ctx, fld.entries)
    out: list[str] = []
    if numbered is None:
        new_drivers = [fld.entries[r].driver_id for r in rows if not driver_ok[r]]
        new_teams = sorted({str(fld.entries[r].constructor_id) for r in rows if not team_ok[r]})
        for kind, ids, form in (
            ("driver(s)", new_drivers, "their"),
            ("team(s)", new_teams, "the team's"),
        ):
            if ids:
                named = ", ".join(quote(x) for x in ids)
                out.append(
                    f"no results in the data before this event for {kind} {named}: "
                    f"predicted without {form} form"
                )
        return out
    for i, r in enumerate(rows):
        e = fld.entries[r]
        if i not in numbered and not driver_ok[r]:
            out.append(
                f"drivers[{i}]: driver {quote(e.driver_id)} has no results in the data "
                "before this event: predicted without form"
                + _did_you_mean(snap, "driver", e.driver_id)
            )
        if e.constructor_id is None:
            out.append(f"drivers[{i}]: no team known for {quote(e.driver_id)}: team form unknown")
        elif not team_ok[r]:
            out.append(
                f"drivers[{i}]: team {quote(e.constructor_id)} has no results in the data "
                "before this event: team form unknown"
                + _did_you_mean(snap, "constructor", e.constructor_id)
            )
    return out


def _did_you_mean(snap: FeatureSnapshot, kind: IdKind, given: str) -> str:
    """ " (did you mean "x"?)" for an id F1DB does not know but spells like ``given``."""
    near = snap.similar_ids(kind, given)
    return f" (did you mean {' or '.join(quote(c) for c in near)}?)" if near else ""
