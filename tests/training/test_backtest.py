"""`f1 backtest`: the walk-forward protocol on a synthetic tree (fast) and real data (slow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from pipelines.f1db.parse import load_tables
from pipelines.models.stage2 import RANK_DEPTH
from pipelines.serving.orchestrator import TwoStage
from pipelines.settings import PROJECT_ROOT
from tests.fakes import SyntheticTree, write_f1db_tree
from tests.session import require_real_data
from tests.training.committed import STALE, assert_same
from training import cli, pipeline
from training.backtest import backtest, backtest_seasons, tables_through, targets
from training.cli import app
from training.metrics import stage2_metrics
from training.pipeline import per_race
from training.report import write_backtest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SEASONS = (2019, 2020, 2021, 2022, 2023)
ROUNDS = 8


@pytest.fixture
def small_grids(monkeypatch: pytest.MonkeyPatch) -> None:
    """One candidate per tuning dimension: the same code path, a handful of fits."""
    for name in ("STAGE1_GRID", "STAGE2_GRID", "POLE_GRID"):
        grid = getattr(pipeline, name)
        monkeypatch.setattr(pipeline, name, {k: list(v)[:1] for k, v in grid.items()})
    monkeypatch.setattr(pipeline, "TAU_GRID", [0.3])
    monkeypatch.setattr(pipeline, "TEMP_GRID", [1.0])


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[SyntheticTree, Any]:
    root = tmp_path_factory.mktemp("bt")
    t = write_f1db_tree(root / "f1db", seasons=SEASONS, rounds=ROUNDS)
    return t, load_tables(t.root, root / "cache", min_season=2000)


def test_default_seasons_leave_three_tuning_seasons() -> None:
    assert backtest_seasons(2014, 2014, 2012) == (2008, 2010)
    assert backtest_seasons(2017, 2014, 2012) == (2011, 2013)
    assert backtest_seasons(2022, 2014, 2012) == (2012, 2014)
    assert backtest_seasons(2025, 2014, 2012) == (2012, 2014)


def test_tables_through_drops_later_seasons(tree) -> None:
    _t, tables = tree
    cut = tables_through(tables, 2021)
    assert set(cut.races["season"]) == {2019, 2020, 2021}
    keep = set(cut.races["race_id"])
    for name in ("sessions", "practice", "qualifying", "grid", "results", "driver_standings"):
        assert set(getattr(cut, name)["race_id"]) <= keep, name
    assert set(cut.entrants["season"]) == {2019, 2020, 2021}


def test_backtest_fits_only_earlier_seasons_and_asks_every_event_three_ways(
    tree, small_grids, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, tables = tree
    fitted: list[set[int]] = []
    rounds_2022: list[int] = []
    real_fit = pipeline.fit_stage1

    def spy_fit(data, cfg, form=True):
        fitted.append(set(data.meta["season"]))
        in_test = data.meta["season"].to_numpy() == 2022
        if in_test.any():
            rounds_2022.append(int(data.meta["round"].to_numpy()[in_test].max()))
        return real_fit(data, cfg, form)

    monkeypatch.setattr(pipeline, "fit_stage1", spy_fit)
    calls: list[tuple[int | None, bool, bool]] = []
    real_full = TwoStage.full

    async def spy_full(self, ctx, fld, rows):
        laps = bool(fld.laps) or any(e.practice for e in fld.entries)
        calls.append((ctx.round, any(e.grid is not None for e in fld.entries), laps))
        return await real_full(self, ctx, fld, rows)

    monkeypatch.setattr(TwoStage, "full", spy_full)
    seen: list[int] = []
    res = backtest(tables, 2022, 2019, on_event=lambda ctx: seen.append(ctx.round))

    assert fitted and all(max(s) <= 2022 for s in fitted)  # nothing after 2022
    assert {2019, 2020} <= set().union(*fitted)
    # Stage-1 refitted before each event but the first on the season's earlier rounds
    # (``InSeason``: which rows each refit may see is tested in test_pipeline.py)
    assert sorted(rounds_2022) == list(range(1, ROUNDS))
    # every event of the season, before qualifying (no grid given), after it (real grid)
    # and a weekend ahead (no grid, not a practice lap), asked of the served Stage-1 and of
    # its main ensemble alone (whose weekend-ahead forecast is scored)
    assert seen == list(range(1, ROUNDS + 1))
    assert sorted(calls) == sorted(
        [(r, False, True) for r in seen] * 2
        + [(r, True, True) for r in seen] * 2
        + [(r, False, False) for r in seen] * 2
    )
    p = res.evaluation["protocol"]
    assert p["test_season"] == 2022 and p["valid_season"] == 2021
    assert p["train_seasons"] == [2019, 2020] and p["test_fit_seasons"] == [2019, 2021]
    assert p["events"] == ROUNDS and p["history_from"] == 2019
    # one record per race with every predictor in both modes
    assert [r["round"] for r in res.evaluation["races"]] == list(range(1, ROUNDS + 1))
    for r in res.evaluation["races"]:
        assert set(r["stage1"]) == {"model", "practice_ratio", "quick_lgbm_gap"}
        for mode in ("stage2", "stage2_chained"):
            assert set(r[mode]) == {
                "model",
                "uniform",
                "pole_sitter",
                "logistic_grid",
                "quick_lgbm",
            }
        race = spec.race(2022, r["round"])
        assert r["winner"] == next(d for d, pos, _ in race.results if pos == "1")
    # the season's winner log loss is the mean of the races'
    for mode, key in (("stage2", "test"), ("stage2_chained", "test_chained")):
        per = [r[mode]["model"]["winner_log_loss"] for r in res.evaluation["races"]]
        season = res.evaluation["stage2"][key]["winner_log_loss"]
        assert season == pytest.approx(np.mean(per))
    # a weekend ahead: both stages scored on every event, beside their baselines
    ahead1 = res.evaluation["stage1"]["before_practice"]
    ahead2 = res.evaluation["stage2"]["before_practice"]
    assert ahead1["model"]["events"] == ROUNDS == ahead2["model"]["races"]
    assert set(ahead1["baselines"]) == {"recent_form"}
    # and the same forecasts by Stage-1 without its form-only ensemble, beside them
    assert ahead1["without_form_model"]["rows"] == ahead1["model"]["rows"]
    assert ahead2["without_form_model"]["races"] == ROUNDS
    assert set(ahead2["baselines"]) == {"uniform", "pole_sitter", "logistic_grid", "quick_lgbm"}


def test_a_later_season_changes_nothing(tree, small_grids) -> None:
    """Walk-forward: the backtest of 2022 is the same with or without 2023 in the data."""
    _spec, tables = tree
    a = backtest(tables, 2022, 2019)
    b = backtest(tables_through(tables, 2022), 2022, 2019)
    a_races, b_races = a.evaluation["races"], b.evaluation["races"]
    assert json.dumps(a_races, sort_keys=True) == json.dumps(b_races, sort_keys=True)


def test_the_first_race_under_new_rules_is_scored_both_ways(
    tree, small_grids, tmp_path: Path
) -> None:
    """2022 (new rules) opens with the practice-only Stage-1; its report gives those
    cars by it and by the main ensemble; 2023 has no such race and no such line."""
    _spec, tables = tree
    res = backtest(tables, 2022, 2019)
    nr = res.evaluation["stage1"]["new_rules"]
    rows = res.predictions["stage1"]
    assert nr["rounds"] == [1] and nr["rows"] == int((rows["round"] == 1).sum()) > 0
    assert nr["served"]["gap_pct_mae"] != nr["main_ensemble"]["gap_pct_mae"]
    write_backtest(2022, res.evaluation, tmp_path)
    md = (tmp_path / "backtest-2022.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("At the first race under new"))
    assert f"gap MAE {nr['served']['gap_pct_mae']:.3f} %" in line
    later = backtest(tables, 2023, 2019).evaluation["stage1"]["new_rules"]
    assert later == {"rows": 0}


def test_backtest_of_a_season_not_in_the_data_is_an_error(tree, small_grids) -> None:
    _spec, tables = tree
    last = int(tables.races["season"].max())
    with pytest.raises(
        pipeline.TrainingError, match=f"no season 2030 in the data .its latest is {last}"
    ):
        backtest(tables, 2030, 2019)
    with pytest.raises(pipeline.TrainingError, match="too few seasons"):
        backtest(tables, 2021, 2020)  # one training season before the validation one


def test_report_files(tree, small_grids, tmp_path: Path) -> None:
    _spec, tables = tree
    res = backtest(tables, 2023, 2019)
    paths = write_backtest(2023, res.evaluation, tmp_path)
    assert sorted(p.name for p in paths) == [
        "backtest-2023.json",
        "backtest-2023.md",
        "backtest-2023.png",
    ]
    assert (tmp_path / "backtest-2023.png").read_bytes()[:8] == PNG_MAGIC
    js = json.loads((tmp_path / "backtest-2023.json").read_text())
    assert js["season"] == 2023 and len(js["races"]) == ROUNDS
    assert js["stage2"]["test_chained"]["season"] == 2023
    assert set(js["stage2"]["baselines"]["logistic_grid"]) == {"test", "test_chained"}
    md = (tmp_path / "backtest-2023.md").read_text()
    assert "f1 backtest --season 2023" in md
    assert "2019-2022" in md  # the seasons that trained it
    assert "### A weekend ahead (no practice in the data yet)" in md
    assert js["stage1"]["before_practice"]["model"]["events"] == ROUNDS
    for what, _m, _b, _ok in targets(res.evaluation):
        assert what in md
    # the season's start, where last season's form weighs most: the first races' means
    first = [r for r in res.evaluation["races"] if r["round"] <= 4]
    assert first and len(first) < len(res.evaluation["races"])
    after = np.mean([r["stage2"]["model"]["winner_log_loss"] for r in first])
    before = np.mean([r["stage2_chained"]["logistic_grid"]["winner_log_loss"] for r in first])
    line = next(x for x in md.splitlines() if x.startswith("The season's first 4 races"))
    assert f"after qualifying {after:.3f} / " in line and line.endswith(f" / {before:.3f}.")


def test_per_race_metrics_match_the_season_functions(tree, small_grids) -> None:
    _spec, tables = tree
    res = backtest(tables, 2023, 2019)
    post = res.predictions["stage2"]
    first = tables.qualifying[tables.qualifying["position"] == 1].set_index("race_id")
    for r in per_race(tables, res.predictions):
        assert r["pole_sitter"] == first.loc[r["race_id"], "driver_id"]
        rows = post[post["race_id"] == r["race_id"]]
        m = stage2_metrics(rows, rows["logistic_grid:prob"].to_numpy())
        assert r["stage2"]["logistic_grid"]["winner_log_loss"] == pytest.approx(
            m["winner_log_loss"]
        )


def test_cli_backtest_writes_the_reports(
    tree, small_grids, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clear_settings
) -> None:
    spec, _tables = tree
    monkeypatch.setenv("F1_DATA_DIR", str(spec.root))
    monkeypatch.setenv("F1_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("F1_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setattr(cli.console, "_width", 250)
    result = CliRunner().invoke(app, ["backtest", "--season", "2023", "--train-from", "2019"])
    assert result.exit_code == 0, result.output
    for ext in ("json", "md", "png"):
        assert (tmp_path / "reports" / f"backtest-2023.{ext}").stat().st_size > 0
    assert "trained on 2019-2022" in " ".join(result.output.split())
    bad = CliRunner().invoke(app, ["backtest", "--season", "2030"])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    chosen = json.loads((tmp_path / "reports" / "backtest-2023.json").read_text())
    assert chosen["tuning"]["chosen"]["stage2"]["rank_depth"] == RANK_DEPTH


def test_cli_backtest_fits_stage2_on_the_places_the_settings_ask(
    tree, small_grids, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clear_settings
) -> None:
    """``F1_STAGE2_RANK_DEPTH=1`` reproduces the winners-alone column of the comparison
    that chose three places (docs/model-quality.md) with the same command; a depth of 0
    is refused."""
    spec, _tables = tree
    monkeypatch.setenv("F1_DATA_DIR", str(spec.root))
    monkeypatch.setenv("F1_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("F1_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("F1_STAGE2_RANK_DEPTH", "1")
    result = CliRunner().invoke(app, ["backtest", "--season", "2023", "--train-from", "2019"])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "reports" / "backtest-2023.json").read_text())
    assert doc["tuning"]["chosen"]["stage2"]["rank_depth"] == 1

    from pipelines.settings import Settings

    monkeypatch.setenv("F1_STAGE2_RANK_DEPTH", "0")
    with pytest.raises(ValueError, match="stage2_rank_depth"):
        Settings()


@pytest.mark.slow
def test_real_backtest_of_one_season(real_tables, small_grids, tmp_path: Path) -> None:
    """2024 on real data (2019-2025 parsed; reduced tuning grid): trained on 2021-2023 only,
    every 2024 event scored in both modes, the reports written."""
    res = backtest(real_tables, 2024, 2021)
    ev = res.evaluation
    p = ev["protocol"]
    assert p["test_fit_seasons"] == [2021, 2023] and p["valid_season"] == 2023
    n = int((real_tables.races["season"] == 2024).sum())
    races = ev["races"]
    assert len(races) == n == ev["stage2"]["test"]["races"] == ev["stage1"]["test"]["events"]
    assert set(res.predictions["stage1"]["season"]) == {2024}
    # better than chance in both modes; the per-race numbers are the season's
    uniform = ev["stage2"]["baselines"]["uniform"]["test"]["winner_log_loss"]
    for key in ("test", "test_chained"):
        assert ev["stage2"][key]["winner_log_loss"] < uniform
    # the pole-sitter is qualifying's first place: at Bahrain, Leclerc's Q2 lap (1:29.165)
    # was the session's fastest, Verstappen's Q3 lap (1:29.179) took pole
    bahrain = races[0]
    assert bahrain["grand_prix_id"] == "bahrain" and bahrain["pole_sitter"] == "max-verstappen"
    per = [r["stage1"]["model"]["gap_pct_mae"] for r in races]
    size = res.predictions["stage1"].groupby("race_id").size()
    rows = [size[r["race_id"]] for r in races]
    assert ev["stage1"]["test"]["gap_pct_mae"] == pytest.approx(np.average(per, weights=rows))
    paths = write_backtest(2024, ev, tmp_path)
    assert all(path.stat().st_size > 0 for path in paths)
    md = (tmp_path / "backtest-2024.md").read_text()
    assert "2021-2023" in md and md.count("\n| ") >= n


@pytest.mark.slow
def test_the_committed_backtest_report_is_what_the_code_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clear_settings
) -> None:
    """The reports the docs quote are this code's output: `f1 backtest --season 2009`
    on the real data (new rules, Stage-2's lean and Stage-1's first race; ~15 s) writes
    the committed reports/backtest-2009.md byte for byte, and its JSON but the timing.
    A change to the models or features fails here until `make reports` rewrites the
    reports (and the docs' figures follow them: tests/test_readme_figures.py)."""
    monkeypatch.setenv("F1_DATA_DIR", str(require_real_data()))
    monkeypatch.setenv("F1_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("F1_REPORTS_DIR", str(tmp_path / "reports"))
    result = CliRunner().invoke(app, ["backtest", "--season", "2009"])
    assert result.exit_code == 0, result.output
    written = tmp_path / "reports"
    committed = PROJECT_ROOT / "reports"
    assert_same(
        json.loads((committed / "backtest-2009.json").read_text()),
        json.loads((written / "backtest-2009.json").read_text()),
    )
    md = (written / "backtest-2009.md").read_text()
    assert md == (committed / "backtest-2009.md").read_text(), STALE
