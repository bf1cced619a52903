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
PODIUM_KEYS = ["season", "brier", "log_loss", "top3_hits"]

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
    if "podium" in s2:
        lines += [
            "",
            "## Stage-2: podium",
            "",
            "Podium (top 3) probabilities from Plackett-Luce on Stage-2's strengths, over "
            "each race's starters. `brier`: mean squared error per starter; `log_loss`: "
            "binary log loss per starter (mean of -[y log p + (1-y) log(1-p)]); "
            "`top3_hits`: share of each podium found among the three most likely cars. "
            "Baseline `grid_slot`: each grid slot's podium frequency in the training "
            "seasons, scaled per race to sum to 3.",
            "",
        ]
        lines += _table(s2["podium"], PODIUM_KEYS)
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
        "`stage2_calibration.png` (win-probability calibration), "
        "`stage2_podium_calibration.png` (podium-probability calibration, model and "
        "grid-slot baseline).",
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
    mp, fr, n = calibration_bins(s2["prob"].to_numpy(float), s2["win"].to_numpy(float), bins)
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

    if "podium_prob" in s2:
        pbins = np.array([0, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 1.0001])
        y = s2["podium"].to_numpy(float)
        fig, ax = plt.subplots(figsize=(5.5, 5))
        ax.plot([0, 1], [0, 1], color="grey", lw=1)
        curves = [
            ("model (Plackett-Luce)", "podium_prob", "o"),
            ("baseline: podium rate by grid slot", "podium_base", "s"),
        ]
        for name, col, marker in curves:
            if col not in s2:
                continue
            mp, fr, n = calibration_bins(s2[col].to_numpy(float), y, pbins)
            ax.plot(mp, fr, marker=marker, label=name, alpha=0.85)
            if col == "podium_prob":
                for x, yy, k in zip(mp, fr, n, strict=True):
                    ax.annotate(
                        str(k), (x, yy), textcoords="offset points", xytext=(4, -10), fontsize=7
                    )
        ax.set_xlabel("predicted podium probability")
        ax.set_ylabel("observed podium frequency")
        ax.set_title(f"Stage-2 podium calibration, test season {int(s2['season'].iloc[0])}")
        ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        paths.append(out / "stage2_podium_calibration.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


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
