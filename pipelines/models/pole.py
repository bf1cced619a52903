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
) -> float:
    """Pole lap (s) = best lap of the latest pre-qualifying session x typical ratio.

    The ratio is the median pole/reference ratio of the last ``window`` events whose
    reference was the same kind of session, nudged toward this layout's own past
    ratios (shrunk by ``shrink`` pseudo-visits). Without practice: the layout's last
    pole, else the course length at the typical pace.
    """
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
        here = h.layout == layout_id
        if here.any():
            return float(h.pole_s[here][-1])
    if not math.isnan(course_length):
        return course_length * 17.5
    return math.nan


def pole_estimate(
    snapshot: FeatureSnapshot,
    ctx: EventContext,
    laps: dict[str, dict[str, float]],
    params: PoleParams,
) -> float:
    """The pole-lap estimate for an event from its field's practice laps; memoised per
    snapshot, since these inputs fully determine it."""
    session, ref = snapshot.pole_reference(laps)
    day = day_number(ctx.date)
    key = (day, session, ref, ctx.layout_id, params.window, params.shrink, ctx.course_length)
    return float(
        snapshot.cached(
            "pole",
            key,
            lambda: estimate_pole(
                snapshot.pole_arrays(day), session, ref, ctx.layout_id, params, ctx.course_length
            ),
        )
    )
