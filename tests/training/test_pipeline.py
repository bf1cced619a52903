"""The training protocol: refusal on too little data, and one real (reduced) run."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.features.spec import STAGE1, STAGE2
from pipelines.models import store
from pipelines.models.placings import classified_top_k
from pipelines.models.stage2 import group_softmax
from pipelines.settings import PROJECT_ROOT
from tests.fakes import slice_tables
from tests.session import store_models
from training import pipeline, report
from training.datasets import StageData
from training.metrics import placing_metrics, stage2_metrics
from training.pipeline import Protocol, TrainingError, check_seasons, finish_rate, run
from training.report import PODIUM_KEYS, POINTS_KEYS, S1_KEYS, S2_KEYS, fmt, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PROTOCOL = Protocol(train_from=2021, valid_season=2024, test_season=2025)


def _data(seasons: list[int]) -> StageData:
    meta = pd.DataFrame({"season": seasons, "race_id": range(len(seasons))})
    return StageData(np.zeros((len(seasons), 3)), np.zeros(len(seasons)), meta)


def test_finish_rate_is_the_share_of_classified_starters() -> None:
    meta = pd.DataFrame({"position": [1.0, 2.0, np.nan, 3.0, np.nan, 4.0, 5.0, 6.0]})
    assert finish_rate(meta) == pytest.approx(6 / 8)
    # positions not recorded at all (or no starter): nothing measured, all classified
    assert finish_rate(pd.DataFrame({"position": [np.nan, np.nan]})) == 1.0
    assert finish_rate(pd.DataFrame({"position": []}, dtype=float)) == 1.0


def test_check_seasons_accepts_the_minimum() -> None:
    ok = _data([2021, 2022, 2024, 2025])
    check_seasons(ok, ok, PROTOCOL)


@pytest.mark.parametrize(
    ("s1", "s2", "missing"),
    [
        ([2023, 2024, 2025], [2023, 2024, 2025], None),  # one training season
        ([2021, 2022, 2024], [2021, 2022, 2024], "[2025]"),  # no test season
        ([2021, 2022, 2024, 2025], [2021, 2022, 2025], "[2024]"),  # no stage-2 validation
        ([], [], "[2024, 2025]"),
    ],
)
def test_check_seasons_refuses_too_little(s1, s2, missing) -> None:
    with pytest.raises(TrainingError, match="too few seasons") as exc:
        check_seasons(_data(s1), _data(s2), PROTOCOL)
    if missing:
        assert f"missing {missing}" in str(exc.value)


def test_run_on_a_too_small_slice_raises_and_stores_nothing(real_tables) -> None:
    small = slice_tables(real_tables, 2023)  # only 2023 before the validation season
    n_models = len(store_models())
    with pytest.raises(TrainingError, match="too few seasons") as exc:
        run(small, PROTOCOL)
    assert "[2023]" in str(exc.value)
    assert len(store_models()) == n_models


# ----------------------------------------------------------------- slow: real


@pytest.mark.slow
def test_evaluation_has_every_metric(trained) -> None:
    ev = trained.evaluation
    for stage, keys in (("stage1", S1_KEYS), ("stage2", S2_KEYS)):
        test = ev[stage]["test"]
        assert set(keys) <= set(test), stage
        assert test["season"] == 2025
        for name, base in ev[stage]["baselines"].items():
            assert set(keys) <= set(base["test"]), (stage, name)
            assert base["test"]["season"] == 2025
    assert set(ev["stage1"]["baselines"]) == {"practice_ratio", "quick_lgbm_gap"}
    assert set(ev["stage2"]["baselines"]) == {
        "uniform",
        "pole_sitter",
        "logistic_grid",
        "quick_lgbm",
    }
    podium = ev["stage2"]["podium"]
    for m in (podium["test"], podium["test_chained"], podium["baselines"]["grid_slot"]["test"]):
        assert set(PODIUM_KEYS) <= set(m) and m["season"] == 2025
        assert 0 < m["brier"] < 0.25 and 0 < m["log_loss"] < 1.0
    assert set(podium["baselines"]) == {"grid_slot", "every_car_classified"}
    # the same strengths with every car classified: the same cars most likely (both
    # orders follow the strengths), other odds
    for what, hits in (("podium", "top3_hits"), ("points", "top10_hits")):
        block = ev["stage2"][what]
        for flow in ("test", "test_chained"):
            every = block["baselines"]["every_car_classified"][flow]
            assert every[hits] == block[flow][hits]
            assert every["log_loss"] != block[flow]["log_loss"]
    # intervals: of the reported values, paired with every finite baseline
    iv1 = ev["stage1"]["intervals"]["metrics"]
    for k in ("gap_pct_mae", "spearman"):
        assert iv1[k]["model"] == pytest.approx(ev["stage1"]["test"][k])
        lo, hi = iv1[k]["interval"]
        assert lo <= iv1[k]["model"] <= hi and lo < hi
        assert set(iv1[k]["vs"]) == {"practice_ratio", "quick_lgbm_gap"}
    for flow in ("test", "test_chained"):
        iv2 = ev["stage2"]["intervals"][flow]["metrics"]
        for k in ("winner_log_loss", "top1"):
            assert iv2[k]["model"] == pytest.approx(ev["stage2"][flow][k])
        assert set(iv2["winner_log_loss"]["vs"]) == {"uniform", "logistic_grid", "quick_lgbm"}
        assert 0.0 <= iv2["top1"]["vs"]["pole_sitter"]["better_share"] <= 1.0
    # a team without history: Stage-1 as fitted before the season (as served at its first
    # event; later ones are refitted, ``InSeason``), on the same rows, team form blanked
    nt = ev["stage1"]["new_team"]
    assert ev["stage1"]["test_rows_not_served"] == 0
    assert nt["as_they_are"]["gap_pct_mae"] != ev["stage1"]["test"]["gap_pct_mae"]
    assert nt["as_they_are"]["gap_pct_mae"] == pytest.approx(
        ev["stage1"]["test"]["gap_pct_mae"], abs=0.05
    )
    assert nt["without_team_form"]["gap_pct_mae"] != nt["as_they_are"]["gap_pct_mae"]
    plain = nt["fitted_without_blanked_teams"]  # the counterfactual: another fit
    assert plain["as_they_are"]["gap_pct_mae"] != nt["as_they_are"]["gap_pct_mae"]
    assert "fitted_without_blanked_teams" not in plain
    # the served pole odds: every event's pole-sitter set a lap; better than even odds
    pole = ev["stage1"]["pole"]
    assert pole["temperature"] == ev["tuning"]["chosen"]["stage1"]["pole_tau"]
    assert pole["temperature"] in pipeline.TAU_GRID
    assert pole["temperature_ahead"] == ev["tuning"]["chosen"]["stage1"]["pole_tau_ahead"]
    assert pole["temperature_ahead"] in pipeline.TAU_GRID
    for block, names in (
        (pole, {"uniform", "practice_ratio", "quick_lgbm_gap"}),
        (pole["before_practice"], {"uniform", "recent_form"}),
    ):
        assert set(block["baselines"]) == names
        assert block["test"]["events"] == ev["stage1"]["test"]["events"]
        even = block["baselines"]["uniform"]["test"]
        assert block["test"]["log_loss"] < even["log_loss"]
        assert 0.0 <= block["test"]["top1"] <= 1.0 and block["test"]["brier"] < even["brier"]
    rr = ev["stage2"]["rules_reset"]  # 2025: no race early under new rules
    assert (rr["reset_weight"], rr["reset_races"]) == (1.0, 4.0)
    assert rr["test"] == rr["test_chained"] == {"races": 0}
    pw = ev["stage2"]["pole_win_share"]
    assert pw["test"] == pytest.approx(ev["stage2"]["baselines"]["pole_sitter"]["test"]["top1"])
    assert 0.2 < pw["fit_seasons"] < 0.9
    assert sorted(pw["by_fit_season"]) == list(range(2021, 2025))  # fitted on 2021-2024
    p = ev["protocol"]
    assert p["test_season"] == 2025 and p["valid_season"] == 2024
    assert p["train_seasons"] == [2021, 2023]
    assert p["test_fit_seasons"] == [2021, 2024]  # the test season is not fitted on
    assert p["serving_fit_seasons"] == [2021, 2025]


@pytest.mark.slow
def test_predictions_cover_the_test_season(trained, real_tables) -> None:
    s1, s2 = trained.predictions["stage1"], trained.predictions["stage2"]
    assert set(s1["season"]) == {2025} and set(s2["season"]) == {2025}
    r = real_tables.races
    n_2025 = int((r["season"] == 2025).sum())
    assert s1["race_id"].nunique() == n_2025
    assert s2["race_id"].nunique() == n_2025
    # per-race win probabilities sum to one, and one winner per race
    np.testing.assert_allclose(s2.groupby("race_id")["prob"].sum(), 1.0)
    assert (s2.groupby("race_id")["win"].sum() == 1).all()
    assert np.isfinite(s1["pred_time"]).all() and (s1["pred_gap"] >= 0).all()
    # the reported metrics are those of these predictions
    again = stage2_metrics(s2, s2["prob"].to_numpy())
    for k in S2_KEYS:
        assert again[k] == pytest.approx(trained.evaluation["stage2"]["test"][k])
    # podium and points over the starters: the winner and at most 2 (9) classified
    # others, so a little under 3 (10) per race as cars may retire; never below the win
    # probability; three podium finishers recorded per race
    finish = trained.stage2.config.finish_rate
    assert 0.7 < finish < 1.0
    podium_sum = s2.groupby("race_id")["podium_prob"].sum()
    points_sum = s2.groupby("race_id")["points_prob"].sum()
    assert ((podium_sum < 3.0) & (podium_sum > 2.99)).all()
    assert ((points_sum < 10.0) & (points_sum > 9.9)).all()
    np.testing.assert_allclose(s2.groupby("race_id")["podium_base"].sum(), 3.0, atol=1e-9)
    np.testing.assert_allclose(s2.groupby("race_id")["points_base"].sum(), 10.0, atol=1e-9)
    assert (s2["podium_prob"] >= s2["prob"] - 1e-12).all()
    assert (s2["points_prob"] >= s2["podium_prob"] - 1e-12).all()
    assert (s2.groupby("race_id")["podium"].sum() == 3).all()
    pod = placing_metrics(s2, s2["podium_prob"].to_numpy())
    for k in PODIUM_KEYS:
        assert pod[k] == pytest.approx(trained.evaluation["stage2"]["podium"]["test"][k])
    pts = placing_metrics(s2, s2["points_prob"].to_numpy(), "points", 10)
    for k in POINTS_KEYS:
        assert pts[k] == pytest.approx(trained.evaluation["stage2"]["points"]["test"][k])
    assert trained.evaluation["stage2"]["points"]["finish_rate"] == finish
    ahead = trained.predictions["stage2_ahead"]
    for what, k in (("podium", 3), ("points", 10)):
        got = trained.evaluation["stage2"][what]["before_practice"]["model"]
        want = placing_metrics(ahead, ahead[f"{what}_prob"].to_numpy(), what, k)
        assert got == pytest.approx(want)
        assert got["races"] == trained.evaluation["stage2"][what]["test"]["races"]


@pytest.mark.slow
def test_the_finish_rate_is_the_tuning_seasons_share_of_classified_starters(
    trained, real_tables
) -> None:
    from training.datasets import stage2_data

    folds = trained.evaluation["tuning"]["stage2_folds"]
    assert folds == [2022, 2023, 2024]
    meta = stage2_data(trained.snapshot, real_tables, folds[0]).meta
    rows = meta[meta["season"].isin(folds)]
    share = float(rows["position"].notna().mean())
    assert trained.stage2.config.finish_rate == pytest.approx(share, abs=1e-12)
    # the served flow reads it: a podium over a field is the classified model's
    s2 = trained.predictions["stage2"]
    race = s2[s2["race_id"] == s2["race_id"].iloc[0]]
    want = classified_top_k(race["logit"].to_numpy(float), (3,), share)[0]
    np.testing.assert_allclose(race["podium_prob"].to_numpy(float), want, atol=1e-12)


@pytest.mark.slow
def test_baselines_are_what_they_say(trained) -> None:
    s2 = trained.predictions["stage2"]
    uniform = trained.evaluation["stage2"]["baselines"]["uniform"]["test"]
    # uniform: each winner had probability 1/n, n = starters in that race
    starters = s2.groupby("race_id").size()
    assert uniform["winner_log_loss"] == pytest.approx(np.log(starters).mean())
    assert uniform["top1"] == pytest.approx((1.0 / starters).mean())
    # and the model beats chance on both stages
    model2 = trained.evaluation["stage2"]["test"]
    assert model2["winner_log_loss"] < uniform["winner_log_loss"]
    assert trained.evaluation["stage1"]["test"]["spearman"] > 0.3


@pytest.mark.slow
def test_final_models_predict_on_the_snapshot(trained) -> None:
    snap = trained.snapshot
    ctx = snap.event_by_round(2025, 24)
    entries = snap.entries(ctx)
    x1 = snap.stage1_rows(ctx, snap.event_field(ctx))
    assert x1.shape == (len(entries), len(STAGE1))
    gap = trained.stage1.predict_gap(x1)
    assert (gap >= 0).all() and np.isfinite(gap).all()
    n = len(entries)
    x2 = snap.stage2_rows(ctx, entries, np.arange(1.0, n + 1), gap)
    assert x2.shape == (n, len(STAGE2))
    p = group_softmax(trained.stage2.logit(x2), np.zeros(n, int))
    assert p.sum() == pytest.approx(1.0)
    # the served model is monotone too: the same driver from further back never gains
    back = x2.copy()
    back[0, 0] = n + 1.0
    assert group_softmax(trained.stage2.logit(back), np.zeros(n, int))[0] <= p[0]
    # Stage-1 is served fitted through the latest qualifying in the data (``InSeason``)
    assert trained.stage1_through["season"] == 2025
    assert trained.stage1_through["round"] == int(
        snap.events["round"][snap.events["season"] == 2025].max()
    )


@pytest.mark.slow
def test_write_report(trained, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    paths = write_report(trained.evaluation, trained.predictions, out)
    names = sorted(p.name for p in paths)
    assert names == [
        "evaluation.json",
        "evaluation.md",
        "stage1_gap.png",
        "stage2_calibration.png",
        "stage2_podium_calibration.png",
    ]
    assert all(p.parent == out and p.stat().st_size > 0 for p in paths)
    for png in ("stage1_gap.png", "stage2_calibration.png", "stage2_podium_calibration.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    ev = json.loads((out / "evaluation.json").read_text())
    assert ev["stage2"]["test"]["season"] == 2025
    top1 = trained.evaluation["stage2"]["test"]["top1"]
    assert ev["stage2"]["test"]["top1"] == pytest.approx(top1)
    md = (out / "evaluation.md").read_text()
    assert "Stage-1" in md and "Stage-2" in md
    for name in trained.evaluation["stage2"]["baselines"]:
        assert f"| {name} |" in md
    assert f"{top1:.3f}" in md
    podium = trained.evaluation["stage2"]["podium"]
    assert "## Stage-2: podium" in md and "| grid_slot |" in md
    assert f"{podium['test']['brier']:.3f} | {podium['test']['log_loss']:.3f}" in md
    assert "## How sure: 90% intervals" in md
    assert "| stage-1 gap_pct_mae |" in md and "| stage-2 before qualifying top1 |" in md
    # a weekend ahead: both stages, the model and its baselines, every test event
    ahead1 = trained.evaluation["stage1"]["before_practice"]
    ahead2 = trained.evaluation["stage2"]["before_practice"]
    assert ahead1["model"]["events"] == trained.evaluation["stage1"]["test"]["events"]
    assert ahead2["model"]["races"] == trained.evaluation["stage2"]["test"]["races"]
    assert ev["stage1"]["before_practice"]["model"]["gap_pct_mae"] == pytest.approx(
        ahead1["model"]["gap_pct_mae"]
    )
    assert "## A weekend ahead (no practice in the data yet)" in md
    pole = trained.evaluation["stage1"]["pole"]
    assert "## Pole: who takes it (`probability_score` of /predict_quali)" in md
    assert f"| **model** | {pole['test']['events']} | {fmt(pole['test']['log_loss'])} |" in md
    assert ev["stage1"]["pole"]["test"]["log_loss"] == pytest.approx(pole["test"]["log_loss"])
    for what in ("podium", "points"):
        ahead_pl = ev["stage2"][what]["before_practice"]["model"]
        assert (
            f"- {what}, a weekend ahead: Brier {fmt(ahead_pl['brier'])}, log loss "
            f"{fmt(ahead_pl['log_loss'])}" in md
        )
    without = ahead1["without_form_model"]
    assert without["rows"] == ahead1["model"]["rows"]
    assert "Without the form-only ensemble (Stage-1's main ensemble predicting every car" in md
    assert f"gap MAE {fmt(without['gap_pct_mae'])} %" in md
    assert "| recent_form |" in md
    assert (
        f"| **model** | {fmt(ahead1['model']['mae_s'])} | {fmt(ahead1['model']['mae_dry_s'])}" in md
    )
    assert ev["stage2"]["podium"]["baselines"]["grid_slot"]["test"]["brier"] == pytest.approx(
        podium["baselines"]["grid_slot"]["test"]["brier"]
    )
    # every test race, one row each, its numbers those of the season's own functions
    races = ev["races"]
    assert len(races) == trained.evaluation["stage1"]["test"]["events"]
    assert [r["round"] for r in races] == sorted(r["round"] for r in races)
    gap = [r["stage1"]["model"]["gap_pct_mae"] for r in races]
    rows = trained.predictions["stage1"].groupby("race_id").size().sort_index()
    by_id = {r["race_id"]: g for r, g in zip(races, gap, strict=True)}
    pooled = sum(by_id[i] * n for i, n in rows.items()) / rows.sum()
    assert pooled == pytest.approx(trained.evaluation["stage1"]["test"]["gap_pct_mae"])
    assert "## Per race (test season)" in md
    last = races[-1]
    assert f"| {last['round']} | {last['grand_prix_id']} |" in md


def test_report_json_has_no_infinity() -> None:
    """JSON has no inf: an infinite log loss is written as null and 'inf' in markdown."""
    s2 = {k: 0.5 for k in S2_KEYS} | {"season": 2025, "winner_log_loss": math.inf}
    stage2 = {"test": s2, "baselines": {"pole_sitter": {"test": dict(s2)}}}
    text = report._json({"stage2": stage2})
    assert "Infinity" not in text
    assert json.loads(text)["stage2"]["test"]["winner_log_loss"] is None
    assert "| **model** | 0.500 | inf | 0.500 |" in report._table(stage2, S2_KEYS)


@pytest.mark.slow
def test_trained_models_serve_through_the_store_and_cli(
    trained, empty_store, clear_settings, monkeypatch
) -> None:
    from training import cli
    from training.cli import app

    tags = store.save_all(
        trained.snapshot, trained.stage1, trained.stage2, trained.evaluation, [2021, 2025]
    )
    md = store.get_model(tags.stage2).info.metadata
    assert md["metrics"]["test"]["season"] == 2025
    monkeypatch.setattr(cli.console, "_width", 250)
    result = CliRunner().invoke(app, ["predict", "--season", "2025", "--round", "24"])
    assert result.exit_code == 0, result.output
    snap = trained.snapshot
    for e in snap.entries(snap.event_by_round(2025, 24)):
        assert snap.driver_name(e.driver_id) in result.output
    assert "Max Verstappen" in result.output and "Red Bull" in result.output


def _tracked_changes() -> str | None:
    """`git status` of the checkout's tracked files (None outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout


def _keys(doc: object) -> set[str]:
    if isinstance(doc, dict):
        return set(doc).union(*(_keys(v) for v in doc.values()))
    if isinstance(doc, list):
        return set().union(*(_keys(v) for v in doc))
    return set()


@pytest.mark.slow
def test_training_changes_no_tracked_file(
    trained, empty_store, clear_settings, monkeypatch, tmp_path: Path
) -> None:
    """`make serve` on a clean checkout trains: that stores the models and writes no
    report (reports/ is tracked); `--report` writes one, and it holds no timing."""
    from training.cli import app

    monkeypatch.setattr(pipeline, "run", lambda *_a, **_k: trained)  # the same run, once
    reports = tmp_path / "reports"
    monkeypatch.setenv("F1_REPORTS_DIR", str(reports))
    before = _tracked_changes()
    result = CliRunner().invoke(app, ["train"])
    assert result.exit_code == 0, result.output
    assert len(store_models()) == 3
    assert not reports.exists()
    assert _tracked_changes() == before
    asked = CliRunner().invoke(app, ["train", "--report"])
    assert asked.exit_code == 0, asked.output
    written = json.loads((reports / "evaluation.json").read_text())
    assert written["stage2"]["test"]["season"] == 2025
    assert not [k for k in _keys(written) if "seconds" in k]


def test_stage2_is_tuned_on_up_to_three_seasons() -> None:
    from training.pipeline import stage2_folds

    assert stage2_folds(Protocol(2014, 2024, 2025)) == [2022, 2023, 2024]
    assert stage2_folds(Protocol(2021, 2024, 2025)) == [2022, 2023, 2024]
    assert stage2_folds(Protocol(2022, 2024, 2025)) == [2023, 2024]  # each needs a season before


def test_pooled_winner_loss_is_the_metric() -> None:
    from pipelines.models.stage2 import group_softmax
    from training.pipeline import pooled_winner_loss

    rng = np.random.default_rng(4)
    races = np.repeat([7, 3, 11, 5], 6)
    perm = rng.permutation(len(races))  # rows of a race need not be adjacent
    win = np.zeros(len(races))
    win[[0, 8, 14]] = 1.0  # race 5 has no classified winner: left out by both
    meta = pd.DataFrame({"race_id": races[perm], "win": win[perm], "season": 2024})
    score = rng.normal(size=len(races))
    expected = stage2_metrics(meta, group_softmax(score, meta["race_id"].to_numpy()))
    assert pooled_winner_loss(meta)(score) == pytest.approx(expected["winner_log_loss"])


def test_rules_reset_check_scores_the_leaning_races_three_ways() -> None:
    """Only the races early under new rules; as served, without the lean, and the
    logistic on the same grid; a scored season without such races says so."""
    from dataclasses import replace

    from pipelines.models.stage2 import Stage2Config, Stage2Model, group_softmax
    from training.pipeline import rules_reset_check

    rng = np.random.default_rng(4)
    races, field = 40, 10
    groups = np.repeat(np.arange(races), field)
    x = np.full((races * field, len(STAGE2)), np.nan)
    x[:, STAGE2.pos["grid"]] = np.tile(np.arange(1.0, field + 1), races)
    x[:, STAGE2.pos["d_win_ewm"]] = rng.uniform(size=len(x))
    y = np.zeros(len(x))
    y[np.arange(races) * field + np.minimum(rng.geometric(0.5, races) - 1, field - 1)] = 1.0
    cfg = Stage2Config(n_estimators=20, min_child_samples=5, stack_weight=0.5)
    model = Stage2Model.fit(x, y, cfg, groups)

    xs = x[: 3 * field].copy()  # three scored races: rules races 0, 2 and 50
    xs[:, STAGE2.pos["c_rules_races"]] = np.repeat([0.0, 2.0, 50.0], field)
    g = groups[: 3 * field] + 100
    frame = pd.DataFrame(
        {"race_id": g, "season": 2026, "round": np.repeat([1, 3, 9], field), "win": y[: 3 * field]}
    )
    frame["prob"] = group_softmax(model.logit(xs), g)
    frame["logistic_grid:prob"] = group_softmax(-np.log(xs[:, STAGE2.pos["grid"]]), g)
    rr = rules_reset_check(model, {"test": (frame, xs), "test_chained": (frame.iloc[20:], xs[20:])})
    t = rr["test"]
    assert t["races"] == 2 and t["rounds"] == [1, 3]
    lean = frame.iloc[:20]
    assert t["model"] == stage2_metrics(lean, lean["prob"].to_numpy())
    plain = Stage2Model(replace(model.config, reset_weight=0.0), model.booster)
    without = stage2_metrics(lean, group_softmax(plain.logit(xs[:20]), g[:20]))
    assert t["without_reset"] == without
    assert without["winner_log_loss"] != t["model"]["winner_log_loss"]
    assert t["logistic_grid"] == stage2_metrics(lean, lean["logistic_grid:prob"].to_numpy())
    assert rr["test_chained"] == {"races": 0}


def test_stage2_tuning_scores_races_under_new_rules_as_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Validation races that are the first under new rules are scored by the grid-only
    logit, as the service answers them: the logged loss is that logit's, whatever the
    booster (and not the booster's once the rules are old)."""
    from pipelines.models.stage2 import GRID_TERMS, fit_linear, group_softmax, linear_design
    from training import pipeline as pl

    monkeypatch.setattr(pl, "STAGE2_GRID", {"objective": ["binary"], "num_leaves": [3],
                                            "n_estimators": [30], "min_child_samples": [5]})  # fmt: skip
    monkeypatch.setattr(pl, "STACK_GRID", [1.0])
    monkeypatch.setattr(pl, "TEMP_GRID", [1.0])
    rng = np.random.default_rng(9)
    field, per_season, seasons = 10, 30, [2021, 2022, 2023]
    n = field * per_season * len(seasons)
    x = np.full((n, len(STAGE2)), np.nan)
    x[:, STAGE2.pos["grid"]] = np.tile(np.arange(1.0, field + 1), n // field)
    x[:, STAGE2.pos["d_win_ewm"]] = rng.uniform(size=n)
    races = np.repeat(np.arange(n // field), field)
    y = np.zeros(n)
    y[np.arange(n // field) * field + rng.integers(0, 4, n // field)] = 1.0
    season = np.repeat(seasons, field * per_season)
    position = np.where(y == 1.0, 1.0, np.nan)  # the winners' places (the rest unplaced)
    meta = pd.DataFrame({"race_id": races, "season": season, "win": y, "position": position})
    p = Protocol(train_from=2021, valid_season=2023, test_season=2024)

    def logged(rules_races: float) -> float:
        xs = x.copy()
        xs[:, STAGE2.pos["c_rules_races"]] = rules_races
        _cfg, log = pl.tune_stage2(StageData(xs, y, meta), p, lambda _m: None)
        return float(log[0]["valid_winner_log_loss"])

    folds = [(season < v, season == v) for v in pl.stage2_folds(p)]
    grid_only = []
    for tr, va in folds:
        coef = np.asarray(fit_linear(x[tr], y[tr], races[tr], GRID_TERMS))
        grid_only.append(group_softmax(linear_design(x[va], GRID_TERMS) @ coef, races[va]))
    va_all = np.concatenate([va.nonzero()[0] for _tr, va in folds])
    expected = stage2_metrics(meta.iloc[va_all], np.concatenate(grid_only))["winner_log_loss"]
    assert logged(0.0) == pytest.approx(expected)
    assert logged(50.0) != pytest.approx(expected)


# ------------------------------------------------------- Stage-1 during a season


def _season_rows(seed: int = 0) -> StageData:
    """Two seasons of four events, twelve cars each: practice-like columns that say most
    of the gap (a tiny real-shaped Stage-1 table, no event under new rules)."""
    rng = np.random.default_rng(seed)
    metas, xs = [], []
    race = 0
    for season in (2020, 2021):
        for rnd in (1, 2, 3, 4):
            race += 1
            x = rng.normal(size=(12, len(STAGE1)))
            x[:, STAGE1.pos["c_rules_races"]] = 10.0
            metas.append(
                pd.DataFrame(
                    {
                        "race_id": race,
                        "season": season,
                        "round": rnd,
                        "driver_id": [f"d{i}" for i in range(12)],
                        "constructor_id": [f"t{i // 2}" for i in range(12)],
                        "dry": True,
                    }
                )
            )
            xs.append(x)
    x = np.vstack(xs)
    y = np.abs(x[:, 0]) + 0.1 * rng.normal(size=len(x))
    return StageData(x, y, pd.concat(metas, ignore_index=True))


CFG_TINY = pipeline.Stage1Config(n_estimators=15, num_leaves=3, min_child_samples=5)


def test_known_before_is_the_earlier_seasons_and_rounds() -> None:
    d = _season_rows()
    rows = pipeline.known_before(d, 2020, 2021, 3)
    keys = set(zip(rows.meta["season"], rows.meta["round"], strict=True))
    assert keys == {(2020, 1), (2020, 2), (2020, 3), (2020, 4), (2021, 1), (2021, 2)}
    assert len(pipeline.known_before(d, 2021, 2021, 1).y) == 0


def test_in_season_stage1_learns_from_earlier_events_only() -> None:
    """Change the future (the event itself and later ones): the model for round 3 does not
    move; change an earlier event of the season: it does."""
    d = _season_rows()
    first = pipeline.fit_stage1(d.seasons(2020, 2020), CFG_TINY)
    at = d.meta["season"].eq(2021).to_numpy()
    probe = d.x[at]

    def model_for(data: StageData, rnd: int) -> np.ndarray:
        ins = pipeline.InSeason(data, 2020, CFG_TINY, first)
        return ins.model(2021, rnd).predict_gap(probe)

    base = model_for(d, 3)
    np.testing.assert_allclose(base, pipeline.fit_stage1(pipeline.known_before(d, 2020, 2021, 3),
                                                         CFG_TINY).predict_gap(probe))  # fmt: skip
    future = StageData(d.x, d.y.copy(), d.meta)
    future.y[(at & d.meta["round"].ge(3).to_numpy())] += 5.0
    np.testing.assert_array_equal(model_for(future, 3), base)
    past = StageData(d.x, d.y.copy(), d.meta)
    past.y[(at & d.meta["round"].eq(2).to_numpy())] += 5.0
    assert not np.allclose(model_for(past, 3), base)
    ins = pipeline.InSeason(d, 2020, CFG_TINY, first)
    assert ins.model(2021, 1) is first  # nothing of the season known yet
    assert ins.model(2021, 2) is ins.model(2021, 2)  # fitted once


@pytest.mark.parametrize(
    ("through", "seasons", "latest", "due"),
    [
        ({"season": 2025, "round": 24}, [2014, 2025], (2025, 24), False),
        ({"season": 2025, "round": 24}, [2014, 2025], (2026, 1), True),
        ({"season": 2026, "round": 2}, [2014, 2025], (2026, 2), False),
        ({"season": 2026, "round": 2}, [2014, 2025], (2026, 3), True),
        (None, [2014, 2025], (2025, 24), False),  # saved before it was recorded
        (None, [2014, 2025], (2026, 1), True),
        (None, [], (2026, 1), False),
        ({"season": 2025, "round": 24}, [2014, 2025], None, False),
    ],
)
def test_refit_is_due_after_a_newer_qualifying(through, seasons, latest, due) -> None:
    assert pipeline.refit_due(through, seasons, latest) is due


def test_latest_qualifying_and_last_event(synthetic_tables) -> None:
    tree, tables = synthetic_tables
    last = max((s.season, s.round) for s in tree.races)
    assert pipeline.latest_qualifying(tables) == last
    d = _season_rows()
    assert pipeline.last_event(d) == {"season": 2021, "round": 4, "race_id": 8}
    assert pipeline.last_event(d.select(np.zeros(len(d.y), dtype=bool))) is None
