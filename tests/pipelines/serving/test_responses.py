"""From a forecast to the answers: explanations (top 5 + "other") and the new fields."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.features.spec import STAGE2, FeatureSpec, label
from pipelines.serving.orchestrator import TwoStage, run
from pipelines.serving.responses import TOP_CONTRIBUTIONS, explanation, race_predictions


def test_explanation_lists_the_five_largest_then_other() -> None:
    n = len(STAGE2)
    values = np.linspace(-0.7, 0.5, n)  # largest by size: the negative end
    values[3] = 2.0
    row = np.append(values, -1.25)
    ex = explanation(row, STAGE2, "log-odds")
    assert ex.unit == "log-odds" and ex.base == -1.25
    assert len(ex.contributions) == TOP_CONTRIBUTIONS + 1 == 6
    top = ex.contributions[:5]
    assert top[0].feature == STAGE2.names[3]
    sizes = [abs(c.value) for c in top]
    assert sizes == sorted(sizes, reverse=True)
    rest = set(range(n)) - {STAGE2.names.index(c.feature) for c in top}
    assert min(sizes) >= max(abs(values[j]) for j in rest)
    other = ex.contributions[-1]
    assert other.feature == "other" and other.label == f"the other {n - 5} features"
    assert other.value == pytest.approx(sum(values[j] for j in rest), abs=1e-12)
    assert ex.base + sum(c.value for c in ex.contributions) == pytest.approx(row.sum(), abs=1e-12)
    for c in top:
        assert c.label == label(c.feature) and c.value == values[STAGE2.names.index(c.feature)]


def test_explanation_ties_keep_feature_order_and_small_specs_work() -> None:
    spec = FeatureSpec("t", ("a", "b", "c"))
    ex = explanation(np.array([0.5, -0.5, 0.5, 2.0]), spec, "gap %")
    assert [c.feature for c in ex.contributions] == ["a", "b", "c", "other"]
    assert ex.contributions[-1].value == 0.0 and ex.contributions[-1].label == "no other feature"
    assert ex.base == 2.0


def test_explanations_and_placings_in_the_answers(tiny_models) -> None:
    snap, s1, s2 = tiny_models
    flow = TwoStage.local(snap, s1, s2)
    ctx = snap.event_by_round(2024, 2)
    fld = snap.event_field(ctx)
    fc = run(flow.full(ctx, fld, np.array([1, 0]), explain=True))
    preds = race_predictions(fc)
    assert len(preds) == 2
    for p in preds:
        assert p.explanation is not None and p.explanation.unit == "log-odds"
        assert p.driver_name and p.constructor_name
        assert p.win_probability <= p.podium_probability <= p.points_probability <= 1.0
        body = json.loads(p.model_dump_json())
        assert set(body["explanation"]) == {"unit", "base", "contributions"}
        assert set(body["explanation"]["contributions"][0]) == {"feature", "label", "value"}
    plain = race_predictions(run(flow.full(ctx, fld, np.array([1, 0]))))
    assert all(p.explanation is None for p in plain)
    assert [p.model_dump(exclude={"explanation"}) for p in plain] == [
        p.model_dump(exclude={"explanation"}) for p in preds
    ]
