"""Tiny hand-made forecasts for the ledger's unit tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.features.event import Entry, EventContext, EventField
from pipelines.serving.orchestrator import Forecast, quali_outputs, race_outputs

IDS = ["alice", "bob", "carol", "dave"]


def forecast(
    round_: int = 3, gaps: tuple[float, ...] = (0.0, 0.3, 0.5, 1.2), race: bool = True
) -> Forecast:
    """A four-car field at 2030 round ``round_`` (race id 900 + round)."""
    ctx = EventContext(
        season=2030,
        date=pd.Timestamp("2030-04-01") + pd.Timedelta(days=7 * round_),
        round=round_,
        race_id=900 + round_,
        circuit_id="bahrain",
    )
    entries = [Entry(driver_id=d, constructor_id="team") for d in IDS]
    fld = EventField(entries=entries, as_in_data=True)
    q = quali_outputs(np.array(gaps), 90.0, 0.3, IDS)
    fc = Forecast(ctx, fld, np.arange(len(IDS)), q)
    if race:
        logit = -np.array(gaps) * 2.0
        fc.race = race_outputs(q.grid.astype(float), q.gap_pct, logit, IDS, 0.9)
    return fc
