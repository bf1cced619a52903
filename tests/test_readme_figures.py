"""The quality figures of the README and docs/*.md say what the committed reports say.

Every figure they quote from `f1 evaluate`, `f1 backtest` or `f1 hindsight` is read here
from reports/*.json (or the targets of reports/evaluation.md); a report regenerated without
the docs (or the other way round) fails here, naming the row and the column. Counts said
in words ("in seven of nine backtests") are counted from the reports too.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path
from typing import Any

import pytest

from training.backtest import targets
from training.report import S1_KEYS, S1_TARGETS

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "reports"
DOCS = {
    p.relative_to(ROOT).as_posix(): p.read_text()
    for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
}
"""The README and every page under docs/: a figure may live in any of them."""
TEXT = " ".join(" ".join(DOCS.values()).split())
"""All of them, as one line of prose: they wrap their lines anywhere."""
BACKTESTS = [2009, 2014, 2016, 2017, 2019, 2021, 2022, 2023, 2024]
WORDS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
]


def _table(header_start: str) -> list[list[str]]:
    """The rows (cells, bold marks dropped) of the one table, in any of the docs, whose
    header begins so."""
    found = [
        (doc, i)
        for doc in DOCS.values()
        for i, line in enumerate(doc.splitlines())
        if line.startswith(header_start)
    ]
    assert len(found) == 1, f"{header_start!r}: {len(found)} tables"
    doc, at = found[0]
    rows = []
    for line in doc.splitlines()[at + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.replace("**", "").strip() for c in line.strip("|").split("|")])
    return rows


def _by_season(header_start: str) -> dict[int, list[str]]:
    """A table keyed by the season that starts each row ("2025 (test)" -> 2025)."""
    return {int(r[0].split(" ")[0].rstrip(",")): r[1:] for r in _table(header_start)}


def _slashed(cell: str) -> list[str]:
    return [v.strip() for v in cell.split("/")]


def _after(cell: str) -> str:
    """The "now" side of a "before -> now" cell."""
    return cell.split("->")[1].split("(")[0].strip()


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isinf(v)):
        return "inf"
    return f"{v:.3f}"


def _pct(share: float) -> str:
    return f"{100 * share:.0f} %"


def _of(n: int, total: int) -> str:
    """A count as the docs say it: "all nine", "seven of nine"."""
    return f"all {WORDS[total]}" if n == total else f"{WORDS[n]} of {WORDS[total]}"


def _report(season: int | None) -> dict[str, Any]:
    """A backtest's report, or (season None or the test season) the evaluation's."""
    name = "evaluation.json" if season in (None, 2025) else f"backtest-{season}.json"
    return json.loads((REPORTS / name).read_text())


def _evaluation() -> dict[str, Any]:
    return _report(None)


def _targets_of_the_evaluation_report() -> dict[str, list[str]]:
    """reports/evaluation.md's "Targets" table: metric -> target, reached, interval, met."""
    md = (REPORTS / "evaluation.md").read_text()
    rows = md[md.index("## Targets") :].split("\n\n")[1].splitlines()[2:]
    return {c[0]: c[1:] for c in ([x.strip() for x in r.strip("|").split("|")] for r in rows)}


NAMES = {
    "practice_ratio": "practice ratio",
    "quick_lgbm_gap": "quick LightGBM",
    "quick_lgbm": "quick LightGBM",
    "logistic_grid": "logistic on the grid",
    "pole_sitter": "pole-sitter",
    "uniform": "uniform",
}
"""How the README's headline table names the reports' baselines."""


def test_the_readme_headline_table_is_the_evaluation_report() -> None:
    """Model, target and "met" as `f1 evaluate` reports them; the best baseline found
    among the report's own (lowest error, highest Spearman or top-1)."""
    ev = _evaluation()
    s1, s2 = ev["stage1"], ev["stage2"]
    b1 = {k: v["test"] for k, v in s1["baselines"].items()}
    after = {k: v["test"] for k, v in s2["baselines"].items()}
    before = {k: v["test_chained"] for k, v in s2["baselines"].items()}
    sources = {  # row -> (model, baselines, metric, higher is better, report's target row)
        "gap to pole, MAE %": (s1["test"], b1, "gap_pct_mae", False, "stage-1 gap_pct_mae"),
        "qualifying order, Spearman": (s1["test"], b1, "spearman", True, "stage-1 spearman"),
        "lap time on dry events, MAE s": (s1["test"], b1, "mae_dry_s", False, "stage-1 mae_dry_s"),
        "winner log loss, after qualifying": (
            s2["test"],
            after,
            "winner_log_loss",
            False,
            "stage-2 winner_log_loss",
        ),
        "winner top-1, after qualifying": (s2["test"], after, "top1", True, "stage-2 top1"),
        "winner log loss, before qualifying": (
            s2["test_chained"],
            before,
            "winner_log_loss",
            False,
            "stage-2 winner_log_loss before qualifying",
        ),
    }
    report = _targets_of_the_evaluation_report()
    rows = _table("| 2025, held out |")
    assert [r[0] for r in rows] == list(sources)
    for name, model, target, met, best in rows:
        src, baselines, k, higher, target_row = sources[name]
        scored = {b: v[k] for b, v in baselines.items() if _fmt(v[k]) != "inf"}
        top = (max if higher else min)(scored, key=lambda b: scored[b])
        want_target, reached, _interval, want_met = report[target_row]
        assert model == _fmt(src[k]) == reached, name
        assert target == want_target.replace("<=", "≤").replace(">=", "≥"), name
        assert met == want_met, name
        assert best == f"{_fmt(scored[top])} ({NAMES[top]})", name


def test_every_missed_target_lies_inside_its_interval_as_the_readme_says() -> None:
    missed = [r for r in _targets_of_the_evaluation_report().values() if r[3] == "no"]
    assert missed
    for target, _reached, interval, _met in missed:
        goal = float(re.findall(r"\d+\.\d+", target)[-1])
        lo, hi = (float(x) for x in interval.strip("[]").split(","))
        assert lo <= goal <= hi, target
    assert "Every missed target lies inside the season's 90 % interval" in TEXT


def test_the_qualifying_targets_are_met_on_the_dry_events_as_the_readme_says() -> None:
    s1 = _evaluation()["stage1"]["test"]
    gap, rho = s1["gap_pct_mae_dry"], s1["spearman_dry"]
    assert gap <= S1_TARGETS["gap_pct_mae"] and rho >= S1_TARGETS["spearman"]
    assert (
        f"On the {s1['dry_events']} dry events both qualifying targets are met (gap MAE "
        f"{_fmt(gap)} %, Spearman {_fmt(rho)})." in TEXT
    )


def test_the_backtest_targets_the_readme_sums_up_are_met_in_every_backtest() -> None:
    """ "In all nine backtests (2009-2024) the model beats the practice-ratio rule on gap
    MAE and the logistic on the grid on winner log loss" (after qualifying and before)."""
    met = [all(ok for *_, ok in targets(_report(s))) for s in BACKTESTS]
    assert f"In {_of(sum(met), len(BACKTESTS))} backtests (2009-2024) the model beats" in TEXT


def test_the_2025_stage1_table_is_the_evaluation_report() -> None:
    s1 = _evaluation()["stage1"]
    sources = {
        "model": s1["test"],
        "best practice lap x circuit ratio": s1["baselines"]["practice_ratio"]["test"],
        "quick LightGBM on gap-to-pole (NOTES.md recipe)": s1["baselines"]["quick_lgbm_gap"][
            "test"
        ],
    }
    keys = S1_KEYS[1:]  # the docs' columns are the report's, in its order
    rows = _table("| Stage-1 (before qualifying) |")
    assert [r[0] for r in rows] == list(sources)
    for name, *cells in rows:
        assert cells == [_fmt(sources[name][k]) for k in keys], name


def test_the_events_that_were_not_dry_are_the_evaluation_reports() -> None:
    races = [r for r in _evaluation()["races"] if not r["dry"]]
    rows = _table("| 2025, not dry |")
    assert [int(r[1]) for r in rows] == [r["round"] for r in races]
    for (name, _round, gap, spearman), race in zip(rows, races, strict=True):
        m = race["stage1"]["model"]
        assert [gap, spearman] == [_fmt(m["gap_pct_mae"]), _fmt(m["spearman"])], name


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


def test_the_pole_sitters_share_of_wins_is_the_reports() -> None:
    """2025's pole-sitters against the seasons the model was fitted on, and the backtests'
    favourite against the pole-sitter."""
    share = _evaluation()["stage2"]["pole_win_share"]
    by = share["by_fit_season"]
    low, high = min(by, key=by.__getitem__), max(by, key=by.__getitem__)
    assert (
        f"Pole-sitters won {_pct(share['test'])} of its races, against {_pct(share['fit_seasons'])} "
        f"in 2014-2024 (from {_pct(by[low])} in {low} to {_pct(by[high])} in {high})" in TEXT
    )
    stage2 = {s: _report(s)["stage2"] for s in BACKTESTS}
    top1 = {
        s: (s2["test"]["top1"], s2["baselines"]["pole_sitter"]["test"]["top1"])
        for s, s2 in stage2.items()
    }
    at_least = [s for s, (m, p) in top1.items() if m >= p]
    more = [s for s, (m, p) in top1.items() if m > p]
    (worse,) = set(BACKTESTS) - set(at_least)
    m, p = top1[worse]
    assert (
        f"Its favourite won at least as often as the pole-sitter in {_of(len(at_least), 9)} "
        f"backtests (more often in {WORDS[len(more)]}). The exception is {worse} "
        f"({_fmt(m)} against {_fmt(p)})" in TEXT
    )
    pole = [p for _m, p in top1.values()]
    assert f"more often than in any backtested season ({_fmt(min(pole))}-{_fmt(max(pole))})" in TEXT


@pytest.mark.parametrize("season", BACKTESTS)
def test_the_backtest_table_is_each_backtest_report(season: int) -> None:
    ev = _report(season)
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
    cells = [_slashed(c) for c in _by_season("| season | gap MAE %: model /")[season]]
    assert cells == [[_fmt(v) for v in group] for group in want]


@pytest.mark.parametrize("season", [*BACKTESTS, 2025])
def test_the_backtest_resample_table_is_each_report(season: int) -> None:
    ev = _report(season)
    gap = ev["stage1"]["intervals"]["metrics"]["gap_pct_mae"]["vs"]["practice_ratio"]
    s2 = ev["stage2"]["intervals"]
    want = [
        gap["better_share"],
        s2["test"]["metrics"]["winner_log_loss"]["vs"]["logistic_grid"]["better_share"],
        s2["test_chained"]["metrics"]["winner_log_loss"]["vs"]["logistic_grid"]["better_share"],
    ]
    assert _by_season("| season, model better in |")[season] == [_pct(v) for v in want]


@pytest.mark.parametrize("season", [*BACKTESTS, None])
def test_the_weekend_ahead_table_is_the_reports(season: int | None) -> None:
    ev = _report(season)
    s1, s2 = ev["stage1"]["before_practice"], ev["stage2"]["before_practice"]
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
    cells = [_slashed(c) for c in _by_season("| season, a weekend ahead |")[season or 2025]]
    assert cells == [[_fmt(v) for v in group] for group in want]


def test_what_the_weekend_ahead_table_says_is_counted_from_the_reports() -> None:
    ahead = [_report(s) for s in [*BACKTESTS, 2025]]
    s1 = [e["stage1"]["before_practice"] for e in ahead]
    s2 = [e["stage2"]["before_practice"] for e in ahead]
    gap = sum(a["model"]["gap_pct_mae"] < a["baselines"]["recent_form"]["gap_pct_mae"] for a in s1)
    rho = sum(a["model"]["spearman"] > a["baselines"]["recent_form"]["spearman"] for a in s1)
    assert (
        f"beats the recent-form rule on gap MAE in {_of(gap, 10)} seasons, and on Spearman "
        f"in {WORDS[rho]}" in TEXT
    )
    drop = [a["without_form_model"]["gap_pct_mae"] - a["model"]["gap_pct_mae"] for a in s1]
    assert f"Its gap MAE is {min(drop):.2f} to {max(drop):.2f} percentage points lower" in TEXT
    ll = [(a["without_form_model"]["winner_log_loss"], a["model"]["winner_log_loss"]) for a in s2]
    better = sum(m < w for w, m in ll)
    assert (
        f"The mean winner log loss over the ten seasons is "
        f"{_fmt(statistics.mean(w for w, _ in ll))} without and "
        f"{_fmt(statistics.mean(m for _, m in ll))} with. It is better in {WORDS[better]}" in TEXT
    )
    beats = sum(
        a["model"]["winner_log_loss"] < a["baselines"]["logistic_grid"]["winner_log_loss"]
        for a in s2
    )
    assert f"It beats the logistic on the same grid in {_of(beats, 10)}" in TEXT


@pytest.mark.parametrize("season", [*BACKTESTS, None])
def test_the_pole_odds_table_is_the_reports(season: int | None) -> None:
    pole = _report(season)["stage1"]["pole"]
    base = {k: v["test"] for k, v in pole["baselines"].items()}
    ahead = pole["before_practice"]
    want = [
        [pole["test"]["log_loss"]]
        + [base[k]["log_loss"] for k in ("uniform", "practice_ratio", "quick_lgbm_gap")],
        [pole["test"]["top1"]] + [base[k]["top1"] for k in ("practice_ratio", "quick_lgbm_gap")],
        [ahead["test"]["log_loss"], ahead["baselines"]["recent_form"]["test"]["log_loss"]],
    ]
    cells = [_slashed(c) for c in _by_season("| season, pole odds |")[season or 2025]]
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
    """The API page and the "Cars retire" section quote the share of starters classified
    that the served and evaluated Stage-2 uses (both fitted with the same tuning seasons)."""
    s2 = _evaluation()["stage2"]
    rate = s2["podium"]["finish_rate"]
    assert (
        rate
        == s2["points"]["finish_rate"]
        == _evaluation()["tuning"]["chosen"]["stage2"]["finish_rate"]
    )
    assert f"({_fmt(rate)} for the served model" in TEXT
    assert f"It is measured, not tuned: {_fmt(rate)} for 2025 and the served model" in TEXT


def test_the_cars_retire_table_is_the_reports() -> None:
    """Per season: podium log loss every car classified -> cars retire, the grid slot's,
    and the points' against the grid slot's; and the counts said under the table."""
    rows = _by_season("| season, cars retire |")
    assert list(rows) == [*BACKTESTS, 2025]
    better = {"test": 0, "test_chained": 0}
    beat: dict[tuple[str, str], set[int]] = {}
    for season, (podium, slot, points) in rows.items():
        s2 = _report(season)["stage2"]
        pod, pts = s2["podium"], s2["points"]
        every = pod["baselines"]["every_car_classified"]
        assert [podium, slot, points] == [
            f"{_fmt(every['test']['log_loss'])} -> {_fmt(pod['test']['log_loss'])}",
            _fmt(pod["baselines"]["grid_slot"]["test"]["log_loss"]),
            f"{_fmt(pts['test']['log_loss'])} / "
            f"{_fmt(pts['baselines']['grid_slot']['test']['log_loss'])}",
        ], season
        if season != 2025:
            for which in better:
                better[which] += pod[which]["log_loss"] < every[which]["log_loss"]
        for what in ("podium", "points"):
            model, by_slot = s2[what]["test"], s2[what]["baselines"]["grid_slot"]["test"]
            for k in ("brier", "log_loss"):
                if model[k] < by_slot[k]:
                    beat.setdefault((what, k), set()).add(season)
                elif season == 2025 and what == "points":
                    assert 0.0015 <= model[k] - by_slot[k] < 0.0045, k  # "0.002-0.004"
    assert (
        f"The podium odds got better after qualifying in {_of(better['test'], 9)} backtests, "
        f"and before qualifying in {_of(better['test_chained'], 9)}." in TEXT
    )
    seasons = set(rows)
    assert beat[("podium", "log_loss")] == seasons  # "by log loss in every season"
    assert beat[("podium", "brier")] == seasons - {2024}  # "by Brier in all but 2024"
    assert beat[("points", "log_loss")] == beat[("points", "brier")] == seasons - {2025}
    said = [
        "The podium odds now beat the grid slot's rate by log loss in every season, and by "
        "Brier in all but 2024.",
        "The points odds beat it by both in every backtest. In 2025 the grid slot is ahead by "
        "0.002-0.004, by Brier and log loss.",
    ]
    assert all(s in TEXT for s in said)


def test_the_points_odds_before_cars_could_retire_are_the_report() -> None:
    """ "barely better than a coin. In 2025 their log loss was X per starter, against 0.693
    for even odds on every car and Y for the grid slot's rate": the baseline kept for it."""
    points = _evaluation()["stage2"]["points"]
    every = points["baselines"]["every_car_classified"]["test"]["log_loss"]
    slot = points["baselines"]["grid_slot"]["test"]["log_loss"]
    assert slot < every < math.log(2) < every + 0.05  # "barely better than a coin"
    assert (
        f"In 2025 their log loss was {_fmt(every)} per starter, against {_fmt(math.log(2))} "
        f"for even odds on every car and {_fmt(slot)} for the grid slot's rate" in TEXT
    )


def test_the_hindsight_table_is_the_reports() -> None:
    """`f1 evaluate`'s forecast beside `f1 hindsight`'s bound and its in-sample answers."""
    h = json.loads((REPORTS / "hindsight.json").read_text())
    assert h["season"] == _evaluation()["protocol"]["test_season"]
    sources = [_evaluation(), h, h["served_in_sample"]]
    rows = _table("| 2025, asked of |")
    assert len(rows) == len(sources)
    for (name, *cells), src in zip(rows, sources, strict=True):
        s1, s2 = src["stage1"]["test"], src["stage2"]
        want = [
            s1["gap_pct_mae"],
            s1["spearman"],
            s2["test"]["winner_log_loss"],
            s2["test"]["top1"],
            s2["test_chained"]["winner_log_loss"],
        ]
        assert cells == [_fmt(v) for v in want], name


def test_the_hindsight_grid_table_quotes_the_models_log_loss_from_the_reports() -> None:
    rows = _by_season("| season, hindsight grid fit |")
    assert list(rows) == [*BACKTESTS, 2025]
    for season, (model, _grid_fit) in rows.items():
        assert model == _fmt(_report(season)["stage2"]["test"]["winner_log_loss"]), season


def test_the_season_so_far_table_ends_at_the_reports() -> None:
    """The "after" side of each season and the nine backtests' means."""
    rows = _by_season("| season, learning from the season |")
    assert list(rows) == [*BACKTESTS, 2025]
    for season, cells in rows.items():
        ev = _report(season)
        want = [
            ev["stage1"]["test"]["gap_pct_mae"],
            ev["stage1"]["test"]["spearman"],
            ev["stage2"]["test_chained"]["winner_log_loss"],
        ]
        assert [_after(c) for c in cells] == [_fmt(v) for v in want], season
    ev = [_report(s) for s in BACKTESTS]
    mean = {
        "gap": statistics.mean(e["stage1"]["test"]["gap_pct_mae"] for e in ev),
        "rho": statistics.mean(e["stage1"]["test"]["spearman"] for e in ev),
        "ll": statistics.mean(e["stage2"]["test_chained"]["winner_log_loss"] for e in ev),
    }
    assert f"The mean goes 0.7779 -> {mean['gap']:.4f} %." in TEXT
    assert f"Spearman is higher in five; the mean goes 0.8065 -> {mean['rho']:.4f}." in TEXT
    assert f"the mean goes 1.510 -> {_fmt(mean['ll'])}." in TEXT


def test_the_rules_lean_table_is_the_backtest_reports() -> None:
    """The first four races under new rules, without the lean / with it / the logistic,
    and the count of cells the lean lowers."""
    rows = _by_season("| season, first four races under new rules |")
    assert list(rows) == [2009, 2014, 2017, 2022]
    lowered = 0
    for season, cells in rows.items():
        lean = _report(season)["stage2"]["rules_reset"]
        for cell, which in zip(cells, ("test", "test_chained"), strict=True):
            r = lean[which]
            want = [r[k]["winner_log_loss"] for k in ("without_reset", "model", "logistic_grid")]
            assert _slashed(cell) == [_fmt(v) for v in want], (season, which)
            lowered += r["model"]["winner_log_loss"] < r["without_reset"]["winner_log_loss"]
    assert f"Today the lean lowers the winner log loss in {_of(lowered, 8)} cells." in TEXT


def test_the_first_race_under_new_rules_table_is_the_backtest_reports() -> None:
    rows = _by_season("| season, first race under new rules |")
    assert list(rows) == [2009, 2014, 2017, 2022]
    for season, cells in rows.items():
        s1 = _report(season)["stage1"]["new_rules"]
        served, main = s1["served"], s1["main_ensemble"]
        assert [_slashed(c) for c in cells] == [
            [_fmt(served[k]), _fmt(main[k])] for k in ("gap_pct_mae", "spearman")
        ], season


def test_the_new_team_table_is_the_reports() -> None:
    rows = _by_season("| season, a new team |")
    assert list(rows) == [2014, 2017, 2022, 2025]
    for season, (gap, shift) in rows.items():
        new = _report(season)["stage1"]["new_team"]
        plain = new["fitted_without_blanked_teams"]
        assert _slashed(gap) == [
            _fmt(new["as_they_are"]["gap_pct_mae"]),
            _fmt(plain["as_they_are"]["gap_pct_mae"]),
        ], season
        assert _slashed(shift) == [
            f"{new['mean_shift_pct']:+.2f}",
            f"{plain['mean_shift_pct']:+.2f}",
        ]
    new = _evaluation()["stage1"]["new_team"]
    plain = new["fitted_without_blanked_teams"]
    assert (
        f"put those cars {_fmt(plain['mean_shift_pct'])} % further back than the same cars with "
        f"their form (gap MAE {_fmt(plain['without_team_form']['gap_pct_mae'])} % against "
        f"{_fmt(plain['as_they_are']['gap_pct_mae'])} %)" in TEXT
    )
    assert (
        f"blanking every car's team form gives a gap MAE of "
        f"{_fmt(new['without_team_form']['gap_pct_mae'])} % against "
        f"{_fmt(new['as_they_are']['gap_pct_mae'])} %" in TEXT
    )


def test_the_weekend_ahead_pole_figures_are_the_reports() -> None:
    """The pole-lap MAE a weekend ahead, before -> now for each season (the "now" read from
    the reports: `stage1.before_practice.pole_mae_s`), and 2025's every-car MAE."""
    rows = _by_season("| season, pole lap a weekend ahead |")
    assert list(rows) == [*BACKTESTS, 2025]
    for season, (cell,) in rows.items():
        before, now = (float(v) for v in cell.split("->"))
        assert _after(cell) == _fmt(_report(season)["stage1"]["before_practice"]["pole_mae_s"])
        assert now < before, season  # "lower in all ten seasons"
    model = _evaluation()["stage1"]["before_practice"]["model"]
    assert (
        f"MAE 2.658 -> {_fmt(model['mae_s'])} s, dry events 0.870 -> "
        f"{_fmt(model['mae_dry_s'])} s" in TEXT
    )
