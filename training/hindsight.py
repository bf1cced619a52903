"""The test season asked of models fitted on every other event: a bound, not a forecast."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pipelines.f1db.parse import Tables
from pipelines.features.event import EventContext
from pipelines.serving.orchestrator import TwoStage
from training.evaluate import EventHook, Served, served_predictions
from training.metrics import forecast_metrics, win_metrics
from training.pipeline import Protocol, RunData, Step, check_seasons, fit_stage1, fit_stage2, tune


def hindsight(
    tables: Tables,
    protocol: Protocol | None = None,
    step: Step | None = None,
    on_event: EventHook | None = None,
) -> dict[str, Any]:
    """The test season's metrics, each event forecast by models fitted on all the others."""
    p = protocol or Protocol()
    say = step or (lambda _msg: None)
    d = RunData.build(tables, p.train_from)
    check_seasons(d.s1, d.s2, p)
    cfg1, cfg2, _log = tune(d, p, say)
    all1, all2 = (s.seasons(p.train_from, p.test_season) for s in (d.s1, d.s2))
    te1, te2 = (s.seasons(p.test_season, p.test_season) for s in (d.s1, d.s2))

    def without_it(ctx: EventContext) -> TwoStage:
        m1 = fit_stage1(all1.select(all1.meta["race_id"].to_numpy() != ctx.race_id), cfg1)
        m2 = fit_stage2(all2.select(all2.meta["race_id"].to_numpy() != ctx.race_id), cfg2)
        return TwoStage.local(d.snap, m1, m2)

    served = served_predictions(d.snap, without_it, te1, te2, cfg2.finish_rate, on_event)
    say("every event asked of models fitted without it")
    every = TwoStage.local(d.snap, fit_stage1(all1, cfg1), fit_stage2(all2, cfg2))
    in_sample = served_predictions(d.snap, lambda _ctx: every, te1, te2, cfg2.finish_rate)
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
    """Stage-1 before qualifying, Stage-2 after it and before it, as ``f1 evaluate`` scores them."""
    return {
        "stage1": {"test": forecast_metrics(served.stage1)},
        "stage2": {
            "test": win_metrics(served.race["stage2"]),
            "test_chained": win_metrics(served.race["stage2_chained"]),
        },
    }
