"""Evaluation metrics, computed per event where the question is per event."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import spearmanr


def _mean(v: np.ndarray | list[float]) -> float | None:
    return float(np.mean(v)) if len(v) else None


def stage1_events(meta: pd.DataFrame, pred_gap: np.ndarray) -> dict[str, np.ndarray]:
    """Per event (race-id order): sum and count of absolute gap errors, and the Spearman."""
    actual = meta["gap_pct"].to_numpy()
    err = np.abs(np.asarray(pred_gap, dtype=float) - actual)
    err_sum, n, rho = [], [], []
    for _, idx in sorted(meta.groupby("race_id").indices.items()):
        err_sum.append(float(err[idx].sum()))
        n.append(len(idx))
        ranks = len(idx) > 2 and np.ptp(pred_gap[idx]) > 0  # a constant forecast ranks nothing
        rho.append(float(spearmanr(pred_gap[idx], actual[idx]).statistic) if ranks else math.nan)
    return {"err_sum": np.array(err_sum), "n": np.array(n, dtype=float), "rho": np.array(rho)}


def gap_and_spearman(meta: pd.DataFrame, pred_gap: np.ndarray) -> dict[str, float | None]:
    """Gap-to-pole MAE in % over the rows and the mean per-event Spearman."""
    ev = stage1_events(meta, pred_gap)
    return {
        "gap_pct_mae": float(ev["err_sum"].sum() / ev["n"].sum()) if len(meta) else math.nan,
        "spearman": _mean(ev["rho"][~np.isnan(ev["rho"])]),
    }


def stage1_metrics(meta: pd.DataFrame, pred_time: np.ndarray, pred_gap: np.ndarray) -> dict:
    """MAE in seconds, gap-to-pole MAE in % and mean per-event Spearman (also dry events alone)."""
    err = np.abs(pred_time - meta["best_s"].to_numpy())
    dry = meta["dry"].to_numpy(bool)
    gs = gap_and_spearman(meta, pred_gap)
    gs_dry = gap_and_spearman(meta[dry], np.asarray(pred_gap)[dry]) if dry.any() else {}
    return {
        "season": int(meta["season"].iloc[0]) if len(meta) else None,
        "events": int(meta["race_id"].nunique()),
        "rows": len(meta),
        "mae_s": float(np.nanmean(err)),
        "mae_dry_s": float(np.nanmean(err[dry])) if dry.any() else None,
        "median_ae_s": float(np.nanmedian(err)),
        **gs,
        **{f"{k}_dry": gs_dry.get(k) for k in gs},
        "dry_events": int(meta.loc[dry, "race_id"].nunique()),
    }


def forecast_metrics(frame: pd.DataFrame) -> dict:
    """``stage1_metrics`` of a scored frame's own forecast (``pred_time``, ``pred_gap``)."""
    return stage1_metrics(frame, *(frame[c].to_numpy(float) for c in ("pred_time", "pred_gap")))


def pole_metrics(meta: pd.DataFrame, prob: np.ndarray) -> dict:
    """Pole odds (renormalised over the cars with a lap) scored as win odds against ``q_pos`` 1."""
    groups = meta["race_id"].to_numpy()
    p = np.asarray(prob, dtype=float)
    total = pd.Series(p).groupby(groups).transform("sum").to_numpy()
    p = np.where(total > 0, p / np.where(total > 0, total, 1.0), 0.0)
    pole = (meta["q_pos"].to_numpy(float) == 1.0).astype(float)
    ev = stage2_events(meta.assign(win=pole), p)
    scored = pd.Series(pole).groupby(groups).transform("sum").to_numpy() == 1.0
    n = len(ev["top1"])
    return {
        "season": int(meta["season"].iloc[0]) if len(meta) else None,
        "events": n,
        "log_loss": _mean(ev["winner_log_loss"]),
        "top1": _mean(ev["top1"]),
        "brier": float(np.mean((p[scored] - pole[scored]) ** 2)) if n else None,
    }


def stage2_events(meta: pd.DataFrame, prob: np.ndarray) -> dict[str, np.ndarray]:
    """Per race with one winner (race-id order): top-1 credit (ties share) and log loss."""
    y = meta["win"].to_numpy()
    top1, ll = [], []
    for _, idx in sorted(meta.groupby("race_id").indices.items()):
        p, yy = prob[idx], y[idx]
        if yy.sum() != 1:
            continue  # no classified winner recorded
        at_max = np.isclose(p, p.max())
        top1.append(float(at_max[yy == 1][0]) / at_max.sum())
        pw = float(p[yy == 1][0])
        ll.append(-math.log(pw) if pw > 0 else math.inf)
    return {"top1": np.array(top1), "winner_log_loss": np.array(ll)}


def stage2_metrics(meta: pd.DataFrame, prob: np.ndarray) -> dict:
    """Top-1 (ties at the max share the credit), winner log loss, Brier per driver."""
    y = meta["win"].to_numpy()
    ev = stage2_events(meta, prob)
    return {
        "season": int(meta["season"].iloc[0]) if len(meta) else None,
        "races": len(ev["top1"]),
        "top1": _mean(ev["top1"]),
        "winner_log_loss": _mean(ev["winner_log_loss"]),
        "brier": _mean((prob - y) ** 2),
    }


def win_metrics(frame: pd.DataFrame) -> dict:
    """``stage2_metrics`` of a scored frame's own win probabilities (``prob``)."""
    return stage2_metrics(frame, frame["prob"].to_numpy(float))


def pole_win_share(meta: pd.DataFrame) -> float | None:
    """Share of races (with one classified winner) won from the best grid slot."""
    by_race = meta.groupby("race_id")
    won = (meta["win"] == 1).to_numpy() & (by_race["win"].transform("sum") == 1).to_numpy()
    first = meta["grid"].to_numpy(float) == by_race["grid"].transform("min").to_numpy(float)
    return _mean(first[won].astype(float))


def placing_metrics(meta: pd.DataFrame, prob: np.ndarray, flag: str = "podium", k: int = 3) -> dict:
    """Top-``k`` odds against ``flag``: Brier, log loss, and the share of each race's top
    ``k`` among its ``k`` most likely cars."""
    y = meta[flag].to_numpy(float)
    p = np.clip(np.asarray(prob, dtype=float), 1e-15, 1.0 - 1e-15)
    hits = []
    for _, idx in meta.groupby("race_id").indices.items():
        yy = y[idx]
        if yy.sum() != k:
            continue  # fewer than k classified finishers recorded
        top = np.argsort(-np.asarray(prob)[idx], kind="stable")[:k]
        hits.append(float(yy[top].sum()) / k)
    return {
        "season": int(meta["season"].iloc[0]) if len(meta) else None,
        "races": len(hits),
        "rows": len(meta),
        "brier": float(np.mean((np.asarray(prob, dtype=float) - y) ** 2)),
        "log_loss": float(-np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p))),
        f"top{k}_hits": _mean(hits),
    }
