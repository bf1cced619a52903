"""The committed 2025 evaluation report is what the code writes now, on the real data.

(The 2009 backtest's report is checked in test_backtest.py.)
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest

from pipelines.f1db.parse import load_tables
from pipelines.settings import PROJECT_ROOT, get_settings
from tests.training.committed import STALE, assert_same, differences, without_timings
from training.pipeline import Protocol
from training.report import _json_safe, markdown

REPORTS = PROJECT_ROOT / "reports"


def test_differences_name_each_changed_leaf() -> None:
    """The comparison itself: a moved figure, a new key and a shorter list each show up;
    timings do not."""
    a = {"stage2": {"podium": {"log_loss": 0.274}}, "races": [1, 2], "seconds": 28.1}
    assert differences(a, a) == []
    b = {"stage2": {"podium": {"log_loss": 0.285}, "new": 1}, "races": [1], "seconds": 3.0}
    assert differences(without_timings(a), without_timings(b)) == [
        ".stage2.podium.log_loss: committed 0.274, now 0.285",
        ".stage2.new: committed '<absent>', now 1",
        ".races: committed [1, 2], now [1]",
    ]
    with pytest.raises(AssertionError, match=r"make reports.*\n\.stage2\.podium\.log_loss"):
        assert_same(a, b)
    assert_same(a, {**a, "seconds": 3.0})


@pytest.mark.slow
def test_the_committed_evaluation_report_is_what_the_code_writes(
    served_models: dict[str, Any], clear_settings: None
) -> None:
    """reports/evaluation.json (but its timing) and evaluation.md are what `f1 evaluate`
    writes now. The session's served models are trained as it trains (the default
    protocol and first season), so their evaluation is its report: no second training."""
    s = get_settings()
    assert Protocol.of(s) == Protocol()
    assert inspect.signature(load_tables).parameters["min_season"].default == s.history_from
    ev = served_models["evaluation"]
    committed = json.loads((REPORTS / "evaluation.json").read_text())
    assert_same(committed, json.loads(json.dumps(_json_safe(ev))))
    assert markdown(ev) == (REPORTS / "evaluation.md").read_text(), STALE
