"""From a forecast to the API's answers: the requested drivers, ordered."""

from __future__ import annotations

import math
import time

from pipelines.serving.orchestrator import Forecast, unique_ranks
from pipelines.serving.resolve import Resolved
from pipelines.serving.schemas import FullResponse, Metadata, QualiPrediction, RacePrediction


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
                constructor_id=e.constructor_id,
                predicted_time=round(t, 3) if math.isfinite(t) else None,
                predicted_gap_to_pole_pct=round(float(q.gap_pct[i]), 4),
                grid_position_estimate=int(q.grid[i]),
                probability_score=float(q.pole_prob[i]),
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
            constructor_id=fc.field.entries[i].constructor_id,
            win_probability=float(race.win_prob[i]),
            predicted_rank=int(ranks[i]),
            grid_position=int(race.grid[i]),
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
            event=res.ctx.to_dict(),
            model_versions=model_versions,
            warnings=res.warnings,
            inference_ms=round((time.perf_counter() - started) * 1000.0, 3),
        ),
    )
