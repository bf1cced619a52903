"""The reports and their figures; their prose is in training/report.md."""

from __future__ import annotations

import json
import math
import re
import string
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.backtest import targets

S1_KEYS = ["season", "mae_s", "mae_dry_s", "median_ae_s", "gap_pct_mae", "spearman"]
S1_KEYS += ["gap_pct_mae_dry", "spearman_dry"]
S2_KEYS = ["season", "top1", "winner_log_loss", "brier"]
PODIUM_KEYS = ["season", "brier", "log_loss", "top3_hits"]
POINTS_KEYS = ["season", "brier", "log_loss", "top10_hits"]
POLE_KEYS = ["season", "events", "log_loss", "top1", "brier"]

S1_TARGETS = {"gap_pct_mae": 0.45, "mae_dry_s": 0.40, "spearman": 0.80}
SEASON_START = 4  # rounds that make "the start of a season" (form is oldest then)
# the predictors of the per-race table and figure (Stage-2 before qualifying: two)
BT_S1 = ("model", "practice_ratio", "quick_lgbm_gap")
BT_S2 = ("model", "logistic_grid", "quick_lgbm")
WIN_BINS = [0, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 1.0001]
PLACING_BINS = [0, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 1.0001]

_TEMPLATE = Path(__file__).with_name("report.md").read_text()
_PARTS = re.split(r"^<!-- (\w+) -->$", _TEMPLATE, flags=re.M)
PROSE = {name: text.strip("\n") for name, text in zip(_PARTS[1::2], _PARTS[2::2], strict=True)}


class _Prose(string.Formatter):
    """report.md's fields: a figure as ``fmt`` writes it, a list as "a, b", or as they ask."""

    def format_field(self, value: Any, format_spec: str) -> str:
        if format_spec:
            return str(super().format_field(value, format_spec))
        return ", ".join(str(v) for v in value) if isinstance(value, list) else fmt(value)


def fill(part: str, **values: Any) -> str:
    """A part of report.md filled; an empty field drops out with its blank lines."""
    return re.sub(r"\n{3,}", "\n\n", _Prose().vformat(PROSE[part], (), values)).strip("\n")


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


def _row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def predictors(stage: dict[str, Any], which: str, model: str = "model") -> list[tuple[str, Any]]:
    """(name, metrics) of the model, then of each baseline scored ``which`` way."""
    rows = [(k, v[which]) for k, v in stage["baselines"].items() if which in v]
    return [(model, stage[which]), *rows]


def _table(stage: dict[str, Any], keys: list[str], which: str = "test") -> str:
    """Model and baselines, one row each (``which``: "test", or "test_chained")."""
    rows = predictors(stage, which, "**model**")
    lines = [_row("predictor", *keys[1:]), "|---|" + "---|" * (len(keys) - 1)]
    return "\n".join(lines + [_row(name, *(fmt(m.get(k)) for k in keys[1:])) for name, m in rows])


def _span(seasons: list[int]) -> str:
    first, last = seasons
    return f"{first}-{last}" if first != last else str(first)


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


def intervals_section(ev: dict[str, Any]) -> str:
    """The "how sure" table: each metric's interval and paired differences to baselines."""
    blocks = _intervals(ev)
    if not blocks:
        return ""
    rows = []
    for title, block in blocks:
        for metric, rec in block["metrics"].items():
            vs = "; ".join(
                f"{name} {d['diff']:+.3f} {_iv(d['interval'])}, {d['better_share']:.0%}"
                for name, d in rec["vs"].items()
            )
            rows.append(_row(f"{title} {metric}", fmt(rec["model"]), _iv(rec["interval"]), vs))
    return fill("intervals", **blocks[0][1], rows="\n".join(rows))


def _pole_wins(pw: dict[str, Any], season: str) -> str:
    """How much the scored season rewarded the pole-sitter, against the fitted seasons."""
    if pw["test"] is None or pw["fit_seasons"] is None:
        return ""
    have = {k: v for k, v in pw["by_fit_season"].items() if v is not None}
    spread = ""
    if have:
        lo, hi = min(have, key=have.__getitem__), max(have, key=have.__getitem__)
        spread = f" (from {have[lo]:.0%} in {lo} to {have[hi]:.0%} in {hi})"
    return fill("pole_wins", **pw, season=season, spread=spread)


def _rules_reset(rr: dict[str, Any]) -> str:
    """Stage-2 on the races it leans on the grid for, from ``rules_reset_check``."""
    parts = [
        fill("rules_reset_races", **rr[name], when=when)
        for name, when in (("test", "after qualifying"), ("test_chained", "before qualifying"))
        if rr[name]["races"]
    ]
    scored = f"On those races: {'; '.join(parts)}." if parts else "This season has no such race."
    return fill("rules_reset", **rr, scored=scored)


def before_practice_section(ev: dict[str, Any], level: str = "##") -> str:
    """Both stages a weekend ahead (no practice lap)."""
    s1, s2 = ev["stage1"]["before_practice"], ev["stage2"]["before_practice"]

    def table(block: dict[str, Any], keys: list[str]) -> str:
        rows = {k: {"x": v} for k, v in block["baselines"].items()}
        return _table({"x": block["model"], "baselines": rows}, keys, "x")

    a, b = s1["without_form_model"], s2["without_form_model"]
    return fill(
        "before_practice",
        level=level,
        pole_mae_s=s1["pole_mae_s"],
        stage1_table=table(s1, S1_KEYS),
        stage2_table=table(s2, S2_KEYS),
        without_form=fill("without_form", stage1=a, stage2=b),
    )


def _season_start(races: list[dict[str, Any]]) -> str:
    """Winner log loss of the model and the grid logistic over the season's first races."""
    first = [r for r in races if r["round"] <= SEASON_START]
    means = {}
    for stage in ("stage2", "stage2_chained"):
        for who in ("model", "logistic_grid"):
            v = [r[stage][who]["winner_log_loss"] for r in first if r.get(stage)]
            v = [x for x in v if x is not None]
            means[f"{stage}_{who}"] = float(np.mean(v)) if v else None
    return fill("season_start", n=SEASON_START, **means) if first else ""


def _targets(ev: dict[str, Any]) -> str:
    """The targets table's rows: each metric, its target, the value and its interval."""
    s1, s2, ll = ev["stage1"], ev["stage2"], "winner_log_loss"
    after, before = "stage-2 after qualifying", "stage-2 before qualifying"
    rows = []  # (metric, target, value, intervals block, key, met)
    for k, tgt in S1_TARGETS.items():
        v, up = s1["test"].get(k), k == "spearman"
        met = v is not None and (v >= tgt if up else v <= tgt)
        rows.append((f"stage-1 {k}", f"{'>=' if up else '<='} {tgt}", v, "stage-1", k, met))
    v = s2["test"].get(ll)
    rows.append((f"stage-2 {ll}", "<= 0.95", v, after, ll, v is not None and v <= 0.95))
    chained = s2.get("test_chained", {}).get(ll)
    lg = s2["baselines"].get("logistic_grid", {}).get("test_chained", {}).get(ll)
    if chained is not None and lg is not None:
        target = f"< logistic on Stage-1's grid ({fmt(lg)})"
        rows.append((f"stage-2 {ll} before qualifying", target, chained, before, ll, chained < lg))
    pole_top1 = s2["baselines"].get("pole_sitter", {}).get("test", {}).get("top1")
    t1 = s2["test"].get("top1")
    met = t1 is not None and pole_top1 is not None and t1 >= pole_top1
    rows.append(("stage-2 top1", f">= pole-sitter ({fmt(pole_top1)})", t1, after, "top1", met))
    blocks = dict(_intervals(ev))
    return "\n".join(
        _row(
            m,
            t,
            fmt(v),
            _iv(blocks.get(b, {}).get("metrics", {}).get(k, {}).get("interval")),
            "yes" if ok else "no",
        )
        for m, t, v, b, k, ok in rows
    )


def per_race_section(races: list[dict[str, Any]], title: str) -> str:
    """Every race of the season: the model beside the baselines (``pipeline.per_race``)."""

    def get(r: dict[str, Any], stage: str, who: str, k: str) -> str:
        return fmt(r.get(stage, {}).get(who, {}).get(k))

    rows = [
        f"| {r['round']} | {r['grand_prix_id']} | {'yes' if r.get('dry') else 'no'} | "
        + " / ".join(get(r, "stage1", w, "gap_pct_mae") for w in BT_S1)
        + f" | {get(r, 'stage1', 'model', 'spearman')} | {r.get('winner') or 'n/a'} | "
        + " / ".join(get(r, "stage2", w, "winner_log_loss") for w in BT_S2)
        + " | "
        + " / ".join(get(r, "stage2_chained", w, "winner_log_loss") for w in BT_S2[:2])
        + f" | {get(r, 'stage2', 'model', 'top1')} / {get(r, 'stage2_chained', 'model', 'top1')} |"
        for r in races
    ]
    return fill("per_race", title=title, rows="\n".join(rows))


def _sections(ev: dict[str, Any], level: str, season: str) -> dict[str, Any]:
    """What the evaluation and the backtest reports share, by the name report.md gives."""
    s1, s2, p = ev["stage1"], ev["stage2"], ev["protocol"]
    spans = ("train_seasons", "test_fit_seasons", "serving_fit_seasons")
    base, nt, pole = p["baseline_seasons"], s1["new_team"], s1["pole"]
    ahead = fill("pole_ahead", **pole, table=_table(pole["before_practice"], POLE_KEYS))
    plain = nt.get("fitted_without_blanked_teams")
    plain_fit = " " + fill("plain_fit", **plain) if plain else ""
    return (
        p
        | {k: _span(p[k]) for k in spans if k in p}
        | {
            "folds": ", ".join(str(f) for f in ev["tuning"]["stage2_folds"]),
            "baseline_seasons": fill(
                "baseline_seasons",
                early_stopped=_span(base["early_stopped"]),
                others=_span(base["others"]),
                valid_season=p["valid_season"],
            ),
            "stage1_table": _table(s1, S1_KEYS),
            "pole_mae_s": s1["pole_mae_s"],
            "dry_events": s1["test"]["dry_events"],
            "stage1_events": s1["test"]["events"],
            "new_team": fill("new_team", **nt, plain_fit=plain_fit),
            "new_rules": fill("new_rules", **s1["new_rules"]) if s1["new_rules"]["rows"] else "",
            "pole": fill("pole", **pole, level=level, table=_table(pole, POLE_KEYS), ahead=ahead),
            "stage2_table": _table(s2, S2_KEYS),
            "pole_wins": _pole_wins(s2["pole_win_share"], season),
            "rules_reset": _rules_reset(s2["rules_reset"]),
            "before_practice": before_practice_section(ev, level),
            "intervals": intervals_section(ev),
        }
    )


def markdown(ev: dict[str, Any]) -> str:
    """``reports/evaluation.md``."""
    s2 = ev["stage2"]
    return (
        fill(
            "evaluation",
            **_sections(ev, "##", "the test season"),
            chained=fill("chained", table=_table(s2, S2_KEYS, "test_chained")),
            placings=fill(
                "placings",
                **s2,
                podium_table=_table(s2["podium"], PODIUM_KEYS),
                points_table=_table(s2["points"], POINTS_KEYS),
            ),
            targets=_targets(ev),
            per_race=per_race_section(ev["races"], "Per race (test season)"),
        )
        + "\n"
    )


def backtest_markdown(season: int, ev: dict[str, Any]) -> str:
    """``reports/backtest-S.md``."""
    rows = [_row(w, fmt(m), fmt(b), "yes" if ok else "no") for w, m, b, ok in targets(ev)]
    return (
        fill(
            "backtest",
            **_sections(ev, "###", str(season)),
            season=season,
            season_start=_season_start(ev["races"]),
            chained_table=_table(ev["stage2"], S2_KEYS, "test_chained"),
            targets="\n".join(rows),
            per_race=per_race_section(ev["races"], "Per race"),
            settings=json.dumps(_json_safe(ev["tuning"]["chosen"])),
        )
        + "\n"
    )


def figures(preds: dict[str, pd.DataFrame], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s1, s2 = preds["stage1"], preds["stage2"]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter(s1["gap_pct"].clip(upper=6), s1["pred_gap"].clip(upper=6), s=8, alpha=0.5)
    ax.plot([0, 6], [0, 6], color="grey", lw=1)
    ax.set_xlabel("actual gap to pole (%)")
    ax.set_ylabel("predicted gap to pole (%)")
    ax.set_title(f"Stage-1, test season {int(s1['season'].iloc[0])}")
    paths = [_save(fig, out / "stage1_gap.png")]

    season = f"test season {int(s2['season'].iloc[0])}"
    fig, ax = plt.subplots(figsize=(5.5, 5))
    _calibration(ax, s2, "win", "win", [("model", "prob")], WIN_BINS)
    ax.set_title(f"Stage-2 calibration, {season}")
    paths.append(_save(fig, out / "stage2_calibration.png"))
    if "podium_prob" in s2:
        fig, axes = plt.subplots(1, 2, figsize=(11.0, 5), squeeze=False)
        for ax, what, label in zip(
            axes[0], ("podium", "points"), ("podium", "points (top 10)"), strict=True
        ):
            curves = [("model (Plackett-Luce)", f"{what}_prob")]
            curves.append((f"baseline: {label} rate by grid slot", f"{what}_base"))
            _calibration(ax, s2, what, label, curves, PLACING_BINS)
            ax.set_title(f"Stage-2 {label} calibration, {season}")
            ax.legend(loc="upper left", fontsize=8)
        paths.append(_save(fig, out / "stage2_podium_calibration.png"))
    return paths


def _calibration(
    ax: Any,
    frame: pd.DataFrame,
    what: str,
    label: str,
    curves: list[tuple[str, str]],
    bins: list[float],
) -> None:
    """Observed against predicted frequency of ``what`` per bin for each (name, column) curve."""
    y, edges = frame[what].to_numpy(float), np.array(bins)
    ax.plot([0, 1], [0, 1], color="grey", lw=1)
    for i, (name, col) in enumerate(curves):
        mp, fr, n = calibration_bins(frame[col].to_numpy(float), y, edges)
        ax.plot(mp, fr, marker="os"[i], label=name, alpha=0.85 if len(curves) > 1 else None)
        for x, f, k in zip(mp, fr, n, strict=True) if i == 0 else ():
            ax.annotate(str(k), (x, f), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xlabel(f"predicted {label} probability")
    ax.set_ylabel(f"observed {label} frequency")


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
    used = [idx == b for b in range(len(bins) - 1) if (idx == b).any()]
    mp, fr = [float(prob[m].mean()) for m in used], [float(outcome[m].mean()) for m in used]
    return mp, fr, [int(m.sum()) for m in used]


def backtest_figure(season: int, races: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    def series(stage: str, who: str, k: str) -> tuple[list[int], list[float]]:
        pts = [(r["round"], r.get(stage, {}).get(who, {}).get(k)) for r in races]
        pts = [(x, v) for x, v in pts if v is not None and math.isfinite(v)]
        return [x for x, _ in pts], [v for _, v in pts]

    panels = [
        ("stage1", "gap_pct_mae", BT_S1, "gap-to-pole MAE (%), forecast before qualifying"),
        ("stage2", "winner_log_loss", BT_S2, "winner log loss, after qualifying"),
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


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _json(doc: dict[str, Any]) -> str:
    return json.dumps(_json_safe(doc), indent=2)


def write_report(ev: dict[str, Any], preds: dict[str, pd.DataFrame], out: Path) -> list[Path]:
    """Write the JSON, the markdown and the figures into ``out``; return their paths."""
    js, md = _write(out / "evaluation.json", _json(ev)), _write(out / "evaluation.md", markdown(ev))
    return [js, md, *figures(preds, out)]


def write_hindsight(found: dict[str, Any], out: Path) -> Path:
    """``reports/hindsight.json`` (``f1 hindsight``)."""
    return _write(out / "hindsight.json", _json(found))


def write_backtest(season: int, ev: dict[str, Any], out: Path) -> list[Path]:
    """reports/backtest-S.{json,md,png}; return their paths."""
    js = _write(out / f"backtest-{season}.json", _json({"season": season, **ev}))
    md = _write(out / f"backtest-{season}.md", backtest_markdown(season, ev))
    return [js, md, backtest_figure(season, ev["races"], out / f"backtest-{season}.png")]
