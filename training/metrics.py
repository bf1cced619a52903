"""Evaluation metrics, computed per event where the question is per event."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import spearmanr


def stage1_metrics(meta: pd.DataFrame, pred_time: np.ndarray, pred_gap: np.ndarray) -> dict:
    """MAE in seconds (all, dry, median), gap-to-pole MAE in %, mean per-event Spearman."""
    err = np.abs(pred_time - meta["best_s"].to_numpy())
    dry = meta["dry"].to_numpy(bool)
    rhos = []
    for _, idx in meta.groupby("race_id").indices.items():
        if len(idx) > 2 and np.ptp(pred_gap[idx]) > 0:  # a constant forecast ranks nothing
            rho = spearmanr(pred_gap[idx], meta["gap_pct"].to_numpy()[idx]).statistic
            if not math.isnan(rho):
                rhos.append(rho)
    return {
        "season": int(meta["season"].iloc[0]) if len(meta) else None,
        "events": int(meta["race_id"].nunique()),
        "rows": len(meta),
        "mae_s": float(np.nanmean(err)),
        "mae_dry_s": float(np.nanmean(err[dry])) if dry.any() else None,
        "median_ae_s": float(np.nanmedian(err)),
        "gap_pct_mae": float(np.mean(np.abs(pred_gap - meta["gap_pct"].to_numpy()))),
        "spearman": float(np.mean(rhos)) if rhos else None,
        "dry_events": int(meta.loc[dry, "race_id"].nunique()),
    }


def stage2_metrics(meta: pd.DataFrame, prob: np.ndarray) -> dict:
    """Top-1 (ties at the max share the credit), winner log loss, Brier per driver."""
    y = meta["win"].to_numpy()
    top1, ll = [], []
    for _, idx in meta.groupby("race_id").indices.items():
        p, yy = prob[idx], y[idx]
        if yy.sum() != 1:
            continue  # no classified winner recorded
        at_max = np.isclose(p, p.max())
        top1.append(float(at_max[yy == 1][0]) / at_max.sum())
        pw = float(p[yy == 1][0])
        ll.append(-math.log(pw) if pw > 0 else math.inf)
    return {
        "season": int(meta["season"].iloc[0]) if len(meta) else None,
        "races": len(top1),
        "top1": float(np.mean(top1)) if top1 else None,
        "winner_log_loss": float(np.mean(ll)) if ll else None,
        "brier": float(np.mean((prob - y) ** 2)) if len(y) else None,
    }


def podium_metrics(meta: pd.DataFrame, prob: np.ndarray) -> dict:
    """Podium (top 3) probabilities against the ``podium`` flags, per starter: Brier,
    binary log loss (mean over starters of -[y log p + (1 - y) log(1 - p)]) and the share
    of each race's podium found in its three most likely cars."""
    y = meta["podium"].to_numpy(float)
    p = np.clip(np.asarray(prob, dtype=float), 1e-15, 1.0 - 1e-15)
    hits = []
    for _, idx in meta.groupby("race_id").indices.items():
        yy = y[idx]
        if yy.sum() != 3:
            continue  # fewer than three classified finishers recorded
        top3 = np.argsort(-np.asarray(prob)[idx], kind="stable")[:3]
        hits.append(float(yy[top3].sum()) / 3.0)
    return {
        "season": int(meta["season"].iloc[0]) if len(meta) else None,
        "races": len(hits),
        "rows": len(meta),
        "brier": float(np.mean((np.asarray(prob, dtype=float) - y) ** 2)),
        "log_loss": float(-np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p))),
        "top3_hits": float(np.mean(hits)) if hits else None,
    }
