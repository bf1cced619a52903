"""The honest baselines of NOTES.md, fitted and scored with the same protocol as the model."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from pipelines.features.spec import STAGE1
from pipelines.models.stage2 import group_softmax
from training.datasets import StageData

PRACTICE_COLS = [i for i, f in enumerate(STAGE1.names) if f.startswith("p_")]


def _per_event_gap(pred_time: np.ndarray, groups: np.ndarray) -> np.ndarray:
    gap = np.empty_like(pred_time)
    for g in np.unique(groups):
        m = groups == g
        gap[m] = (pred_time[m] / np.nanmin(pred_time[m]) - 1.0) * 100.0
    return gap


def practice_ratio(train: StageData, test: StageData) -> tuple[np.ndarray, np.ndarray]:
    """Driver's best practice lap x the circuit's typical quali/practice ratio."""
    tm = train.meta
    ratio = (tm["best_s"] / tm["best_practice_s"]).replace([np.inf, -np.inf], np.nan)
    by_layout = ratio.groupby(tm["layout_id"]).median()
    overall = float(ratio.median())
    m = test.meta
    r = m["layout_id"].map(by_layout).fillna(overall).to_numpy()
    pred = m["best_practice_s"].to_numpy() * r
    # drivers without practice get the field's median prediction
    med = pd.Series(pred).groupby(m["race_id"].to_numpy()).transform("median").to_numpy()
    pred = np.where(np.isnan(pred), med, pred)
    return pred, _per_event_gap(pred, m["race_id"].to_numpy())


def quick_lgbm_gap(
    train: StageData, test: StageData, pole: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Default LightGBM on the practice features, predicting the gap to pole."""
    model = lgb.LGBMRegressor(verbosity=-1, n_jobs=1, random_state=0)
    model.fit(train.x[:, PRACTICE_COLS], np.clip(train.y, 0, 7))
    gap = np.clip(model.predict(test.x[:, PRACTICE_COLS]), 0, None)
    return pole * (1 + gap / 100.0), gap


def _normalise(p: np.ndarray, groups: np.ndarray) -> np.ndarray:
    out = np.empty_like(p, dtype=float)
    for g in np.unique(groups):
        m = groups == g
        out[m] = p[m] / p[m].sum() if p[m].sum() > 0 else 1.0 / m.sum()
    return out


def stage2_baselines(train: StageData, test: StageData) -> dict[str, np.ndarray]:
    """Uniform, pole-sitter wins, logistic on grid, quick LightGBM on grid + form."""
    groups = test.meta["race_id"].to_numpy()
    grid = test.meta["grid"].to_numpy()
    out: dict[str, np.ndarray] = {}
    out["uniform"] = _normalise(np.ones(len(groups)), groups)
    best = pd.Series(grid).groupby(groups).transform("min").to_numpy()
    out["pole_sitter"] = _normalise((grid == best).astype(float), groups)
    lr = LogisticRegression()
    lr.fit(train.meta[["grid"]].to_numpy(), train.y)
    out["logistic_grid"] = _normalise(
        np.asarray(lr.predict_proba(test.meta[["grid"]].to_numpy()), dtype=float)[:, 1], groups
    )
    gb = lgb.LGBMClassifier(verbosity=-1, n_jobs=1, random_state=0)
    gb.fit(train.x, train.y)
    out["quick_lgbm"] = _normalise(np.asarray(gb.predict_proba(test.x), dtype=float)[:, 1], groups)
    return out


PODIUM_SLOTS = 20
"""Slots past this (pit-lane starters, back of a 22-26 car grid) share one frequency."""


def podium_by_grid(train: StageData, test: StageData, prior: float = 2.0) -> np.ndarray:
    """P(podium | grid slot): the training seasons' podium frequency of each slot
    (shrunk towards the overall rate by ``prior`` starts), scaled per race to sum to 3
    (capped at 1, the excess spread over the others)."""
    tm = train.meta
    slot = np.minimum(tm["grid"].to_numpy(float), PODIUM_SLOTS)
    podium = tm["podium"].to_numpy(float)
    overall = float(podium.mean())
    freq = {}
    for s in range(1, PODIUM_SLOTS + 1):
        m = slot == s
        freq[s] = (podium[m].sum() + prior * overall) / (m.sum() + prior)
    te_slot = np.clip(test.meta["grid"].to_numpy(float), 1, PODIUM_SLOTS).astype(int)
    raw = np.array([freq[int(s)] for s in te_slot])
    groups = test.meta["race_id"].to_numpy()
    out = np.empty(len(raw))
    for g in np.unique(groups):
        m = groups == g
        out[m] = _scale_to(raw[m], min(3.0, float(m.sum())))
    return out


def _scale_to(p: np.ndarray, total: float) -> np.ndarray:
    """``p`` scaled to sum to ``total`` with no value above 1 (capped values stay at 1,
    the rest share what is left)."""
    p = np.asarray(p, dtype=float).copy()
    capped = np.zeros(len(p), dtype=bool)
    for _ in range(len(p)):
        free = total - capped.sum()
        rest = p[~capped].sum()
        p[~capped] = p[~capped] * free / rest if rest > 0 else free / max((~capped).sum(), 1)
        over = (p > 1.0) & ~capped
        if not over.any():
            break
        p[over] = 1.0
        capped |= over
    return p


__all__ = [
    "group_softmax",
    "podium_by_grid",
    "practice_ratio",
    "quick_lgbm_gap",
    "stage2_baselines",
]
