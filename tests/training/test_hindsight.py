"""`f1 hindsight`: the test season forecast by models that know the rest of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.training.test_backtest import ROUNDS, small_grids, tree  # noqa: F401  (fixtures)
from training import hindsight as hs
from training.cli import app
from training.pipeline import Protocol

PROTOCOL = Protocol(train_from=2019, valid_season=2022, test_season=2023)


def test_each_event_is_forecast_by_models_fitted_on_every_other_one(
    tree,  # noqa: F811
    small_grids,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One Stage-1 and one Stage-2 per test-season event: every event of 2019-2023 but
    that one (the later ones included: hindsight), scored as `f1 evaluate` scores; and one
    fitted on every event, as served (``served_in_sample``)."""
    _spec, tables = tree
    left_out: list[set[tuple[int, int]]] = []
    real_fit = hs.fit_stage1

    def spy_fit(data, cfg, form=True):
        events = set(zip(data.meta["season"], data.meta["round"], strict=True))
        left_out.append({(s, r) for s in range(2019, 2024) for r in range(1, ROUNDS + 1)} - events)
        return real_fit(data, cfg, form)

    monkeypatch.setattr(hs, "fit_stage1", spy_fit)
    found = hs.hindsight(tables, PROTOCOL)
    assert sorted(map(sorted, left_out)) == [[]] + [[(2023, r)] for r in range(1, ROUNDS + 1)]
    assert found["season"] == 2023 and found["fitted_on"] == [2019, 2023]
    for block in (found, found["served_in_sample"]):
        assert block["stage1"]["test"]["events"] == ROUNDS
        for mode in ("test", "test_chained"):
            m = block["stage2"][mode]
            assert m["races"] == ROUNDS and 0.0 <= m["top1"] <= 1.0 and m["winner_log_loss"] > 0
    # models that saw the event answer it otherwise than models that did not
    seen, unseen = found["served_in_sample"]["stage1"]["test"], found["stage1"]["test"]
    assert seen["gap_pct_mae"] != unseen["gap_pct_mae"]


def test_cli_hindsight_writes_the_report(
    tree,  # noqa: F811
    small_grids,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    clear_settings,
) -> None:
    spec, _tables = tree
    for k, v in {
        "F1_DATA_DIR": str(spec.root),
        "F1_CACHE_DIR": str(tmp_path / "cache"),
        "F1_REPORTS_DIR": str(tmp_path / "reports"),
        "F1_HISTORY_FROM": "2019",
        "F1_TRAIN_FROM": "2019",
        "F1_VALID_SEASON": "2022",
        "F1_TEST_SEASON": "2023",
    }.items():
        monkeypatch.setenv(k, v)
    result = CliRunner().invoke(app, ["hindsight"])
    assert result.exit_code == 0, result.output
    js = json.loads((tmp_path / "reports" / "hindsight.json").read_text())
    assert js["season"] == 2023 and "later ones included" in js["what"]
    out = "".join(result.output.split())  # rich wraps at its own width
    assert "gap-to-poleMAE%" in out and "reports/hindsight.json" in out
    assert "that one included" in js["served_in_sample"]["what"]
    assert "fittedonittoo,asserved" in out
