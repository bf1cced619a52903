"""The pole-lap estimate: seconds for the gap-to-pole predictions to scale."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pipelines.features.event import EventContext, PoleHistory, day_number

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.features.snapshot import FeatureSnapshot


@dataclass
class PoleParams:
    """How the pole lap is estimated from the latest pre-qualifying session."""

    window: int = 40
    shrink: float = 3.0


def estimate_pole(
    history: pd.DataFrame | PoleHistory,
    session: str | None,
    ref_lap: float,
    layout_id: str | None,
    params: PoleParams,
    course_length: float = math.nan,
    season_start: int | None = None,
) -> float:
    """Pole lap (s) = best pre-qualifying lap x the median pole/reference ratio of the last
    ``window`` events with its kind of session, nudged toward this layout's (``shrink``
    pseudo-visits). Without practice: ``last_visit_pole`` x ``season_pace``, else by km."""
    h = history if isinstance(history, PoleHistory) else PoleHistory.from_frame(history)
    n = len(h.ratio)
    if session is not None and not math.isnan(ref_lap) and n:
        same = h.ratio[h.session == session][-params.window :]
        if not len(same):
            same = h.ratio[-params.window :]
        base = float(np.median(same))
        adj = 1.0
        if layout_id is not None:
            here = h.layout == layout_id
            if here.any():
                # each past visit's ratio relative to the typical ratio of its session kind
                typical = np.empty(n)
                for kind in np.unique(h.session):
                    m = h.session == kind
                    typical[m] = np.median(h.ratio[m])
                rel = h.ratio[here] / typical[here]
                k = len(rel)
                adj = 1.0 + (float(np.median(rel)) - 1.0) * k / (k + params.shrink)
        return ref_lap * base * adj
    if layout_id is not None and n:
        last = last_visit_pole(h, layout_id, params.window)
        if not math.isnan(last):
            return last * season_pace(h, season_start, params.window)
    if not math.isnan(course_length):
        return course_length * pace_per_km(h, params.window)
    return math.nan


DEFAULT_PACE = 17.5
"""Seconds per km of a pole lap when no past pole says (an empty history)."""


def pace_per_km(h: PoleHistory, window: int) -> float:
    """The median pole pace (s/km) of the ``window`` latest events with a known length."""
    known = h.course_length > 0  # NaN: unknown
    pace = (h.pole_s[known] / h.course_length[known])[-window:]
    return float(np.median(pace)) if len(pace) else DEFAULT_PACE


PACE_SHRINK = 3.0
"""Pseudo-events pulling ``season_pace`` toward 1: one event's pace is mostly its own luck."""


def last_visit_pole(h: PoleHistory, layout_id: str, window: int) -> float:
    """The pole lap of the layout's latest visit in ``h`` (NaN if none), or what its
    practice implied at the typical ratio when that qualifying was slower (in the wet)."""
    here = np.flatnonzero(h.layout == layout_id)
    if not len(here):
        return math.nan
    i = int(here[-1])
    same = h.ratio[h.session == h.session[i]][-window:]
    typical = float(np.median(same))
    return float(h.pole_s[i] * min(1.0, typical / h.ratio[i]))


def season_pace(h: PoleHistory, season_start: int | None, window: int) -> float:
    """How much faster (< 1) or slower the season's poles so far were than
    ``last_visit_pole`` said before each, shrunk toward 1 by ``PACE_SHRINK``."""
    if season_start is None:
        return 1.0
    first = int(np.searchsorted(h.day, season_start, side="left"))
    ratios = []
    for j in range(first, len(h.day)):
        before = h.head(j)
        est = last_visit_pole(before, str(h.layout[j]), window)
        if not math.isnan(est):
            ratios.append(h.pole_s[j] / est)
    if not ratios:
        return 1.0
    k = len(ratios)
    return 1.0 + (float(np.median(ratios)) - 1.0) * k / (k + PACE_SHRINK)


def pole_estimate(
    snapshot: FeatureSnapshot,
    ctx: EventContext,
    laps: dict[str, dict[str, float]],
    params: PoleParams,
) -> float:
    """The pole-lap estimate for an event from its field's practice laps (memoised)."""
    session, ref = snapshot.pole_reference(laps)
    day, start = day_number(ctx.date), season_start(ctx.season)
    key = (day, session, ref, ctx.layout_id, params.window, params.shrink, ctx.course_length, start)

    def estimate() -> float:
        arrays = snapshot.pole_arrays(day)
        return estimate_pole(arrays, session, ref, ctx.layout_id, params, ctx.course_length, start)

    return float(snapshot.cached("pole", key, estimate))


def season_start(season: int) -> int:
    """The day number of a season's 1 January (``season_pace`` reads its events from it)."""
    return day_number(f"{season}-01-01")
