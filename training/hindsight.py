"""What hindsight reaches on the test season: a bound, not a forecast.

Every event of the test season is asked through the served flow of models fitted on
every *other* event through the end of the test season, the later ones included. Such
models know the season's car order from its future, which no forecast can. Where even
they miss a target, the target asks for what these features cannot know (the weather,
a season's luck).

It also asks each event of models fitted on every event, that one included, as the
served models are (``served_in_sample``): what the service answers about a past event.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pipelines.f1db.parse import Tables
from pipelines.features.event import EventContext
from pipelines.models.stage1 import Stage1Model
from pipelines.models.stage2 import Stage2Model
from training.datasets import StageData
from training.evaluate import EventHook, Served, served_predictions
from training.metrics import forecast_metrics, win_metrics
from training.pipeline import (
    Protocol,
    RunData,
    Step,
    check_seasons,
    fit_stage1,
    fit_stage2,
    tune,
)


def without_event(data: StageData, race_id: int | None) -> StageData:
    """Every row of ``data`` but those of the event ``race_id``."""
    return data.select(data.meta["race_id"].to_numpy() != race_id)


def hindsight(
    tables: Tables,
    protocol: Protocol | None = None,
    step: Step | None = None,
    on_event: EventHook | None = None,
) -> dict[str, Any]:
    """The test season's metrics with each event forecast by models fitted on all other
    events of ``[train_from, test season]``, scored as ``f1 evaluate`` scores them."""
    p = protocol or Protocol()
    say = step or (lambda _msg: None)
    d = RunData.build(tables, p.train_from)
    snap, s1, s2 = d.snap, d.s1, d.s2
    check_seasons(s1, s2, p)
    cfg1, cfg2, _log = tune(d, p, say)
    all1, all2 = s1.seasons(p.train_from, p.test_season), s2.seasons(p.train_from, p.test_season)
    te1, te2 = s1.seasons(p.test_season, p.test_season), s2.seasons(p.test_season, p.test_season)

    fitted1: dict[int | None, Stage1Model] = {}
    fitted2: dict[int | None, Stage2Model] = {}

    def stage1_for(ctx: EventContext) -> Stage1Model:
        if ctx.race_id not in fitted1:
            fitted1[ctx.race_id] = fit_stage1(without_event(all1, ctx.race_id), cfg1)
        return fitted1[ctx.race_id]

    def stage2_for(ctx: EventContext) -> Stage2Model:
        if ctx.race_id not in fitted2:
            fitted2[ctx.race_id] = fit_stage2(without_event(all2, ctx.race_id), cfg2)
        return fitted2[ctx.race_id]

    first = snap.event_by_id(int(te2.meta["race_id"].min()))
    assert first is not None
    served = served_predictions(
        snap, stage1_for(first), stage2_for(first), te1, te2, on_event, stage1_for, stage2_for
    )
    say("every event asked of models fitted without it")
    every1, every2 = fit_stage1(all1, cfg1), fit_stage2(all2, cfg2)
    in_sample = served_predictions(snap, every1, every2, te1, te2)
    say("every event asked of models fitted on all of them, as served")
    return {
        "season": p.test_season,
        "fitted_on": [p.train_from, p.test_season],
        "what": "each event forecast by models fitted on every other event of these "
        "seasons, the later ones included: a bound on what these features and learners "
        "could know of the season, not a forecast",
        **_scores(served),
        "served_in_sample": {
            "what": "each event asked of models fitted on every event of these seasons, "
            "that one included, as the served models are: what the service answers about "
            "a past event of its training data, which knows how the event went",
            **_scores(in_sample),
        },
        "settings": {"stage1": asdict(cfg1), "stage2": asdict(cfg2)},
    }


def _scores(served: Served) -> dict[str, Any]:
    """Stage-1 before qualifying, Stage-2 after it and before it, as ``f1 evaluate``
    scores them (``stage1.test``, ``stage2.test``, ``stage2.test_chained``)."""
    return {
        "stage1": {"test": forecast_metrics(served.stage1)},
        "stage2": {
            "test": win_metrics(served.stage2),
            "test_chained": win_metrics(served.stage2_chained),
        },
    }
