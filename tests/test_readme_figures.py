"""The quality figures of the README and docs/*.md say what the committed reports say.

Every figure they quote from `f1 evaluate`, `f1 backtest` or `f1 hindsight` is read here
from reports/*.json (or the targets of reports/evaluation.md); a report regenerated without
the docs (or the other way round) fails here, naming the row and the column. Figures in
prose are checked as those in tables. Counts said in words ("in seven of nine backtests")
and the seasons named beside them are counted from the reports too. The committed 2025
evaluation and 2009 backtest are in turn checked against what the code writes now
(tests/training/test_committed_reports.py, test_backtest.py).
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
from training.report import S1_KEYS, S1_TARGETS, S2_KEYS

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


def _by(a: float, b: float) -> str:
    """How much a is above b, as the docs say it beside the two figures: the difference
    of the figures as shown (1.455 against 1.446 is "by 0.009")."""
    return _fmt(float(_fmt(a)) - float(_fmt(b)))


def _pct(share: float) -> str:
    return f"{100 * share:.0f} %"


def _of(n: int, total: int) -> str:
    """A count as the docs say it: "all nine", "seven of nine"."""
    return f"all {WORDS[total]}" if n == total else f"{WORDS[n]} of {WORDS[total]}"


def _listed(items: list[Any]) -> str:
    """Items as the docs list them: "2014", "2014 and 2017", "2009, 2024 and 2025"."""
    words = [str(i) for i in items]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _bullet(start: str) -> str:
    """The one bullet of the docs that begins so (bold-led bullets: up to the next)."""
    assert TEXT.count(f"- {start}") == 1, start
    at = TEXT.index(f"- {start}")
    end = TEXT.find(" - **", at + 2)
    return TEXT[at : end if end >= 0 else None]


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


def _target(text: str) -> tuple[str, float]:
    """A target as its sign and figure: "<= 0.45" and "≤ 0.45" -> ("≤", 0.45),
    ">= pole-sitter (0.667)" -> ("≥", 0.667)."""
    sign = text.split(" ")[0].replace("<=", "≤").replace(">=", "≥")
    return sign, float(re.findall(r"\d+\.\d+", text)[-1])


def _target_fig(v: float) -> str:
    """A target's figure as the docs write it: 0.4 -> "0.40", 0.667 -> "0.667"."""
    return f"{v:.2f}" if round(v, 2) == v else f"{v:.3f}"


def _meets(v: float, sign: str, goal: float) -> bool:
    return {"≤": v <= goal, "≥": v >= goal, "<": v < goal}[sign]


TARGET_VALUES = {
    "stage-1 gap_pct_mae": ("stage1", "test", "gap_pct_mae"),
    "stage-1 mae_dry_s": ("stage1", "test", "mae_dry_s"),
    "stage-1 spearman": ("stage1", "test", "spearman"),
    "stage-2 winner_log_loss": ("stage2", "test", "winner_log_loss"),
    "stage-2 winner_log_loss before qualifying": ("stage2", "test_chained", "winner_log_loss"),
    "stage-2 top1": ("stage2", "test", "top1"),
}
"""Where each row of the report's "Targets" table reads its figure."""


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
    season, dry, events = s1["season"], s1["dry_events"], s1["events"]
    said = [
        f"on the {dry} dry events the gap target is met and Spearman is above its target "
        f"(gap MAE {_fmt(gap)} %, Spearman {_fmt(rho)}). What misses them is the "
        f"{WORDS[events - dry]} sessions slower than practice",
        f'"Dry" columns hold the {dry} of {events} events whose pole lap beat',
        f"The {WORDS[events - dry]} other events hold the shortfall",
        f"({dry} of {events} events in {season})",
    ]
    assert [s for s in said if s not in TEXT] == []


def test_the_targets_met_and_missed_are_the_evaluation_reports() -> None:
    """The "Met" and "Not met" bullets: each target where the report puts it, with the
    report's figure (and the margin of the one relative target); hindsight misses the
    same targets as the forecast."""
    ev = _evaluation()
    s2, logistic = ev["stage2"], ev["stage2"]["baselines"]["logistic_grid"]
    margin = _by(logistic["test_chained"]["winner_log_loss"], s2["test_chained"]["winner_log_loss"])
    phrases = {
        "stage-1 gap_pct_mae": "the gap MAE ({} {} %)",
        "stage-1 mae_dry_s": "the dry-session MAE ({} {} s)",
        "stage-1 spearman": "Spearman ({} {})",
        "stage-2 winner_log_loss": "the log loss after qualifying ({} {})",
        "stage-2 winner_log_loss before qualifying": "the log loss before qualifying (below "
        f"the logistic on Stage-1's grid, by {margin})",
        "stage-2 top1": "top-1 ({} the pole-sitter's {})",
    }
    report = _targets_of_the_evaluation_report()
    assert list(report) == list(phrases)
    bullets = {"yes": _bullet("**Met:**"), "no": _bullet("**Not met:**")}
    missed = []
    for row, (target, _reached, _interval, met) in report.items():
        sign, goal = _target(target)
        phrase = phrases[row].format(sign, _target_fig(goal))
        assert phrase in bullets[met], row
        assert phrase not in bullets["yes" if met == "no" else "no"], row
        if met == "no":
            missed.append((row, sign, goal))
    hindsight = json.loads((REPORTS / "hindsight.json").read_text())
    for row, sign, goal in missed:
        stage, block, k = TARGET_VALUES[row]
        assert not _meets(hindsight[stage][block][k], sign, goal), row
    figs = [_target_fig(goal) + (" %" if "gap" in row else "") for row, _sign, goal in missed]
    season = ev["protocol"]["test_season"]
    assert f"Hindsight does not reach {season}'s targets either ({_listed(figs)})." in TEXT
    _sign, goal = _target(report["stage-2 winner_log_loss"][0])
    assert (
        f"Nor does hindsight reach {season}'s target of {_target_fig(goal)} from the grid." in TEXT
    )


def test_the_wettest_seasons_figure_is_its_backtest_report() -> None:
    """ "wet or disrupted qualifying (2014: pole-lap MAE 3.2 s)": the backtest whose
    pole-lap MAE is the largest."""
    pole = {s: _report(s)["stage1"]["pole_mae_s"] for s in BACKTESTS}
    worst = max(pole, key=pole.__getitem__)
    assert f"({worst}: pole-lap MAE {pole[worst]:.1f} s)" in TEXT


def test_the_backtest_targets_the_readme_sums_up_are_met_in_every_backtest() -> None:
    """ "In all nine backtests (2009-2024) the model beats the practice-ratio rule on gap
    MAE and the logistic on the grid on winner log loss" (after qualifying and before)."""
    met = [all(ok for *_, ok in targets(_report(s))) for s in BACKTESTS]
    assert f"In {_of(sum(met), len(BACKTESTS))} backtests (2009-2024) the model beats" in TEXT


def test_what_the_backtests_and_2025_say_together_is_counted_from_the_reports() -> None:
    """The bullets under the backtest table: the lowest gap MAE, the logistic beaten, and
    the cells where the quick LightGBM beats the model (and by how much after qualifying)."""
    seasons = [*BACKTESTS, 2025]
    lowest = beats = 0
    quick: dict[str, list[int]] = {"test": [], "test_chained": []}
    for season in seasons:
        s1, s2 = _report(season)["stage1"], _report(season)["stage2"]
        gap = s1["test"]["gap_pct_mae"]
        lowest += all(gap < b["test"]["gap_pct_mae"] for b in s1["baselines"].values())
        ll = {w: s2[w]["winner_log_loss"] for w in quick}
        grid = s2["baselines"]["logistic_grid"]
        beats += all(ll[w] < grid[w]["winner_log_loss"] for w in quick)
        for w in quick:
            if s2["baselines"]["quick_lgbm"][w]["winner_log_loss"] < ll[w]:
                quick[w].append(season)
    n = len(seasons)
    assert f"The model has the lowest gap MAE in {_of(lowest, n)}." in TEXT
    assert (
        f"It beats the logistic on the grid in {_of(beats, n)}, after qualifying and before."
        in TEXT
    )
    (after,) = quick["test"]
    s2 = _report(after)["stage2"]
    by = _by(
        s2["test"]["winner_log_loss"], s2["baselines"]["quick_lgbm"]["test"]["winner_log_loss"]
    )
    cells = len(quick["test"]) + len(quick["test_chained"])
    assert (
        f"The quick LightGBM on grid + form beats it in {WORDS[cells]} cells: "
        f"{_listed(quick['test_chained'])} before qualifying, and {after} after (by {by})." in TEXT
    )


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


def test_the_wet_events_share_of_the_gap_error_is_the_evaluation_reports() -> None:
    """ "Las Vegas alone is a quarter of the gap error": the event that was not dry with
    the largest gap MAE, its share of the season's (events weighted alike), said as the
    nearest simple fraction."""
    races = _evaluation()["races"]
    wettest = max(
        (r for r in races if not r["dry"]), key=lambda r: r["stage1"]["model"]["gap_pct_mae"]
    )
    total = sum(r["stage1"]["model"]["gap_pct_mae"] for r in races)
    share = wettest["stage1"]["model"]["gap_pct_mae"] / total
    fractions = {"a half": 1 / 2, "a third": 1 / 3, "a quarter": 1 / 4, "a fifth": 1 / 5}
    said = min(fractions, key=lambda f: abs(share - fractions[f]))
    (name,) = [r[0] for r in _table("| 2025, not dry |") if int(r[1]) == wettest["round"]]
    assert f"Wet qualifying holds the shortfall: {name} alone is {said} of the gap error." in TEXT
    assert f"{name}, qualified in the wet, is alone {said} of the season's gap error." in TEXT


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
    s2 = _evaluation()["stage2"]
    races, season = s2["test"]["races"], _evaluation()["protocol"]["test_season"]
    assert share["test"] > max(pole)
    assert (
        f"{season}'s pole-sitters won {round(share['test'] * races)} of {races} races, more "
        f"often than in any backtested season ({_fmt(min(pole))}-{_fmt(max(pole))})." in TEXT
    )
    model, by_pole = s2["test"]["top1"], s2["baselines"]["pole_sitter"]["test"]["top1"]
    assert by_pole > model
    assert (
        f"So in {season} the pole-sitter's top-1 ({_fmt(by_pole)}) is above the model's "
        f"({_fmt(model)})." in TEXT
    )


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
    seasons = [*BACKTESTS, 2025]
    ahead = [_report(s) for s in seasons]
    s1 = [e["stage1"]["before_practice"] for e in ahead]
    s2 = [e["stage2"]["before_practice"] for e in ahead]
    gap = sum(a["model"]["gap_pct_mae"] < a["baselines"]["recent_form"]["gap_pct_mae"] for a in s1)
    not_rho = [
        s
        for s, a in zip(seasons, s1, strict=True)
        if not a["model"]["spearman"] > a["baselines"]["recent_form"]["spearman"]
    ]
    assert (
        f"beats the recent-form rule on gap MAE in {_of(gap, 10)} seasons, and on Spearman "
        f"in {WORDS[10 - len(not_rho)]} (not {_listed(not_rho)})." in TEXT
    )
    drop = [a["without_form_model"]["gap_pct_mae"] - a["model"]["gap_pct_mae"] for a in s1]
    assert f"Its gap MAE is {min(drop):.2f} to {max(drop):.2f} percentage points lower" in TEXT
    ll = [(a["without_form_model"]["winner_log_loss"], a["model"]["winner_log_loss"]) for a in s2]
    worse = [s for s, (w, m) in zip(seasons, ll, strict=True) if not m < w]
    assert (
        f"The mean winner log loss over the ten seasons is "
        f"{_fmt(statistics.mean(w for w, _ in ll))} without and "
        f"{_fmt(statistics.mean(m for _, m in ll))} with. It is better in "
        f"{WORDS[10 - len(worse)]}, and worse in {_listed(worse)}." in TEXT
    )
    grid = {
        s: (a["model"]["winner_log_loss"], a["baselines"]["logistic_grid"]["winner_log_loss"])
        for s, a in zip(seasons, s2, strict=True)
    }
    (lost,) = [s for s, (m, g) in grid.items() if not m < g]
    assert (
        f"It beats the logistic on the same grid in {_of(len(grid) - 1, len(grid))} (not {lost}, by "
        f"{_by(*grid[lost])})." in TEXT
    )


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


def test_what_the_pole_odds_table_says_is_counted_from_the_reports() -> None:
    """The temperatures chosen for the served model, and the bullets under the table."""
    ev = _evaluation()
    pole = ev["stage1"]["pole"]
    folds = ev["tuning"]["stage2_folds"]
    assert f"({folds[0]}-{folds[-1]} for the served model: {pole['temperature']:g})" in TEXT
    assert f"chosen the same way ({pole['temperature_ahead']:g} for the served model)" in TEXT
    seasons = [*BACKTESTS, 2025]
    odds = {s: _report(s)["stage1"]["pole"] for s in seasons}

    def base(s: int, k: str, what: str = "log_loss") -> float:
        return float(odds[s]["baselines"][k]["test"][what])

    def model(s: int, what: str = "log_loss") -> float:
        return float(odds[s]["test"][what])

    assert all(model(s) < base(s, "uniform") for s in seasons)
    assert "Before qualifying the odds beat an even chance in every season." in TEXT
    not_ratio = [s for s in seasons if not model(s) < base(s, "practice_ratio")]
    assert (
        f"They beat the practice-ratio rule's gaps in {_of(len(seasons) - len(not_ratio), 10)} "
        f"(not {_listed(not_ratio)})." in TEXT
    )
    quick = [s for s in seasons if base(s, "quick_lgbm_gap") < model(s)]
    new_rules = {
        int(r[0].split(" ")[0]) for r in _table("| season, pole odds |") if "new rules" in r[0]
    }
    assert set(quick) <= new_rules
    assert (
        f"The quick LightGBM's gaps give better odds in {WORDS[len(quick)]} seasons, "
        f"{_listed(quick)}, both under new rules." in TEXT
    )
    top1 = {s: model(s, "top1") for s in BACKTESTS}
    low, high = min(top1, key=top1.__getitem__), max(top1, key=top1.__getitem__)
    test = ev["protocol"]["test_season"]
    ratio = base(test, "practice_ratio", "top1")
    assert model(test, "top1") < ratio
    assert (
        f"The car the model makes favourite took pole at {_fmt(top1[low])} ({low}) to "
        f"{_fmt(top1[high])} ({high}) of a season's events. In {test} it took "
        f"{_fmt(model(test, 'top1'))}, below the practice-ratio rule's favourite "
        f"({_fmt(ratio)})." in TEXT
    )
    ahead = {
        s: (
            p["before_practice"]["test"]["log_loss"],
            p["before_practice"]["baselines"]["recent_form"]["test"]["log_loss"],
        )
        for s, p in odds.items()
    }
    lost = [s for s, (m, form) in ahead.items() if not m < form]
    assert (
        f"the odds beat each driver's recent qualifying gap through the same temperature in "
        f"{WORDS[len(seasons) - len(lost)]} seasons of {WORDS[len(seasons)]} "
        f"(not {_listed(lost)})." in TEXT
    )
    (blind,) = [s for s, (m, form) in ahead.items() if min(m, form) > base(s, "uniform")]
    m, form = ahead[blind]
    assert (
        f"At {blind}'s events, a weekend ahead, neither beats an even chance ({_fmt(m)} and "
        f"{_fmt(form)} against {_fmt(base(blind, 'uniform'))})." in TEXT
    )


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


VERSUS = re.compile(r"(.+?) ([+-]\d\.\d{3}) \[([+-]\d\.\d{3}), ([+-]\d\.\d{3})\], (\d+ %)")
"""One "model - baseline [90 %], model better in" entry: "logistic -0.047 [-0.225, +0.132], 65 %"."""
VERSUS_NAMES = {
    "quick LightGBM": "quick_lgbm",
    "quick LightGBM on Stage-1's grid": "quick_lgbm",
    "logistic": "logistic_grid",
    "pole-sitter": "pole_sitter",
    "practice ratio": "practice_ratio",
    "uniform": "uniform",
}


def test_the_how_sure_table_is_the_evaluation_report() -> None:
    """Each row's model, interval and target as the report has them, and its paired
    differences: the best baseline's first (and the target's baseline, when the target
    names one), each with its interval and share of resamples."""
    ev = _evaluation()
    s1, s2 = ev["stage1"], ev["stage2"]
    s1i, s2i = s1["intervals"]["metrics"], s2["intervals"]
    b1 = {k: v["test"] for k, v in s1["baselines"].items()}
    after = {k: v["test"] for k, v in s2["baselines"].items()}
    before = {k: v["test_chained"] for k, v in s2["baselines"].items()}
    sources = {  # row -> (intervals, baselines, metric, higher is better, report's target row)
        "gap-to-pole MAE %": (s1i["gap_pct_mae"], b1, "gap_pct_mae", False, "stage-1 gap_pct_mae"),
        "Spearman": (s1i["spearman"], b1, "spearman", True, "stage-1 spearman"),
        "log loss after quali": (
            s2i["test"]["metrics"]["winner_log_loss"],
            after,
            "winner_log_loss",
            False,
            "stage-2 winner_log_loss",
        ),
        "top-1 after quali": (
            s2i["test"]["metrics"]["top1"],
            after,
            "top1",
            True,
            "stage-2 top1",
        ),
        "log loss before quali": (
            s2i["test_chained"]["metrics"]["winner_log_loss"],
            before,
            "winner_log_loss",
            False,
            "stage-2 winner_log_loss before qualifying",
        ),
    }
    report = _targets_of_the_evaluation_report()
    rows = _table("| 2025 | model | 90 % interval |")
    assert [r[0] for r in rows] == list(sources)
    for name, model, band, target, versus in rows:
        src, baselines, k, higher, target_row = sources[name]
        lo, hi = src["interval"]
        assert (model, band) == (_fmt(src["model"]), f"{_fmt(lo)}-{_fmt(hi)}"), name
        assert _target(target) == _target(report[target_row][0]), name
        entries = [VERSUS.fullmatch(e) for e in versus.split("; ")]
        assert all(entries), (name, versus)
        keys = [VERSUS_NAMES[m[1]] for m in entries if m]
        keys = [key if key in src["vs"] else f"{key}_gap" for key in keys]
        scored = {b: v[k] for b, v in baselines.items() if _fmt(v[k]) != "inf"}
        assert keys[0] == (max if higher else min)(scored, key=lambda b: scored[b]), name
        if "logistic" in report[target_row][0]:
            assert "logistic_grid" in keys, name
        for m, key in zip(entries, keys, strict=True):
            assert m is not None
            vs = src["vs"][key]
            want = [f"{vs['diff']:+.3f}", *(f"{v:+.3f}" for v in vs["interval"])]
            assert [*m.groups()[1:]] == [*want, _pct(vs["better_share"])], (name, key)
    how = s1["intervals"]
    assert (
        f"Resampling the season's events ({how['resamples']} times, seed {how['seed']}) gives "
        f"{_pct(how['level'])} intervals." in TEXT
    )
    gap, rho = (s1i[k]["vs"]["quick_lgbm_gap"]["better_share"] for k in ("gap_pct_mae", "spearman"))
    assert (
        f"In {ev['protocol']['test_season']} the model beats the quick LightGBM's gap MAE in "
        f"{_pct(gap)} of resamples, and its Spearman in {_pct(rho)}." in TEXT
    )


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
    beats = sum(float(model) < float(grid_fit) for model, grid_fit in rows.values())
    assert f"beats that season's hindsight grid fit in {_of(beats, len(rows))}:" in TEXT


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
    said = [  # (column, the after side lower?, the count said)
        (0, True, r"The gap MAE is lower in (\w+) \(the other (\w+) by under 0\.001"),
        (1, False, r"Spearman is higher in (\w+); the mean goes"),
        (2, True, r"The winner log loss before qualifying is lower in (\w+); the mean"),
    ]
    for i, lower, pattern in said:
        found = re.search(pattern, TEXT)
        assert found, pattern
        pairs = [(float(rows[s][i].split("->")[0]), float(_after(rows[s][i]))) for s in BACKTESTS]
        moved = sum((a < b) if lower else (a > b) for b, a in pairs)
        ties = sum(a == b for b, a in pairs)  # at three decimals: either way
        assert moved <= WORDS.index(found[1]) <= moved + ties, pattern
        if i == 0:
            assert WORDS.index(found[1]) + WORDS.index(found[2]) == len(BACKTESTS)
    last = re.search(r"by under 0\.001; (\d{4}) is \d\.\d{4} -> (\d\.\d{4})\)", TEXT)
    assert last, "the gap MAE of a season that barely moved"
    assert last[2] == f"{_report(int(last[1]))['stage1']['test']['gap_pct_mae']:.4f}"
    assert f"The mean goes 0.7779 -> {mean['gap']:.4f} %." in TEXT
    assert f"the mean goes 0.8065 -> {mean['rho']:.4f}." in TEXT
    assert f"the mean goes 1.510 -> {_fmt(mean['ll'])}." in TEXT
    pole = re.search(r"higher in \w+ \((\d{4}) \d\.\d{3} -> (\d\.\d{3})\)", TEXT)
    assert pole, "the pole odds' move"
    assert pole[2] == _fmt(_report(int(pole[1]))["stage1"]["pole"]["test"]["log_loss"])


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
    worse = [
        s
        for s in rows
        if all(
            r["model"]["winner_log_loss"] > r["without_reset"]["winner_log_loss"]
            for r in (_report(s)["stage2"]["rules_reset"][w] for w in ("test", "test_chained"))
        )
    ]
    assert f"{_listed(worse)} is worse with it, after and before qualifying." in TEXT


def test_the_first_race_under_new_rules_table_is_the_backtest_reports() -> None:
    rows = _by_season("| season, first race under new rules |")
    assert list(rows) == [2009, 2014, 2017, 2022]
    better = 0
    for season, cells in rows.items():
        s1 = _report(season)["stage1"]["new_rules"]
        served, main = s1["served"], s1["main_ensemble"]
        assert [_slashed(c) for c in cells] == [
            [_fmt(served[k]), _fmt(main[k])] for k in ("gap_pct_mae", "spearman")
        ], season
        better += served["gap_pct_mae"] < main["gap_pct_mae"]
        better += served["spearman"] > main["spearman"]
    assert f"The practice-only ensemble is better in {_of(better, 2 * len(rows))} cells" in TEXT


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
    served = _evaluation()["stage1"]["test"]["gap_pct_mae"]
    assert (
        f"So its {_fmt(new['as_they_are']['gap_pct_mae'])} % is not the season's served "
        f"{_fmt(served)} %" in TEXT
    )


def test_the_weekend_ahead_pole_figures_are_the_reports() -> None:
    """The pole-lap MAE a weekend ahead, before -> now for each season (the "now" read from
    the reports: `stage1.before_practice.pole_mae_s`), and 2025's every-car MAE."""
    rows = _by_season("| season, pole lap a weekend ahead |")
    assert list(rows) == [*BACKTESTS, 2025]
    lower = 0
    for season, (cell,) in rows.items():
        before, now = (float(v) for v in cell.split("->"))
        assert _after(cell) == _fmt(_report(season)["stage1"]["before_practice"]["pole_mae_s"])
        lower += now < before
    assert f"to now, is lower in {_of(lower, len(rows))} seasons" in TEXT
    pole = {s: _report(s)["stage1"]["before_practice"]["pole_mae_s"] for s in rows}
    worst = max(pole, key=pole.__getitem__)
    assert (
        f"It is still far from the {_fmt(_evaluation()['stage1']['test']['mae_dry_s'])} s of a "
        f"forecast with practice, most of all in {worst} ({_fmt(pole[worst])} s)." in TEXT
    )
    model = _evaluation()["stage1"]["before_practice"]["model"]
    assert (
        f"MAE 2.658 -> {_fmt(model['mae_s'])} s, dry events 0.870 -> "
        f"{_fmt(model['mae_dry_s'])} s" in TEXT
    )


def test_the_model_info_example_quotes_the_evaluation_report() -> None:
    """docs/api.md's `/model_info` answer: the served models' held-out metrics are the
    evaluation's (`f1 train` stores the evaluation it reports)."""
    ev = _evaluation()
    season = ev["protocol"]["test_season"]
    text = " ".join(DOCS["docs/api.md"].split())

    def block(name: str, metrics: dict[str, Any], keys: list[str]) -> str:
        return f'"{name}": {{"season": {season}, ' + ", ".join(
            f'"{k}": {_fmt(metrics[k])}' for k in keys
        )

    s1, s2 = ev["stage1"], ev["stage2"]
    said = [
        block("test", s1["test"], S1_KEYS[1:6]) + ", ...}",
        block("test", s2["test"], S2_KEYS[1:]) + "}",
        block("test_chained", s2["test_chained"], S2_KEYS[1:]) + "}",
        f'"training_seasons": {json.dumps(ev["protocol"]["serving_fit_seasons"])}',
    ]
    assert [s for s in said if s not in text] == []


def test_the_stage2_losses_the_tuning_picked_are_the_reports() -> None:
    """ "The booster does when the tuning picks its per-race loss (six of the ten backtested
    and test seasons)"; for 2025 the per-driver one, and the linear part's weight."""
    chosen = {s: _report(s)["tuning"]["chosen"]["stage2"] for s in [*BACKTESTS, 2025]}
    per_race = [s for s, c in chosen.items() if c["objective"] == "race_softmax"]
    assert (
        f"when the tuning picks its per-race loss ({WORDS[len(per_race)]} of the "
        f"{WORDS[len(chosen)]} backtested and test seasons)" in TEXT
    )
    test = _evaluation()["tuning"]["chosen"]["stage2"]
    assert test["objective"] == "binary"  # "the tuning picked the per-driver booster"
    assert (
        f"For 2025 and the served model the tuning picked the per-driver booster, as before. "
        f"There the change is the linear part's (weight {1 - test['stack_weight']:g}) alone."
        in TEXT
    )
