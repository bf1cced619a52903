"""The quality tables of the README and of docs/model-quality.md say what the committed
reports say.

Every figure in the README's "How well it predicts" and in its details page is to come
from `f1 evaluate` or `f1 backtest`; a report regenerated without them (or the other way
round) fails here, naming the row and the column.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from training.report import S1_KEYS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DETAILS = (ROOT / "docs" / "model-quality.md").read_text()
"""The details page of "How well it predicts": the tables and figures moved out of the README."""
TEXT = " ".join(f"{README}\n{DETAILS}".split())
"""Both, as one line of prose: they wrap their lines anywhere."""
REPORTS = ROOT / "reports"


def _table(header_start: str) -> list[list[str]]:
    """The rows (cells, bold marks dropped) of the table whose header begins so, in the
    README or its details page (exactly one of them)."""
    found = [
        (doc, i)
        for doc in (README, DETAILS)
        for i, line in enumerate(doc.splitlines())
        if line.startswith(header_start)
    ]
    assert len(found) == 1, f"{header_start!r}: {len(found)} tables"
    doc, at = found[0]
    lines = doc.splitlines()
    rows = []
    for line in lines[at + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.replace("**", "").strip() for c in line.strip("|").split("|")])
    return rows


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isinf(v)):
        return "inf"
    return f"{v:.3f}"


def _evaluation() -> dict[str, Any]:
    return json.loads((REPORTS / "evaluation.json").read_text())


def test_the_2025_stage1_table_is_the_evaluation_report() -> None:
    s1 = _evaluation()["stage1"]
    sources = {
        "model": s1["test"],
        "best practice lap x circuit ratio": s1["baselines"]["practice_ratio"]["test"],
        "quick LightGBM on gap-to-pole (NOTES.md recipe)": s1["baselines"]["quick_lgbm_gap"][
            "test"
        ],
    }
    keys = S1_KEYS[1:]  # the README's columns are the report's, in its order
    rows = _table("| Stage-1 (before qualifying) |")
    assert [r[0] for r in rows] == list(sources)
    for name, *cells in rows:
        assert cells == [_fmt(sources[name][k]) for k in keys], name


def test_the_2025_stage2_table_is_the_evaluation_report() -> None:
    s2 = _evaluation()["stage2"]
    b = s2["baselines"]
    sources = {
        "model": (s2["test"], s2["test_chained"]),
        "uniform": (b["uniform"]["test"], b["uniform"]["test_chained"]),
        "pole-sitter wins": (b["pole_sitter"]["test"], b["pole_sitter"]["test_chained"]),
        "logistic on log(grid)": (b["logistic_grid"]["test"], b["logistic_grid"]["test_chained"]),
        "quick LightGBM grid + form": (b["quick_lgbm"]["test"], b["quick_lgbm"]["test_chained"]),
    }
    keys = ["top1", "winner_log_loss", "brier"]
    rows = _table("| Stage-2 | top-1 after quali |")
    assert [r[0] for r in rows] == list(sources)
    for name, *cells in rows:
        after, before = sources[name]
        assert cells == [_fmt(after[k]) for k in keys] + [_fmt(before[k]) for k in keys], name


@pytest.mark.parametrize("season", [2009, 2014, 2016, 2017, 2019, 2021, 2022, 2023, 2024])
def test_the_backtest_table_is_each_backtest_report(season: int) -> None:
    ev = json.loads((REPORTS / f"backtest-{season}.json").read_text())
    s1, s2 = ev["stage1"], ev["stage2"]
    b1, b2 = s1["baselines"], s2["baselines"]
    want = [
        [
            s1["test"]["gap_pct_mae"],
            b1["practice_ratio"]["test"]["gap_pct_mae"],
            b1["quick_lgbm_gap"]["test"]["gap_pct_mae"],
        ],
        [
            s2["test"]["winner_log_loss"],
            b2["logistic_grid"]["test"]["winner_log_loss"],
            b2["quick_lgbm"]["test"]["winner_log_loss"],
        ],
        [
            s2["test_chained"]["winner_log_loss"],
            b2["logistic_grid"]["test_chained"]["winner_log_loss"],
            b2["quick_lgbm"]["test_chained"]["winner_log_loss"],
        ],
    ]
    rows = {r[0].split(" ")[0]: r[1:] for r in _table("| season | gap MAE %: model /")}
    cells = [[v.strip() for v in c.split("/")] for c in rows[str(season)]]
    assert cells == [[_fmt(v) for v in group] for group in want]


def _ahead(season: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
    path = REPORTS / ("evaluation.json" if season is None else f"backtest-{season}.json")
    ev = json.loads(path.read_text())
    return ev["stage1"]["before_practice"], ev["stage2"]["before_practice"]


@pytest.mark.parametrize("season", [2009, 2014, 2016, 2017, 2019, 2021, 2022, 2023, 2024, None])
def test_the_weekend_ahead_table_is_the_reports(season: int | None) -> None:
    s1, s2 = _ahead(season)
    want = [
        [
            s1["without_form_model"]["gap_pct_mae"],
            s1["model"]["gap_pct_mae"],
            s1["baselines"]["recent_form"]["gap_pct_mae"],
        ],
        [s1["model"]["spearman"], s1["baselines"]["recent_form"]["spearman"]],
        [
            s2["without_form_model"]["winner_log_loss"],
            s2["model"]["winner_log_loss"],
            s2["baselines"]["logistic_grid"]["winner_log_loss"],
            s2["baselines"]["quick_lgbm"]["winner_log_loss"],
        ],
    ]
    rows = {r[0].split(" ")[0]: r[1:] for r in _table("| season, a weekend ahead |")}
    cells = [[v.strip() for v in c.split("/")] for c in rows[str(season or 2025)]]
    assert cells == [[_fmt(v) for v in group] for group in want]


@pytest.mark.parametrize("season", [2009, 2014, 2016, 2017, 2019, 2021, 2022, 2023, 2024, None])
def test_the_pole_odds_table_is_the_reports(season: int | None) -> None:
    path = REPORTS / ("evaluation.json" if season is None else f"backtest-{season}.json")
    pole = json.loads(path.read_text())["stage1"]["pole"]
    base = {k: v["test"] for k, v in pole["baselines"].items()}
    ahead = pole["before_practice"]
    want = [
        [pole["test"]["log_loss"]]
        + [base[k]["log_loss"] for k in ("uniform", "practice_ratio", "quick_lgbm_gap")],
        [pole["test"]["top1"]] + [base[k]["top1"] for k in ("practice_ratio", "quick_lgbm_gap")],
        [ahead["test"]["log_loss"], ahead["baselines"]["recent_form"]["test"]["log_loss"]],
    ]
    rows = {r[0].split(" ")[0]: r[1:] for r in _table("| season, pole odds |")}
    cells = [[v.strip() for v in c.split("/")] for c in rows[str(season or 2025)]]
    assert cells == [[_fmt(v) for v in group] for group in want]


@pytest.mark.parametrize(
    ("what", "header", "hits"),
    [
        ("podium", "| Stage-2 podium (top 3) |", "top3_hits"),
        ("points", "| Stage-2 points (top 10) |", "top10_hits"),
    ],
)
def test_the_podium_and_points_tables_are_the_evaluation_report(
    what: str, header: str, hits: str
) -> None:
    pod = _evaluation()["stage2"][what]
    sources = [
        pod["test"],
        pod["test_chained"],
        pod["before_practice"]["model"],
        pod["baselines"]["every_car_classified"]["test"],
        pod["baselines"]["grid_slot"]["test"],
    ]
    rows = _table(header)
    assert len(rows) == len(sources)
    for (name, *cells), src in zip(rows, sources, strict=True):
        assert cells == [_fmt(src[k]) for k in ("brier", "log_loss", hits)], name


def test_the_how_sure_table_is_the_evaluation_report() -> None:
    ev = _evaluation()
    s1 = ev["stage1"]["intervals"]["metrics"]
    s2 = ev["stage2"]["intervals"]
    sources = {
        "gap-to-pole MAE %": s1["gap_pct_mae"],
        "Spearman": s1["spearman"],
        "log loss after quali": s2["test"]["metrics"]["winner_log_loss"],
        "top-1 after quali": s2["test"]["metrics"]["top1"],
        "log loss before quali": s2["test_chained"]["metrics"]["winner_log_loss"],
    }
    rows = _table("| 2025 | model | 90 % interval |")
    assert [r[0] for r in rows] == list(sources)
    for name, model, band, *_ in rows:
        src = sources[name]
        lo, hi = src["interval"]
        assert (model, band) == (_fmt(src["model"]), f"{_fmt(lo)}-{_fmt(hi)}"), name


def test_the_finish_rate_quoted_is_the_evaluated_models() -> None:
    """The podium section quotes the share of starters classified that the served and
    evaluated Stage-2 uses (both fitted with the same tuning seasons)."""
    s2 = _evaluation()["stage2"]
    rate = s2["podium"]["finish_rate"]
    assert (
        rate
        == s2["points"]["finish_rate"]
        == _evaluation()["tuning"]["chosen"]["stage2"]["finish_rate"]
    )
    assert f"({_fmt(rate)} for the served model" in TEXT
    assert f"(measured, not tuned: {_fmt(rate)} for 2025 and the served model" in TEXT


def test_the_cars_retire_paragraph_is_the_reports() -> None:
    """ "S every car classified -> cars retire (grid slot; points model vs grid slot)" per
    season: every figure is the season's report (a backtest's, or 2025's evaluation),
    and so are the counts of seasons the change made better."""
    import re

    start = TEXT.index("## Cars retire")
    para = TEXT[start : TEXT.index("Better after qualifying", start)]
    found = re.findall(
        r"(\d{4})(?: \(test\)|, looked at afterwards,)? ([\d.]+) -> ([\d.]+) \(([\d.]+); "
        r"([\d.]+) vs ([\d.]+)\)",
        para,
    )
    assert [int(f[0]) for f in found] == [
        2009,
        2014,
        2016,
        2017,
        2019,
        2021,
        2022,
        2023,
        2024,
        2025,
    ]
    better = {"test": 0, "test_chained": 0}
    beat: dict[tuple[str, str], set[int]] = {}
    for season, before, now, slot, pts, pts_slot in found:
        path = "evaluation.json" if season == "2025" else f"backtest-{season}.json"
        s2 = json.loads((REPORTS / path).read_text())["stage2"]
        pod, points = s2["podium"], s2["points"]
        every = pod["baselines"]["every_car_classified"]
        want = [
            every["test"]["log_loss"],
            pod["test"]["log_loss"],
            pod["baselines"]["grid_slot"]["test"]["log_loss"],
            points["test"]["log_loss"],
            points["baselines"]["grid_slot"]["test"]["log_loss"],
        ]
        assert [before, now, slot, pts, pts_slot] == [_fmt(v) for v in want], season
        if season != "2025":
            for which in better:
                better[which] += pod[which]["log_loss"] < every[which]["log_loss"]
        for what in ("podium", "points"):
            model, slot_m = s2[what]["test"], s2[what]["baselines"]["grid_slot"]["test"]
            for k in ("brier", "log_loss"):
                if model[k] < slot_m[k]:
                    beat.setdefault((what, k), set()).add(int(season))
                elif season == "2025" and what == "points":
                    assert 0.0015 <= model[k] - slot_m[k] < 0.0045, k
    # "Better after qualifying in seven of nine backtests and before qualifying in all nine"
    assert better == {"test": 7, "test_chained": 9}
    # "the podium odds now beat the grid slot's history by log loss in every season (by
    # Brier in all but 2024), the points odds by both in every backtest (2025: ... the
    # grid slot is ahead by 0.002-0.004)"
    assert (
        "the podium odds now beat the grid slot's history by log loss in every season (by "
        "Brier in all but 2024), the points odds by both in every backtest (2025: by Brier "
        "and log loss the grid slot is ahead by 0.002-0.004)" in TEXT
    )
    seasons = {int(f[0]) for f in found}
    assert beat[("podium", "log_loss")] == seasons
    assert beat[("podium", "brier")] == seasons - {2024}
    assert beat[("points", "log_loss")] == beat[("points", "brier")] == seasons - {2025}
    assert "Better after qualifying in seven of nine backtests and before qualifying in all" in TEXT


def test_the_points_odds_before_cars_could_retire_are_the_report() -> None:
    """ "barely better than a coin (2025 log loss X per starter against 0.693 for even odds
    on every car and Y for the grid slot's rate": the baseline kept in the report for it."""
    points = _evaluation()["stage2"]["points"]
    every = points["baselines"]["every_car_classified"]["test"]["log_loss"]
    slot = points["baselines"]["grid_slot"]["test"]["log_loss"]
    assert slot < every < math.log(2) < every + 0.05  # "barely better than a coin"
    assert (
        f"(2025 log loss {_fmt(every)} per starter against {_fmt(math.log(2))} for even odds "
        f"on every car and {_fmt(slot)} for the grid slot's rate" in TEXT
    )


def test_the_readme_pole_odds_are_the_evaluation_report() -> None:
    pole = _evaluation()["stage1"]["pole"]
    base = {k: v["test"] for k, v in pole["baselines"].items()}
    ahead = pole["before_practice"]
    said = (
        f"2025 log loss {_fmt(pole['test']['log_loss'])} before qualifying against "
        f"{_fmt(base['uniform']['log_loss'])} for an even chance, "
        f"{_fmt(base['practice_ratio']['log_loss'])} for the practice-ratio rule's gaps and "
        f"{_fmt(base['quick_lgbm_gap']['log_loss'])} for the quick LightGBM's (through the "
        f"same temperature), {_fmt(ahead['test']['log_loss'])} a weekend ahead against "
        f"{_fmt(ahead['baselines']['recent_form']['test']['log_loss'])} for recent form"
    )
    assert said in TEXT


def test_the_hindsight_figures_are_the_hindsight_report() -> None:
    """`f1 hindsight`'s bound, as the README and its details page quote it."""
    h = json.loads((REPORTS / "hindsight.json").read_text())
    s1, s2 = h["stage1"]["test"], h["stage2"]
    assert h["season"] == _evaluation()["protocol"]["test_season"]
    assert (
        f"gap MAE {_fmt(s1['gap_pct_mae'])} %, Spearman {_fmt(s1['spearman'])}, winner log loss "
        f"after qualifying {_fmt(s2['test']['winner_log_loss'])}, top-1 {_fmt(s2['test']['top1'])}"
        in TEXT
    )
    assert (
        f"They score a gap MAE of {_fmt(s1['gap_pct_mae'])} % and a Spearman of "
        f"{_fmt(s1['spearman'])}" in TEXT
    )
    assert (
        f"log loss after qualifying of {_fmt(s2['test']['winner_log_loss'])} and top-1 "
        f"{_fmt(s2['test']['top1'])}" in TEXT
    )
    assert f"(before qualifying {_fmt(s2['test_chained']['winner_log_loss'])}, served" in TEXT


def test_the_in_sample_figures_are_the_hindsight_report() -> None:
    """What the served models say of their own training events (`f1 hindsight`'s
    ``served_in_sample``), as the README and its details page quote it."""
    h = json.loads((REPORTS / "hindsight.json").read_text())["served_in_sample"]
    s1, s2 = h["stage1"]["test"], h["stage2"]
    said = (
        f"gap MAE {_fmt(s1['gap_pct_mae'])} %, Spearman {_fmt(s1['spearman'])}, winner log loss "
        f"after qualifying {_fmt(s2['test']['winner_log_loss'])}, top-1 "
        f"{_fmt(s2['test']['top1'])}, before qualifying "
        f"{_fmt(s2['test_chained']['winner_log_loss'])}"
    )
    assert " ".join(README.split()).count(said) == 1
    assert " ".join(DETAILS.split()).count(said) == 1


def test_the_weekend_ahead_pole_figures_are_the_reports() -> None:
    """docs/model-quality.md's pole-lap MAE a weekend ahead, before -> now for each season
    (the "now" read from the reports: `stage1.before_practice.pole_mae_s`), and 2025's MAE."""
    start = TEXT.index("the pole-lap MAE a weekend ahead (`stage1.before_practice`")
    span = TEXT[start : TEXT.index(" s: lower in all ten", start)]
    pairs = re.findall(r"(\d{4}) (\d+\.\d{3}) -> (\d+\.\d{3})", span)
    assert [int(s) for s, _b, _n in pairs] == [2009, 2014, 2016, 2017, 2019, 2021, 2022,
                                                2023, 2024, 2025]  # fmt: skip
    for season, before, now in pairs:
        path = "evaluation.json" if season == "2025" else f"backtest-{season}.json"
        ahead = json.loads((REPORTS / path).read_text())["stage1"]["before_practice"]
        assert now == _fmt(ahead["pole_mae_s"]), season
        assert float(now) < float(before), season  # "lower in all ten"
    model = _evaluation()["stage1"]["before_practice"]["model"]
    assert f"MAE 2.658 -> {_fmt(model['mae_s'])} s, dry events 0.870 -> " in TEXT
    assert f"-> {_fmt(model['mae_dry_s'])} s)" in TEXT
