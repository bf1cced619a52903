"""Scoring a recorded forecast against the result, on tiny hand-made rows."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pandas as pd
import pytest

from pipelines.ledger.track import score, summarise

AT = datetime(2030, 4, 1, tzinfo=UTC)


def _rec(win: dict[str, float], gap: dict[str, float]) -> dict:
    field = [{"driver_id": d, "win": p, "gap_pct": gap[d]} for d, p in win.items()]
    return {"season": 2030, "round": 3, "kind": "weekend_ahead", "last_at": AT,
            "models": {"stage1": "s1:a"}, "data_hash": "h", "field": field}  # fmt: skip


def _outcomes(q_time: dict[str, float], won: str, pole: str) -> pd.DataFrame:
    rows = []
    for d, t in q_time.items():
        rows.append({"driver_id": d, "q_time_s": t, "q_pos": 1.0 if d == pole else 2.0,
                     "r_pos": 1.0 if d == won else 2.0})  # fmt: skip
    return pd.DataFrame(rows)


def test_the_winner_is_scored_with_the_probability_the_forecast_gave_it() -> None:
    rec = _rec({"a": 0.6, "b": 0.3, "c": 0.1}, {"a": 0.0, "b": 0.5, "c": 1.0})
    e = score(rec, _outcomes({"a": 90.0, "b": 90.45, "c": 90.9}, won="b", pole="a"), "X GP")
    assert (e.winner, e.winner_probability, e.favourite, e.top1) == ("b", 0.3, "a", False)
    assert e.winner_log_loss == pytest.approx(-math.log(0.3))
    assert e.gap_pct_mae == pytest.approx(0.0, abs=1e-9)  # the gaps were exact
    assert e.spearman == pytest.approx(1.0)
    assert e.pole_sitter == "a" and e.field_size == 3


def test_a_winner_the_forecast_did_not_name_scores_zero_and_no_log_loss() -> None:
    rec = _rec({"a": 0.7, "b": 0.3}, {"a": 0.0, "b": 0.5})
    e = score(rec, _outcomes({"a": 90.0, "b": 90.5, "z": 91.0}, won="z", pole="a"), "X")
    assert (e.winner_probability, e.winner_log_loss, e.top1) == (0.0, None, False)


def test_the_summary_sits_beside_uniform_odds_and_the_pole_sitter() -> None:
    a = score(_rec({"a": 0.5, "b": 0.5}, {"a": 0.0, "b": 0.1}),
              _outcomes({"a": 90.0, "b": 90.1}, won="a", pole="a"), "X")  # fmt: skip
    b = score(_rec({"a": 0.8, "b": 0.1, "c": 0.1}, {"a": 0.0, "b": 0.1, "c": 0.2}),
              _outcomes({"a": 90.0, "b": 90.1, "c": 90.2}, won="c", pole="b"), "Y")  # fmt: skip
    s = summarise([a, b])
    assert (a.favourite, a.top1) == ("a", True)  # a tie goes to the first id, as ranked
    assert s.events == 2 and s.top1 == pytest.approx(0.5)
    assert s.winner_log_loss == pytest.approx((-math.log(0.5) - math.log(0.1)) / 2)
    assert s.uniform_log_loss == pytest.approx((math.log(2) + math.log(3)) / 2)
    assert s.uniform_top1 == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert s.pole_sitter_top1 == pytest.approx(0.5)  # a won from pole; c did not
