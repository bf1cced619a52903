"""The two predictors, shared by training (fit) and serving (predict).

Boosters are saved as LightGBM text files and settings as JSON: no pickles, so a
stored model can be inspected and loaded without executing code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from pipelines.features import STAGE1_FEATURES, STAGE2_FEATURES, STAGE2_MONOTONE, PoleHistory


def group_softmax(scores: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Softmax within each group (race): probabilities over a field sum to 1."""
    out = np.empty_like(scores, dtype=float)
    for g in np.unique(groups):
        m = groups == g
        s = scores[m] - scores[m].max()
        e = np.exp(s)
        out[m] = e / e.sum()
    return out


# ------------------------------------------------------------------------ Stage-1


@dataclass
class PoleParams:
    """How the pole lap is estimated from the latest pre-qualifying session."""

    window: int = 40
    shrink: float = 3.0


@dataclass
class Stage1Config:
    members: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {"objective": "huber", "alpha": 1.0, "seed": 1},
            {"objective": "l1", "seed": 2},
            {"objective": "l2", "seed": 3},
        ]
    )
    num_leaves: int = 15
    n_estimators: int = 400
    learning_rate: float = 0.03
    min_child_samples: int = 20
    target_clip: float = 7.0
    dry_only: bool = False
    """Fit only on events whose pole beat practice (wet sessions are unpredictable noise)."""
    pole: PoleParams = field(default_factory=PoleParams)
    pole_tau: float = 0.3
    """Temperature (in gap %) turning predicted gaps into pole probabilities."""


class Stage1Model:
    """Ensemble of LightGBM regressors on the gap to pole (%), plus a pole-lap estimate."""

    def __init__(self, config: Stage1Config, boosters: Sequence[lgb.Booster]) -> None:
        self.config = config
        self.boosters = list(boosters)

    @classmethod
    def fit(cls, x: np.ndarray, y_gap: np.ndarray, config: Stage1Config) -> Stage1Model:
        y = np.clip(y_gap, 0.0, config.target_clip)
        boosters = []
        for m in config.members:
            params = {
                "objective": m["objective"],
                "num_leaves": config.num_leaves,
                "learning_rate": config.learning_rate,
                "min_data_in_leaf": config.min_child_samples,
                "feature_fraction": 0.8,
                "bagging_fraction": 0.8,
                "bagging_freq": 1,
                "seed": m.get("seed", 0),
                "num_threads": 1,
                "verbosity": -1,
                "deterministic": True,
            }
            if "alpha" in m:
                params["alpha"] = m["alpha"]
            ds = lgb.Dataset(x, label=y, feature_name=list(STAGE1_FEATURES), free_raw_data=True)
            boosters.append(lgb.train(params, ds, num_boost_round=config.n_estimators))
        return cls(config, boosters)

    def predict_gap(self, x: np.ndarray) -> np.ndarray:
        preds = [b.predict(x, num_threads=1) for b in self.boosters]
        return np.clip(np.mean(preds, axis=0), 0.0, None)

    def pole_probability(self, gap: np.ndarray, groups: np.ndarray) -> np.ndarray:
        return group_softmax(-gap / self.config.pole_tau, groups)

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        for i, b in enumerate(self.boosters):
            b.save_model(str(path / f"booster_{i}.txt"))
        (path / "config.json").write_text(json.dumps(asdict(self.config), indent=2))

    @staticmethod
    def load_config(path: Path) -> Stage1Config:
        """The settings alone (the front service needs the pole estimate, not the trees)."""
        raw = json.loads((path / "config.json").read_text())
        raw["pole"] = PoleParams(**raw["pole"])
        return Stage1Config(**raw)

    @classmethod
    def load(cls, path: Path) -> Stage1Model:
        config = cls.load_config(path)
        boosters = [
            lgb.Booster(model_file=str(path / f"booster_{i}.txt"))
            for i in range(len(config.members))
        ]
        for b in boosters:
            if b.feature_name() != list(STAGE1_FEATURES):
                raise ValueError(f"{path}: booster features do not match STAGE1_FEATURES")
        return cls(config, boosters)


def estimate_pole(
    history: pd.DataFrame | PoleHistory,
    session: str | None,
    ref_lap: float,
    layout_id: str | None,
    params: PoleParams,
    course_length: float = math.nan,
) -> float:
    """Pole lap (s) = best lap of the latest pre-qualifying session x typical ratio.

    The ratio is the median pole/reference ratio of the last ``window`` events whose
    reference was the same kind of session, nudged toward this layout's own past
    ratios (shrunk by ``shrink`` pseudo-visits). Without practice: the layout's last
    pole, else the course length at the typical pace.
    """
    h = history if isinstance(history, PoleHistory) else PoleHistory.from_frame(history)
    n = len(h.ratio)
    if session is not None and not math.isnan(ref_lap) and n:
        same = h.ratio[h.session == session][-params.window :]
        if not len(same):
            same = h.ratio[-params.window :]
        base = float(np.median(same))
        adj = 1.0
        if layout_id is not None:
            here = h.layout == layout_id
            if here.any():
                # each past visit's ratio relative to the typical ratio of its session kind
                typical = np.empty(n)
                for kind in np.unique(h.session):
                    m = h.session == kind
                    typical[m] = np.median(h.ratio[m])
                rel = h.ratio[here] / typical[here]
                k = len(rel)
                adj = 1.0 + (float(np.median(rel)) - 1.0) * k / (k + params.shrink)
        return ref_lap * base * adj
    if layout_id is not None and n:
        here = h.layout == layout_id
        if here.any():
            return float(h.pole_s[here][-1])
    if not math.isnan(course_length):
        return course_length * 17.5
    return math.nan


# ------------------------------------------------------------------------ Stage-2


def race_softmax_objective(
    groups: np.ndarray,
) -> Callable[[np.ndarray, lgb.Dataset], tuple[np.ndarray, np.ndarray]]:
    """Gradient and Hessian of the per-race softmax log loss (the conditional logit).

    Each race's winner competes only with that race's field, which is the question asked;
    a per-driver binary loss instead spends capacity on races that are not comparable.
    """
    index = [np.flatnonzero(groups == g) for g in np.unique(groups)]

    def objective(preds: np.ndarray, ds: lgb.Dataset) -> tuple[np.ndarray, np.ndarray]:
        y = np.asarray(ds.get_label())
        grad = np.empty_like(preds)
        hess = np.empty_like(preds)
        for ix in index:
            e = np.exp(preds[ix] - preds[ix].max())
            p = e / e.sum()
            grad[ix] = p - y[ix]
            hess[ix] = np.maximum(p * (1.0 - p), 1e-6)
        return grad, hess

    return objective


@dataclass
class Stage2Config:
    objective: str = "race_softmax"
    """"race_softmax": the per-race softmax (conditional logit) likelihood, boosted;
    "binary": per-driver log loss, normalised per race afterwards."""
    num_leaves: int = 7
    n_estimators: int = 300
    learning_rate: float = 0.03
    min_child_samples: int = 30
    temperature: float = 1.0
    """Per-race softmax temperature on the booster's log-odds, tuned on validation."""


class Stage2Model:
    """Monotone LightGBM win classifier; per-race softmax makes a field sum to 1."""

    def __init__(self, config: Stage2Config, booster: lgb.Booster) -> None:
        self.config = config
        self.booster = booster

    @classmethod
    def fit(
        cls, x: np.ndarray, y_win: np.ndarray, config: Stage2Config, groups: np.ndarray
    ) -> Stage2Model:
        """``groups`` (race ids) define the fields whose probabilities sum to 1."""
        params: dict[str, Any] = {
            "objective": "binary",
            "num_leaves": config.num_leaves,
            "learning_rate": config.learning_rate,
            "min_data_in_leaf": config.min_child_samples,
            "monotone_constraints": STAGE2_MONOTONE,
            "monotone_constraints_method": "advanced",
            "feature_fraction": 0.9,
            "seed": 7,
            "num_threads": 1,
            "verbosity": -1,
            "deterministic": True,
        }
        if config.objective == "race_softmax":
            params["objective"] = race_softmax_objective(groups)
        elif config.objective != "binary":
            raise ValueError(f"unknown Stage-2 objective {config.objective!r}")
        ds = lgb.Dataset(x, label=y_win, feature_name=list(STAGE2_FEATURES))
        return cls(config, lgb.train(params, ds, num_boost_round=config.n_estimators))

    def raw_score(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(x, raw_score=True, num_threads=1))

    def win_probability(self, x: np.ndarray, groups: np.ndarray) -> np.ndarray:
        return group_softmax(self.raw_score(x) / self.config.temperature, groups)

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(path / "booster.txt"))
        (path / "config.json").write_text(json.dumps(asdict(self.config), indent=2))

    @classmethod
    def load(cls, path: Path) -> Stage2Model:
        config = Stage2Config(**json.loads((path / "config.json").read_text()))
        booster = lgb.Booster(model_file=str(path / "booster.txt"))
        if booster.feature_name() != list(STAGE2_FEATURES):
            raise ValueError(f"{path}: booster features do not match STAGE2_FEATURES")
        return cls(config, booster)
