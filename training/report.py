"""reports/evaluation.{json,md} and the two figures, from a training run's evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

S1_KEYS = ["season", "mae_s", "mae_dry_s", "median_ae_s", "gap_pct_mae", "spearman"]
S2_KEYS = ["season", "top1", "winner_log_loss", "brier"]

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
        return "inf"
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.3f}"
    return str(v)


def _table(stage: dict[str, Any], keys: list[str]) -> list[str]:
    """Model and baselines, one row each, on the test season."""
    lines = ["| predictor | " + " | ".join(keys[1:]) + " |", "|---|" + "---|" * (len(keys) - 1)]
    rows = [("**model**", stage["test"])]
    if "test_chained" in stage:
        rows.append(("**model, before qualifying** (Stage-1's grid)", stage["test_chained"]))
    rows += [(k, v["test"]) for k, v in stage["baselines"].items()]
    for name, m in rows:
        lines.append(f"| {name} | " + " | ".join(fmt(m.get(k)) for k in keys[1:]) + " |")
    return lines


def markdown(ev: dict[str, Any]) -> str:
    p = ev.get("protocol", {})
    lines = [
        "# Evaluation (held-out test season)",
        "",
        f"Protocol: settings tuned on {p.get('valid_season')} with models fitted on "
        f"{p.get('train_seasons')}; the test season {p.get('test_season')} is scored by "
        f"models refitted on {p.get('test_fit_seasons')} (baselines fitted the same way). "
        f"Served models are refitted on {p.get('serving_fit_seasons')}. Data: F1DB (CC-BY-4.0).",
        "",
        "## Stage-1: qualifying time",
        "",
    ]
    s1 = ev["stage1"]
    lines += _table(s1, S1_KEYS)
    lines += [
        "",
        f"Pole-lap MAE of the model: {fmt(s1.get('pole_mae_s'))} s. 'dry' = events whose pole "
        "lap beat the best pre-qualifying practice lap (F1DB does not label wet sessions): "
        f"{s1['test'].get('dry_events')} of {s1['test'].get('events')} events. Spearman is the "
        "mean per-event rank correlation of predicted and actual gaps.",
        "",
        "## Stage-2: race winner",
        "",
        "Scored through the served path: after qualifying (the real grid and qualifying "
        "times given, as in POST /predict_race) and before it (Stage-1's grid chained into "
        "Stage-2, as in POST /predict_full with the event only). Baselines use the real grid.",
        "",
    ]
    s2 = ev["stage2"]
    lines += _table(s2, S2_KEYS)
    lines += ["", "## Targets", "", "| metric | target | reached | met |", "|---|---|---|---|"]
    for k, tgt in S1_TARGETS.items():
        v = s1["test"].get(k)
        ok = v is not None and (v >= tgt if k == "spearman" else v <= tgt)
        lines.append(
            f"| stage-1 {k} | {'>=' if k == 'spearman' else '<='} {tgt} | {fmt(v)} | {'yes' if ok else 'no'} |"
        )
    v = s2["test"].get("winner_log_loss")
    lines.append(
        f"| stage-2 winner_log_loss | <= 0.95 | {fmt(v)} | {'yes' if v is not None and v <= 0.95 else 'no'} |"
    )
    pole_top1 = s2["baselines"].get("pole_sitter", {}).get("test", {}).get("top1")
    t1 = s2["test"].get("top1")
    lines.append(
        f"| stage-2 top1 | >= pole-sitter ({fmt(pole_top1)}) | {fmt(t1)} | "
        f"{'yes' if t1 is not None and pole_top1 is not None and t1 >= pole_top1 else 'no'} |"
    )
    lines += [
        "",
        "Figures: `stage1_gap.png` (predicted vs actual gap to pole), "
        "`stage2_calibration.png` (win-probability calibration).",
        "",
    ]
    return "\n".join(lines)


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
    fig.tight_layout()
    paths.append(out / "stage1_gap.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    s2 = preds["stage2"]
    bins = np.array([0, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 1.0001])
    idx = np.digitize(s2["prob"], bins) - 1
    mp, fr, n = [], [], []
    for b in range(len(bins) - 1):
        m = idx == b
        if m.any():
            mp.append(s2["prob"][m].mean())
            fr.append(s2["win"][m].mean())
            n.append(int(m.sum()))
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="grey", lw=1)
    ax.plot(mp, fr, marker="o")
    for x, y, k in zip(mp, fr, n, strict=True):
        ax.annotate(str(k), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xlabel("predicted win probability")
    ax.set_ylabel("observed win frequency")
    ax.set_title(f"Stage-2 calibration, test season {int(s2['season'].iloc[0])}")
    fig.tight_layout()
    paths.append(out / "stage2_calibration.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def write_report(ev: dict[str, Any], preds: dict[str, pd.DataFrame], out: Path) -> list[Path]:
    """Write the JSON, the markdown and the figures into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    js = out / "evaluation.json"
    js.write_text(json.dumps(_json_safe(ev), indent=2))
    md = out / "evaluation.md"
    md.write_text(markdown(ev))
    return [js, md, *figures(preds, out)]
