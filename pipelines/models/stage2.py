"""Stage-2: a monotone LightGBM win classifier, softmax per race."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.features.spec import STAGE2, STAGE2_MONOTONE

if TYPE_CHECKING:  # LightGBM (and SciPy) load only where a model is fitted or loaded:
    import lightgbm as lgb  # not in the front service, not in BentoML's arbiter


def group_softmax(scores: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Softmax within each group (race): probabilities over a field sum to 1."""
    out = np.empty_like(scores, dtype=float)
    for g in np.unique(groups):
        m = groups == g
        s = scores[m] - scores[m].max()
        e = np.exp(s)
        out[m] = e / e.sum()
    return out


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
        import lightgbm as lgb

        ds = lgb.Dataset(x, label=y_win, feature_name=list(STAGE2.names))
        return cls(config, lgb.train(params, ds, num_boost_round=config.n_estimators))

    def raw_score(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(x, raw_score=True, num_threads=1))

    def logit(self, x: np.ndarray) -> np.ndarray:
        """Win log-odds, calibrated by the tuned temperature (softmax per race next)."""
        return self.raw_score(x) / self.config.temperature

    def explain_logit(self, x: np.ndarray) -> np.ndarray:
        """Per-feature contributions to ``logit`` (LightGBM's ``pred_contrib`` over the
        temperature): (rows, features + 1), the base value last; a row sums to the
        driver's logit."""
        contrib = np.asarray(self.booster.predict(x, pred_contrib=True, num_threads=1))
        return np.asarray(contrib / self.config.temperature, dtype=float)

    def win_probability(self, x: np.ndarray, groups: np.ndarray) -> np.ndarray:
        return group_softmax(self.logit(x), groups)

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(path / "booster.txt"))
        (path / "config.json").write_text(json.dumps(asdict(self.config), indent=2))

    @classmethod
    def load(cls, path: Path) -> Stage2Model:
        config = Stage2Config(**json.loads((path / "config.json").read_text()))
        import lightgbm as lgb

        booster = lgb.Booster(model_file=str(path / "booster.txt"))
        STAGE2.check(booster.feature_name(), None, str(path))
        return cls(config, booster)
