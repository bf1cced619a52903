"""reports/evaluation.{json,md} and the two figures, from a training run's evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

S1_KEYS = ["season", "mae_s", "mae_dry_s", "median_ae_s", "gap_pct_mae", "spearman"]
S1_KEYS += ["gap_pct_mae_dry", "spearman_dry"]
S2_KEYS = ["season", "top1", "winner_log_loss", "brier"]
PODIUM_KEYS = ["season", "brier", "log_loss", "top3_hits"]
POINTS_KEYS = ["season", "brier", "log_loss", "top10_hits"]
POLE_KEYS = ["season", "events", "log_loss", "top1", "brier"]

S1_TARGETS = {"gap_pct_mae": 0.45, "mae_dry_s": 0.40, "spearman": 0.80}


def _json_safe(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_safe(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None  # JSON has no infinity; the markdown says "inf"
    if isinstance(v, np.generic):
        return _json_safe(v.item())
    return v


def fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.3f}"
    return str(v)


def _table(stage: dict[str, Any], keys: list[str], which: str = "test") -> list[str]:
    """Model and baselines, one row each, on the test season (``which``: "test", or
    "test_chained" for the forecast made before qualifying)."""
    lines = ["| predictor | " + " | ".join(keys[1:]) + " |", "|---|" + "---|" * (len(keys) - 1)]
    rows = [("**model**", stage[which])]
    rows += [(k, v[which]) for k, v in stage["baselines"].items() if which in v]
    for name, m in rows:
        lines.append(f"| {name} | " + " | ".join(fmt(m.get(k)) for k in keys[1:]) + " |")
    return lines


def _placings_elsewhere(s2: dict[str, Any]) -> list[str]:
    """The model's podium and points scores before qualifying and a weekend ahead."""
    out = []
    for what in ("podium", "points"):
        block = s2.get(what) or {}
        for key, label in (
            ("test_chained", "before qualifying"),
            ("before_practice", "a weekend ahead"),
        ):
            m = block.get(key)
            m = m.get("model") if isinstance(m, dict) and "model" in m else m
            if m:
                out.append(
                    f"- {what}, {label}: Brier {fmt(m.get('brier'))}, log loss "
                    f"{fmt(m.get('log_loss'))}"
                )
    return out


def _span(seasons: Any) -> str:
    if isinstance(seasons, list | tuple) and len(seasons) == 2:
        return f"{seasons[0]}-{seasons[1]}" if seasons[0] != seasons[1] else str(seasons[0])
    return str(seasons)


def _folds(ev: dict[str, Any]) -> str:
    folds = ev.get("tuning", {}).get("stage2_folds") or []
    return ", ".join(str(f) for f in folds) if folds else "the validation season"


def _baseline_seasons(p: dict[str, Any]) -> str:
    b = p.get("baseline_seasons")
    if not b:
        return ""
    return (
        f"Baselines: the quick LightGBMs trained on {_span(b['early_stopped'])} and "
        f"early-stopped on {p.get('valid_season')} (as NOTES.md made them), the others "
        f"fitted on {_span(b['others'])}; all scored on the same rows as the model."
    )


def _iv(v: list[float] | None) -> str:
    return "n/a" if not v else f"[{v[0]:.3f}, {v[1]:.3f}]"


def _intervals(ev: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(title, intervals block) of each scored flow that has them."""
    s2 = ev.get("stage2", {}).get("intervals") or {}
    blocks = [
        ("stage-1", ev.get("stage1", {}).get("intervals")),
        ("stage-2 after qualifying", s2.get("test")),
        ("stage-2 before qualifying", s2.get("test_chained")),
    ]
    return [(title, b) for title, b in blocks if b]


def intervals_section(ev: dict[str, Any]) -> list[str]:
    """The "how sure" table: each metric's interval and paired differences to baselines."""
    blocks = _intervals(ev)
    if not blocks:
        return []
    first = blocks[0][1]
    lines = [
        "",
        f"## How sure: {first['level']:.0%} intervals",
        "",
        f"The season's events resampled with replacement ({first['resamples']} times, seed "
        f"{first['seed']}; `training/uncertainty.py`): each metric's interval, and the "
        "model's difference to each baseline on the same resamples (paired), with the share "
        "of resamples in which the model is better. A target or a baseline inside these "
        "intervals is within the luck of which races the season had.",
        "",
        "| metric | model | interval | model - baseline [interval], model better in |",
        "|---|---|---|---|",
    ]
    for title, block in blocks:
        for metric, rec in block["metrics"].items():
            vs = "; ".join(
                f"{name} {d['diff']:+.3f} {_iv(d['interval'])}, {d['better_share']:.0%}"
                for name, d in rec["vs"].items()
            )
            lines.append(
                f"| {title} {metric} | {fmt(rec['model'])} | {_iv(rec['interval'])} | {vs} |"
            )
    return lines


def _new_team_line(s1: dict[str, Any]) -> list[str]:
    """Stage-1 for a team without history (a new entrant), from ``new_team_check``."""
    nt = s1.get("new_team")
    if not nt:
        return []
    a, b = nt["as_they_are"], nt["without_team_form"]
    return [
        "",
        "A team without history (a new entrant: every car's team form blanked, as serving "
        f"leaves it): gap MAE {fmt(b['gap_pct_mae'])} % and Spearman {fmt(b['spearman'])}, "
        f"against {fmt(a['gap_pct_mae'])} % and {fmt(a['spearman'])} for the same cars as "
        f"they are; predicted gaps move by {nt['mean_shift_pct']:+.3f} % on average."
        + _plain_fit(nt.get("fitted_without_blanked_teams")),
    ]


def _new_rules_line(s1: dict[str, Any]) -> list[str]:
    """Stage-1 at the first race under new technical rules, from ``new_rules_check``."""
    nr = s1.get("new_rules") or {}
    if not nr.get("rows"):
        return []
    a, b = nr["served"], nr["main_ensemble"]
    rounds = ", ".join(str(r) for r in nr["rounds"])
    return [
        "",
        f"At the first race under new technical rules (round {rounds}) the cars with practice "
        "are forecast by the practice-only ensemble, their form being about cars that no "
        f"longer race: gap MAE {fmt(a['gap_pct_mae'])} % and Spearman {fmt(a['spearman'])} "
        f"there, against {fmt(b['gap_pct_mae'])} % and {fmt(b['spearman'])} by the main "
        "ensemble reading that form.",
    ]


def _plain_fit(nt: dict[str, Any] | None) -> str:
    if not nt:
        return ""
    a, b = nt["as_they_are"], nt["without_team_form"]
    return (
        " Fitted without blanked teams (`new_team_share` 0), the same settings give "
        f"{fmt(b['gap_pct_mae'])} % without team form against {fmt(a['gap_pct_mae'])} % as "
        f"they are, moving by {nt['mean_shift_pct']:+.3f} %."
    )


def _pole_line(s2: dict[str, Any], season: str) -> list[str]:
    """How much the scored season rewarded the pole-sitter, against the fitted seasons."""
    pw = s2.get("pole_win_share") or {}
    if pw.get("test") is None or pw.get("fit_seasons") is None:
        return []
    return [
        "",
        f"The pole-sitter won {pw['test']:.0%} of {season}'s races, against "
        f"{pw['fit_seasons']:.0%} in the seasons the model was fitted on"
        + _season_range(pw.get("by_fit_season") or {})
        + ".",
    ]


def _rules_reset_line(s2: dict[str, Any]) -> list[str]:
    """Stage-2 on the races it leans on the grid for, from ``rules_reset_check``."""
    rr = s2.get("rules_reset")
    if not rr:
        return []
    lean = (
        "Under new technical rules the win log-odds lean on a grid-only logit: a share of "
        f"{rr['reset_weight']:g} at the first race, falling linearly to none after "
        f"{rr['reset_races']:g} races."
    )
    parts = []
    for name, when in (("test", "after qualifying"), ("test_chained", "before qualifying")):
        r = rr.get(name) or {}
        if not r.get("races"):
            continue
        parts.append(
            f"{when}, rounds {', '.join(str(x) for x in r['rounds'])}: winner log loss "
            f"{fmt(r['model']['winner_log_loss'])}, without the lean "
            f"{fmt(r['without_reset']['winner_log_loss'])}, logistic on the same grid "
            f"{fmt(r['logistic_grid']['winner_log_loss'])}"
        )
    if not parts:
        return ["", lean + " This season has no such race."]
    return ["", lean + " On those races: " + "; ".join(parts) + "."]


def pole_section(s1: dict[str, Any], level: str = "##") -> list[str]:
    """The served pole odds scored (``stage1.pole``): before qualifying, and a weekend
    ahead."""
    pole = s1.get("pole")
    if not pole:
        return []
    lines = [
        "",
        f"{level} Pole: who takes it (`probability_score` of /predict_quali)",
        "",
        "Qualifying's first place against the odds given before qualifying, over the cars "
        "that set a lap: the model's (Stage-1's gaps through a temperature of "
        f"{fmt(pole.get('temperature'))} %, chosen on the tuning seasons) beside an even "
        "chance and each baseline's gaps through the same temperature (`stage1.pole`); "
        "log loss = -log P(pole-sitter) per event.",
        "",
        *_table(pole, POLE_KEYS),
    ]
    ahead = pole.get("before_practice")
    if ahead:
        lines += [
            "",
            "A weekend ahead, no practice lap (`stage1.pole.before_practice`): the form-only "
            "ensemble's gaps through a temperature of their own, chosen likewise "
            f"({fmt(pole.get('temperature_ahead'))} %), the baseline's through it too:",
            "",
            *_table(ahead, POLE_KEYS),
        ]
    return lines


def before_practice_section(ev: dict[str, Any], level: str = "##") -> list[str]:
    """Both stages a weekend ahead (no practice lap): the forecast for the next event
    while the data holds only the races before it."""
    s1 = ev["stage1"].get("before_practice") or {}
    s2 = ev["stage2"].get("before_practice") or {}
    if "model" not in s1 or "model" not in s2:
        return []

    def table(block: dict[str, Any], keys: list[str]) -> list[str]:
        rows = {k: {"x": v} for k, v in block["baselines"].items()}
        return _table({"x": block["model"], "baselines": rows}, keys, "x")

    return [
        "",
        f"{level} A weekend ahead (no practice in the data yet)",
        "",
        "Every event asked again with its cars and no practice lap, as the service sees the "
        "next event while F1DB holds only the races before it (`/predict_full` days before "
        "the weekend). Stage-1 beside `recent_form` (each driver's recent qualifying gap, "
        "times from the model's pole estimate, which without practice is the layout's last "
        f"pole: pole-lap MAE {fmt(s1.get('pole_mae_s'))} s); Stage-2 on Stage-1's grid, "
        "the baselines fed the same grid (`stage1.before_practice`, "
        "`stage2.before_practice`).",
        "",
        *table(s1, S1_KEYS),
        "",
        *table(s2, S2_KEYS),
        *_without_form_line(s1, s2),
    ]


def _without_form_line(s1: dict[str, Any], s2: dict[str, Any]) -> list[str]:
    a, b = s1.get("without_form_model"), s2.get("without_form_model")
    if not a or not b:
        return []
    return [
        "",
        "Without the form-only ensemble (Stage-1's main ensemble predicting every car, as "
        f"before it existed): gap MAE {fmt(a['gap_pct_mae'])} %, Spearman "
        f"{fmt(a['spearman'])}, MAE {fmt(a['mae_s'])} s; winner log loss "
        f"{fmt(b['winner_log_loss'])}, top-1 {fmt(b['top1'])}.",
    ]


SEASON_START = 4
"""Rounds that make "the start of a season" in the backtest reports (form is oldest then)."""


def _season_start_line(races: list[dict[str, Any]]) -> list[str]:
    """Winner log loss of the model and the grid logistic over the season's first races,
    before and after qualifying: where last season's form weighs most."""
    first = [r for r in races if r["round"] <= SEASON_START]

    def mean(stage: str, who: str) -> float | None:
        v = [r[stage][who]["winner_log_loss"] for r in first if r.get(stage)]
        v = [x for x in v if x is not None]
        return float(np.mean(v)) if v else None

    if not first:
        return []
    return [
        "",
        f"The season's first {SEASON_START} races, winner log loss model / logistic on the "
        f"same grid: after qualifying {fmt(mean('stage2', 'model'))} / "
        f"{fmt(mean('stage2', 'logistic_grid'))}, before qualifying "
        f"{fmt(mean('stage2_chained', 'model'))} / {fmt(mean('stage2_chained', 'logistic_grid'))}.",
    ]


def _season_range(by_season: dict[Any, float | None]) -> str:
    """ " (from x % in S1 to y % in S2)" over the seasons that have a share."""
    have = {k: v for k, v in by_season.items() if v is not None}
    if not have:
        return ""
    lo, hi = min(have, key=lambda k: have[k]), max(have, key=lambda k: have[k])
    return f" (from {have[lo]:.0%} in {lo} to {have[hi]:.0%} in {hi})"


def _target_interval(ev: dict[str, Any], title: str, metric: str) -> str:
    for t, block in _intervals(ev):
        if t == title and metric in block["metrics"]:
            return _iv(block["metrics"][metric]["interval"])
    return "n/a"


def markdown(ev: dict[str, Any]) -> str:
    """``reports/evaluation.md``."""
    s1, s2 = ev["stage1"], ev["stage2"]
    lines = [
        *_evaluation_header(ev.get("protocol", {}), _folds(ev)),
        *_stage1_section(s1),
        *_stage2_section(s2),
        *before_practice_section(ev),
        *_placings_section(s2),
        *intervals_section(ev),
        *_targets_section(ev),
    ]
    if ev.get("races"):
        lines += ["", "## Per race (test season)", "", *per_race_section(ev["races"])]
    lines += [
        "",
        "Figures: `stage1_gap.png` (predicted vs actual gap to pole), "
        "`stage2_calibration.png` (win-probability calibration), "
        "`stage2_podium_calibration.png` (podium and points calibration, model and "
        "grid-slot baseline).",
        "",
    ]
    return "\n".join(lines)


def _evaluation_header(p: dict[str, Any], folds: str) -> list[str]:
    return [
        "# Evaluation (held-out test season)",
        "",
        "Made by `f1 evaluate` (`f1 train --report` writes the same report). "
        f"Protocol: settings tuned on {p.get('valid_season')} with models fitted on "
        f"{_span(p.get('train_seasons'))} (Stage-2's on {folds}, each season predicted "
        "by models fitted on the seasons before it); the test season "
        f"{p.get('test_season')} is scored by models refitted on "
        f"{_span(p.get('test_fit_seasons'))} (Stage-1 refitted before each event on the "
        "season's earlier ones too, as `f1 refresh` refits the served one), through the "
        "served two-stage flow. "
        f"{_baseline_seasons(p)} Served models are refitted on "
        f"{_span(p.get('serving_fit_seasons'))}. Nothing is tuned on the test season. "
        "Data: F1DB (CC-BY-4.0).",
    ]


def _stage1_section(s1: dict[str, Any]) -> list[str]:
    return [
        "",
        "## Stage-1: qualifying time",
        "",
        *_table(s1, S1_KEYS),
        "",
        f"Pole-lap MAE of the model: {fmt(s1.get('pole_mae_s'))} s. 'dry' = events whose pole "
        "lap beat the best pre-qualifying practice lap (F1DB does not label wet sessions): "
        f"{s1['test'].get('dry_events')} of {s1['test'].get('events')} events; "
        "`gap_pct_mae_dry` and `spearman_dry` are scored on those alone (a wet qualifying "
        "spreads the field by more than anything known before it says). Spearman is the "
        "mean per-event rank correlation of predicted and actual gaps.",
        *_new_team_line(s1),
        *_new_rules_line(s1),
        *pole_section(s1),
    ]


def _stage2_section(s2: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Stage-2: race winner",
        "",
        "Scored through the served path, twice per race. After qualifying "
        "(`stage2.test`): the real grid and qualifying times given, as in POST "
        "/predict_race; the baselines read the real grid.",
        "",
        *_table(s2, S2_KEYS),
        *_pole_line(s2, "the test season"),
        *_rules_reset_line(s2),
    ]
    if "test_chained" in s2:
        lines += [
            "",
            "Before qualifying (`stage2.test_chained`): the event only, Stage-1's grid and "
            "gaps chained into Stage-2, as in POST /predict_full; the baselines are fed "
            "Stage-1's grid too.",
            "",
            *_table(s2, S2_KEYS, "test_chained"),
        ]
    return lines


def _placings_section(s2: dict[str, Any]) -> list[str]:
    if "podium" not in s2:
        return []
    finish = s2["podium"].get("finish_rate")
    classified = (
        f", every car but the winner classified with probability {fmt(finish)} (the "
        "share of starters classified in Stage-2's tuning seasons)"
        if finish is not None
        else ""
    )
    lines = [
        "",
        "## Stage-2: podium and points",
        "",
        "Podium (top 3) and points (top 10) probabilities from Plackett-Luce on "
        f"Stage-2's strengths{classified}, over each race's starters. `brier`: mean "
        "squared error per starter; `log_loss`: binary log loss per starter (mean of "
        "-[y log p + (1-y) log(1-p)]); `top3_hits` / `top10_hits`: share of each "
        "race's top 3 / top 10 found among its three / ten most likely cars. Baseline "
        "`grid_slot`: each grid slot's podium (top-10) frequency in the training "
        "seasons, scaled per race to sum to 3 (10). `every_car_classified`: the "
        "model's own strengths with every car classified (plain Plackett-Luce, the "
        "odds served before the finish rate), to show what letting cars retire "
        "changes.",
        "",
        *_table(s2["podium"], PODIUM_KEYS),
    ]
    if "points" in s2:
        lines += ["", "Points (top 10):", "", *_table(s2["points"], POINTS_KEYS)]
    return [*lines, "", *_placings_elsewhere(s2)]


def _targets_section(ev: dict[str, Any]) -> list[str]:
    """The targets table: each metric, its target, the value and its interval."""
    s1, s2 = ev["stage1"], ev["stage2"]
    lines = [
        "",
        "## Targets",
        "",
        "| metric | target | reached | 90 % interval | met |",
        "|---|---|---|---|---|",
    ]

    def row(metric: str, target: str, v: Any, flow: str, key: str, met: bool) -> None:
        lines.append(
            f"| {metric} | {target} | {fmt(v)} | {_target_interval(ev, flow, key)} | "
            f"{'yes' if met else 'no'} |"
        )

    for k, tgt in S1_TARGETS.items():
        v, up = s1["test"].get(k), k == "spearman"
        met = v is not None and (v >= tgt if up else v <= tgt)
        row(f"stage-1 {k}", f"{'>=' if up else '<='} {tgt}", v, "stage-1", k, met)
    after, before = "stage-2 after qualifying", "stage-2 before qualifying"
    v = s2["test"].get("winner_log_loss")
    met = v is not None and v <= 0.95
    row("stage-2 winner_log_loss", "<= 0.95", v, after, "winner_log_loss", met)
    chained = s2.get("test_chained", {}).get("winner_log_loss")
    lg = s2["baselines"].get("logistic_grid", {}).get("test_chained", {}).get("winner_log_loss")
    if chained is not None and lg is not None:
        target = f"< logistic on Stage-1's grid ({fmt(lg)})"
        metric = "stage-2 winner_log_loss before qualifying"
        row(metric, target, chained, before, "winner_log_loss", chained < lg)
    pole_top1 = s2["baselines"].get("pole_sitter", {}).get("test", {}).get("top1")
    t1 = s2["test"].get("top1")
    met = t1 is not None and pole_top1 is not None and t1 >= pole_top1
    row("stage-2 top1", f">= pole-sitter ({fmt(pole_top1)})", t1, after, "top1", met)
    return lines


def figures(preds: dict[str, pd.DataFrame], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    s1 = preds["stage1"]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter(s1["gap_pct"].clip(upper=6), s1["pred_gap"].clip(upper=6), s=8, alpha=0.5)
    ax.plot([0, 6], [0, 6], color="grey", lw=1)
    ax.set_xlabel("actual gap to pole (%)")
    ax.set_ylabel("predicted gap to pole (%)")
    ax.set_title(f"Stage-1, test season {int(s1['season'].iloc[0])}")
    paths.append(_save(fig, out / "stage1_gap.png"))

    s2 = preds["stage2"]
    bins = np.array([0, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 1.0001])
    mp, fr, n = calibration_bins(s2["prob"].to_numpy(float), s2["win"].to_numpy(float), bins)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="grey", lw=1)
    ax.plot(mp, fr, marker="o")
    _counts(ax, mp, fr, n)
    ax.set_xlabel("predicted win probability")
    ax.set_ylabel("observed win frequency")
    ax.set_title(f"Stage-2 calibration, test season {int(s2['season'].iloc[0])}")
    paths.append(_save(fig, out / "stage2_calibration.png"))

    if "podium_prob" in s2:
        pbins = np.array([0, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 1.0001])
        panels = [("podium", "podium")]
        if "points_prob" in s2 and "points" in s2:
            panels.append(("points", "points (top 10)"))
        fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 5), squeeze=False)
        for ax, (what, label) in zip(axes[0], panels, strict=True):
            y = s2[what].to_numpy(float)
            ax.plot([0, 1], [0, 1], color="grey", lw=1)
            curves = [
                ("model (Plackett-Luce)", f"{what}_prob", "o"),
                (f"baseline: {label} rate by grid slot", f"{what}_base", "s"),
            ]
            for name, col, marker in curves:
                if col not in s2:
                    continue
                mp, fr, n = calibration_bins(s2[col].to_numpy(float), y, pbins)
                ax.plot(mp, fr, marker=marker, label=name, alpha=0.85)
                if col == f"{what}_prob":
                    _counts(ax, mp, fr, n)
            ax.set_xlabel(f"predicted {label} probability")
            ax.set_ylabel(f"observed {label} frequency")
            ax.set_title(f"Stage-2 {label} calibration, test season {int(s2['season'].iloc[0])}")
            ax.legend(loc="upper left", fontsize=8)
        paths.append(_save(fig, out / "stage2_podium_calibration.png"))
    return paths


def _counts(ax: Any, mp: list[float], fr: list[float], n: list[int]) -> None:
    """Each calibration point's count of predictions, beside it."""
    for x, y, k in zip(mp, fr, n, strict=True):
        ax.annotate(str(k), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def calibration_bins(
    prob: np.ndarray, outcome: np.ndarray, bins: np.ndarray
) -> tuple[list[float], list[float], list[int]]:
    """Mean predicted probability, observed frequency and count per non-empty bin."""
    idx = np.digitize(prob, bins) - 1
    mp, fr, n = [], [], []
    for b in range(len(bins) - 1):
        m = idx == b
        if m.any():
            mp.append(float(prob[m].mean()))
            fr.append(float(outcome[m].mean()))
            n.append(int(m.sum()))
    return mp, fr, n


def write_report(ev: dict[str, Any], preds: dict[str, pd.DataFrame], out: Path) -> list[Path]:
    """Write the JSON, the markdown and the figures into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    js = out / "evaluation.json"
    js.write_text(json.dumps(_json_safe(ev), indent=2))
    md = out / "evaluation.md"
    md.write_text(markdown(ev))
    return [js, md, *figures(preds, out)]


# ------------------------------------------------------------------------ backtest

BT_S1 = ("model", "practice_ratio", "quick_lgbm_gap")
BT_S2 = ("model", "logistic_grid", "quick_lgbm", "pole_sitter", "uniform")


def per_race_section(races: list[dict[str, Any]]) -> list[str]:
    """Every race of the season: gap MAE and Spearman, winner, log loss and top-1, model
    beside the baselines (``pipeline.per_race``), in backtests and the test season alike."""
    lines = [
        "Gap MAE in % of the pole lap; winner log loss = -log P(winner); `pre` = before "
        "qualifying. Stage-1 columns: model / practice ratio / quick LightGBM.",
        "",
        "| rd | grand prix | dry | gap MAE % m / pr / q | Spearman m | winner | "
        "log loss m / logistic / quick | pre: m / logistic | top-1 m / pre m |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def get(r: dict[str, Any], stage: str, who: str, k: str) -> str:
        return fmt(r.get(stage, {}).get(who, {}).get(k))

    for r in races:
        lines.append(
            f"| {r['round']} | {r['grand_prix_id']} | {'yes' if r.get('dry') else 'no'} | "
            + " / ".join(get(r, "stage1", w, "gap_pct_mae") for w in BT_S1)
            + f" | {get(r, 'stage1', 'model', 'spearman')} | {r.get('winner') or 'n/a'} | "
            + " / ".join(get(r, "stage2", w, "winner_log_loss") for w in BT_S2[:3])
            + " | "
            + " / ".join(get(r, "stage2_chained", w, "winner_log_loss") for w in BT_S2[:2])
            + f" | {get(r, 'stage2', 'model', 'top1')} / "
            f"{get(r, 'stage2_chained', 'model', 'top1')} |"
        )
    return lines


def backtest_markdown(season: int, ev: dict[str, Any], races: list[dict[str, Any]]) -> str:
    from training.backtest import targets

    p = ev["protocol"]
    ch = ev.get("tuning", {}).get("chosen") or {}
    lines = [
        f"# Backtest {season} (walk-forward, trained only on seasons before {season})",
        "",
        f"Made by `f1 backtest --season {season}`. Seasons: form history from "
        f"{p['history_from']}; settings tuned on {p['valid_season']} with models fitted on "
        f"{_span(p['train_seasons'])} (Stage-2's on {_folds(ev)}, each predicted by models "
        f"fitted on the seasons before it); the models that forecast {season} were refitted "
        f"on {_span(p['test_fit_seasons'])} (Stage-1 before each event on {season}'s "
        f"earlier ones too, as `f1 refresh` refits the served one). {_baseline_seasons(p)} "
        f"Every one of the {p['events']} events was "
        "asked through the served two-stage flow (`TwoStage`) with the data as of that "
        "event: before qualifying (event only, Stage-1's grid chained into Stage-2) and "
        "after it (real grid and qualifying times given). Data: F1DB (CC-BY-4.0).",
        "",
        "## Season",
        "",
        "### Stage-1: qualifying (forecast before qualifying)",
        "",
        *_table(ev["stage1"], S1_KEYS),
        "",
        f"Pole-lap MAE of the model: {fmt(ev['stage1'].get('pole_mae_s'))} s; dry events "
        f"{ev['stage1']['test'].get('dry_events')} of {ev['stage1']['test'].get('events')} "
        "(the pole lap beat the best practice lap; `_dry` columns: those alone).",
        *_new_team_line(ev["stage1"]),
        *_new_rules_line(ev["stage1"]),
        *pole_section(ev["stage1"], "###"),
        "",
        "### Stage-2: race winner after qualifying (real grid)",
        "",
        *_table(ev["stage2"], S2_KEYS),
        *_pole_line(ev["stage2"], str(season)),
        *_rules_reset_line(ev["stage2"]),
        *_season_start_line(races),
        "",
        "### Stage-2: race winner before qualifying (Stage-1's grid, baselines too)",
        "",
        *_table(ev["stage2"], S2_KEYS, "test_chained"),
        *before_practice_section(ev, "###"),
        "",
        *intervals_section(ev)[1:],
        "",
        "## Targets (every backtest season)",
        "",
        "| target | model | baseline | met |",
        "|---|---|---|---|",
    ]
    for what, m, b, ok in targets(ev):
        lines.append(f"| {what} | {fmt(m)} | {fmt(b)} | {'yes' if ok else 'no'} |")
    lines += ["", "## Per race", "", *per_race_section(races)]
    lines += [
        "",
        f"Settings chosen on {p['valid_season']}: `{json.dumps(_json_safe(ch))}`.",
        "",
        f"Figure: `backtest-{season}.png` (per race: gap MAE and winner log loss, model "
        "vs baselines).",
        "",
    ]
    return "\n".join(lines)


def backtest_figure(season: int, races: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    def series(stage: str, who: str, k: str) -> tuple[list[int], list[float]]:
        xs, ys = [], []
        for r in races:
            v = r.get(stage, {}).get(who, {}).get(k)
            if v is not None and math.isfinite(v):
                xs.append(r["round"])
                ys.append(v)
        return xs, ys

    panels = [
        ("stage1", "gap_pct_mae", BT_S1, "gap-to-pole MAE (%), forecast before qualifying"),
        ("stage2", "winner_log_loss", BT_S2[:3], "winner log loss, after qualifying"),
        ("stage2_chained", "winner_log_loss", BT_S2[:2], "winner log loss, before qualifying"),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 9.5), sharex=True)
    for ax, (stage, k, who, title) in zip(axes, panels, strict=True):
        for w in who:
            xs, ys = series(stage, w, k)
            style = {"lw": 2.2, "color": "black"} if w == "model" else {"lw": 1.2, "alpha": 0.8}
            mean = f" (mean of races {np.mean(ys):.3f})" if ys else ""
            ax.plot(xs, ys, marker="o", ms=3.5, label=f"{w}{mean}", **style)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    axes[-1].set_xlabel(f"round of {season}")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"Backtest {season}: per race, model vs baselines", fontsize=11)
    return _save(fig, path)


def write_hindsight(found: dict[str, Any], out_dir: Path) -> Path:
    """``reports/hindsight.json`` (``f1 hindsight``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "hindsight.json"
    path.write_text(json.dumps(_json_safe(found), indent=2))
    return path


def write_backtest(
    season: int, ev: dict[str, Any], races: list[dict[str, Any]], out: Path
) -> list[Path]:
    """reports/backtest-S.{json,md,png}; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    js = out / f"backtest-{season}.json"
    js.write_text(json.dumps(_json_safe({"season": season, **ev, "races": races}), indent=2))
    md = out / f"backtest-{season}.md"
    md.write_text(backtest_markdown(season, ev, races))
    return [js, md, backtest_figure(season, races, out / f"backtest-{season}.png")]
