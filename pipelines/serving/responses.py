"""From a forecast to the API's answers: the requested drivers, ordered."""

from __future__ import annotations

import math
import time
from typing import Literal

import numpy as np

from pipelines.features.spec import STAGE1, STAGE2, FeatureSpec, label
from pipelines.serving.orchestrator import Forecast, unique_ranks
from pipelines.serving.resolve import Resolved
from pipelines.serving.schemas import (
    Contribution,
    Explanation,
    FullResponse,
    Metadata,
    QualiPrediction,
    RacePrediction,
)

TOP_CONTRIBUTIONS = 5  # listed one by one; the rest are summed into one "other" entry


def explanation(
    contrib: np.ndarray, spec: FeatureSpec, unit: Literal["gap %", "log-odds"]
) -> Explanation:
    """One driver's contributions row (features..., base): the largest by size (ties: in
    feature order), then "other", the sum of the rest (base + sum is the model's output)."""
    values = np.asarray(contrib[:-1], dtype=float)
    order = sorted(range(len(values)), key=lambda j: (-abs(values[j]), j))
    top, rest = order[:TOP_CONTRIBUTIONS], order[TOP_CONTRIBUTIONS:]
    items = [
        Contribution(feature=spec.names[j], label=label(spec.names[j]), value=float(values[j]))
        for j in top
    ]
    other = f"the other {len(rest)} features" if rest else "no other feature"
    items.append(Contribution(feature="other", label=other, value=float(values[rest].sum())))
    return Explanation(unit=unit, base=float(contrib[-1]), contributions=items)


def _name(names: list[str | None], i: int) -> str | None:
    return names[i] if i < len(names) else None


def quali_predictions(fc: Forecast) -> list[QualiPrediction]:
    """The requested drivers by predicted grid slot (slots and probabilities are the
    field's: a driver's answer does not depend on who else was asked)."""
    q = fc.quali
    out = []
    for i in fc.rows:
        e = fc.field.entries[i]
        t = float(q.time_s[i])
        out.append(
            QualiPrediction(
                driver_id=e.driver_id,
                driver_name=_name(fc.driver_names, i),
                constructor_id=e.constructor_id,
                constructor_name=_name(fc.constructor_names, i),
                predicted_time=round(t, 3) if math.isfinite(t) else None,
                predicted_gap_to_pole_pct=round(float(q.gap_pct[i]), 4),
                grid_position_estimate=int(q.grid[i]),
                probability_score=float(q.pole_prob[i]),
                explanation=None
                if q.contrib is None
                else explanation(q.contrib[i], STAGE1, "gap %"),
            )
        )
    return sorted(out, key=lambda p: p.grid_position_estimate)


def race_predictions(fc: Forecast) -> list[RacePrediction]:
    """The requested drivers by win probability over the field."""
    race = fc.race
    assert race is not None, "race_predictions needs a forecast with the race stage"
    ids = [e.driver_id for e in fc.field.entries]
    ranks = unique_ranks(-race.win_prob, ids)
    out = [
        RacePrediction(
            driver_id=fc.field.entries[i].driver_id,
            driver_name=_name(fc.driver_names, i),
            constructor_id=fc.field.entries[i].constructor_id,
            constructor_name=_name(fc.constructor_names, i),
            win_probability=float(race.win_prob[i]),
            podium_probability=float(race.podium_prob[i]),
            points_probability=float(race.points_prob[i]),
            predicted_rank=int(ranks[i]),
            grid_position=int(race.grid[i]),
            explanation=None
            if race.contrib is None
            else explanation(race.contrib[i], STAGE2, "log-odds"),
        )
        for i in fc.rows
    ]
    return sorted(out, key=lambda p: p.predicted_rank)


def full_response(
    res: Resolved, fc: Forecast, model_versions: dict[str, str], started: float
) -> FullResponse:
    """The /predict_full answer (``started`` is the request's ``time.perf_counter()``)."""
    return FullResponse(
        qualifying_predictions=quali_predictions(fc),
        race_winner_predictions=race_predictions(fc),
        metadata=Metadata(
            event=res.event.to_dict(),
            model_versions=model_versions,
            warnings=res.warnings,
            fitted_on_event=res.fitted_on_event,
            inference_ms=round((time.perf_counter() - started) * 1000.0, 3),
        ),
    )
