"""Stage-2: a monotone LightGBM win classifier stacked with a linear conditional logit,
softmax per race: log-odds ``(w * booster + (1 - w) * linear) / T``, leaning on a
grid-only logit early under new technical rules (``grid_lean``)."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.features.spec import STAGE2, STAGE2_MONOTONE, STAGE2_UNBOOSTED

if TYPE_CHECKING:  # LightGBM (and SciPy) load only where a model is fitted or loaded:
    import lightgbm as lgb  # not in the front service, not in BentoML's arbiter

    from pipelines.settings import Settings


@dataclass(frozen=True)
class Term:
    """One input of the linear part: a Stage-2 feature, optionally logged, NaN filled,
    clipped (monotone transforms, so its monotone constraint carries over)."""

    feature: str
    log: bool = False
    fill: float = 0.0
    lo: float = -math.inf
    hi: float = math.inf

    @property
    def name(self) -> str:
        return f"log_{self.feature}" if self.log else self.feature


LINEAR_TERMS: tuple[Term, ...] = (
    Term("grid", log=True, fill=20.0, lo=1.0),
    Term("q_gap_pct", fill=3.0, lo=0.0, hi=3.0),
    Term("q_tm_gap", fill=0.0, lo=-2.0, hi=2.0),
    Term("d_champ_share"),
    Term("c_champ_points"),
    Term("d_win_ewm"),
    Term("t_win_ewm"),
    Term("d_r_pos_ewm", fill=10.0),
    Term("t_points_ewm"),
)
BOOSTED = tuple(n for n in STAGE2.names if n not in STAGE2_UNBOOSTED)
_BOOSTED_AT = np.array([STAGE2.pos[n] for n in BOOSTED])


def boosted_columns(x: np.ndarray) -> np.ndarray:
    """The booster's inputs (``BOOSTED``) from Stage-2 rows (an array or a frame)."""
    return np.asarray(x, dtype=float)[:, _BOOSTED_AT]


GRID_TERMS: tuple[Term, ...] = (LINEAR_TERMS[0],)
"""The grid lean's input: a conditional logit on log(grid)."""
LINEAR_L2 = 1.0
"""Ridge penalty on the standardised coefficients of the linear part."""
RANK_DEPTH = 3
RANK_DECAY = 1.0
"""Stage-2 learns from each training race's first three finishers, weighted alike."""


def stage2_places(s: Settings) -> tuple[int, float]:
    """The places of each training race Stage-2 learns from, and their decay (settings)."""
    depth = RANK_DEPTH if s.stage2_rank_depth is None else s.stage2_rank_depth
    return depth, RANK_DECAY if s.stage2_rank_decay is None else s.stage2_rank_decay


def linear_design(x: np.ndarray, terms: tuple[Term, ...] = LINEAR_TERMS) -> np.ndarray:
    """The linear part's inputs (one column per entry of ``terms``) from Stage-2 rows."""
    cols = []
    for t in terms:
        v = np.asarray(x[:, STAGE2.pos[t.feature]], dtype=float)
        v = np.clip(np.where(np.isnan(v), t.fill, v), t.lo, t.hi)
        cols.append(np.log(v) if t.log else v)
    return np.column_stack(cols) if cols else np.empty((len(x), 0))


@dataclass(frozen=True)
class RankStages:
    """The choices of each race's first finishers as Plackett-Luce sees them (the winner
    from the field, second from the rest...). ``rows``: stage after stage, the rows still
    running; ``starts``, ``seg``: where each stage begins, each entry's stage; ``chosen``
    1 for the entry that took the place. A race stops at a place not held by one car."""

    rows: np.ndarray
    starts: np.ndarray
    seg: np.ndarray
    weight: np.ndarray
    chosen: np.ndarray

    @classmethod
    def of(
        cls,
        groups: np.ndarray,
        ranks: np.ndarray,
        depth: int = 1,
        decay: float = 1.0,
    ) -> RankStages:
        """Stages for the first ``depth`` places of each race (``groups``), place ``j``
        weighted ``decay ** (j - 1)``; ``ranks``: finishing positions (NaN: unclassified)."""
        g = np.asarray(groups)
        r = np.asarray(ranks, dtype=float)
        rows: list[np.ndarray] = []
        weight: list[float] = []
        chosen: list[np.ndarray] = []
        order = np.argsort(g, kind="stable")
        bounds = np.flatnonzero(np.r_[True, g[order][1:] != g[order][:-1], True])
        for lo, hi in itertools.pairwise(bounds):
            ix = order[lo:hi]
            rr = r[ix]
            for place in range(1, depth + 1):
                took = rr == place
                if int(took.sum()) != 1:
                    break
                left = ~(rr < place)  # NaN (not classified) compares False: still running
                rows.append(ix[left])
                chosen.append(took[left].astype(float))
                weight.append(decay ** (place - 1))
        if not rows:
            empty = np.empty(0, dtype=int)
            return cls(empty, empty, empty, np.empty(0), np.empty(0))
        sizes = np.array([len(v) for v in rows])
        return cls(
            rows=np.concatenate(rows),
            starts=np.r_[0, np.cumsum(sizes)[:-1]],
            seg=np.repeat(np.arange(len(rows)), sizes),
            weight=np.asarray(weight, dtype=float),
            chosen=np.concatenate(chosen),
        )

    def softmax(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per entry, its probability of taking its stage's place, and per stage the
        chosen entry's log-probability, from per-row ``scores``."""
        s = np.asarray(scores, dtype=float)[self.rows]
        s = s - np.maximum.reduceat(s, self.starts)[self.seg]
        e = np.exp(s)
        tot = np.add.reduceat(e, self.starts)
        p = e / tot[self.seg]
        return p, np.add.reduceat(s * self.chosen, self.starts) - np.log(tot)

    def per_row(self, values: np.ndarray, n: int) -> np.ndarray:
        """Per-entry ``values``, weighted by their stage's weight, summed per row."""
        return np.bincount(self.rows, weights=self.weight[self.seg] * values, minlength=n)


def finish_ranks(y_win: np.ndarray, ranks: np.ndarray | None) -> np.ndarray:
    """Finishing positions to fit on: ``ranks``, else the winner 1 and the others unplaced."""
    if ranks is not None:
        return np.asarray(ranks, dtype=float)
    return np.where(np.asarray(y_win, dtype=float) == 1.0, 1.0, np.nan)


def fit_linear(
    x: np.ndarray,
    y_win: np.ndarray,
    groups: np.ndarray,
    terms: tuple[Term, ...] = LINEAR_TERMS,
    ranks: np.ndarray | None = None,
    depth: int = 1,
    decay: float = 1.0,
) -> list[float]:
    """Raw-scale coefficients of the conditional logit (Plackett-Luce over the first
    ``depth`` places with ``ranks``; ridge on standardised inputs) on ``linear_design(x,
    terms)``, monotone-decreasing terms kept <= 0."""
    from scipy.optimize import minimize

    a = linear_design(x, terms)
    st = RankStages.of(groups, finish_ranks(y_win, ranks), depth, decay)
    if not len(st.rows):
        return [0.0] * len(terms)
    used = a[np.unique(st.rows)]
    mean, scale = used.mean(axis=0), used.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    z = (a - mean) / scale

    def nll(b: np.ndarray) -> tuple[float, np.ndarray]:
        p, logp = st.softmax(z @ b)
        loss = -float(st.weight @ logp) + LINEAR_L2 * float(b @ b)
        grad = -(z.T @ st.per_row(st.chosen - p, len(z))) + 2.0 * LINEAR_L2 * b
        return loss, grad

    sign = {n: c for n, c in zip(STAGE2.names, STAGE2_MONOTONE, strict=True)}
    bounds = [(None, 0.0) if sign[t.feature] < 0 else (None, None) for t in terms]
    res = minimize(nll, np.zeros(z.shape[1]), jac=True, method="L-BFGS-B", bounds=bounds)
    return [float(c) for c in res.x / scale]


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
    ranks: np.ndarray,
    depth: int = 1,
    decay: float = 1.0,
) -> Callable[[np.ndarray, lgb.Dataset], tuple[np.ndarray, np.ndarray]]:
    """Gradient and Hessian of the per-race softmax log loss (Plackett-Luce's over the
    first ``depth`` places): each race's cars compete only with that race's field."""
    st = RankStages.of(groups, ranks, depth, decay)

    def objective(preds: np.ndarray, ds: lgb.Dataset) -> tuple[np.ndarray, np.ndarray]:
        n = len(preds)
        if not len(st.rows):
            return np.zeros(n), np.full(n, 1e-6)
        p, _ = st.softmax(preds)
        grad = st.per_row(p - st.chosen, n)
        hess = st.per_row(p * (1.0 - p), n)
        return grad, np.maximum(hess, 1e-6)

    return objective


@dataclass
class Stage2Config:
    objective: str = "race_softmax"
    """"race_softmax" (the per-race softmax likelihood) or "binary" (per-driver log loss)."""
    num_leaves: int = 7
    n_estimators: int = 300
    learning_rate: float = 0.03
    min_child_samples: int = 30
    temperature: float = 1.0
    stack_weight: float = 1.0
    """Weight of the booster's log-odds; the linear conditional logit gets 1 - w."""
    linear_terms: list[str] = field(default_factory=list)
    linear_coef: list[float] = field(default_factory=list)
    linear_mean: list[float] = field(default_factory=list)
    """The linear part: ``LINEAR_TERMS``' names, raw-scale coefficients, training means."""
    reset_weight: float = 1.0
    """The grid lean's share of the log-odds at the first race under new technical rules."""
    reset_races: float = 4.0
    """Races under new rules over which that share falls linearly to 0."""
    grid_coef: list[float] = field(default_factory=list)
    grid_mean: list[float] = field(default_factory=list)
    rank_depth: int = RANK_DEPTH
    """Places of each training race Stage-2 is fitted on, place ``j`` weighted
    ``rank_decay ** (j - 1)``."""
    rank_decay: float = RANK_DECAY
    finish_rate: float = 1.0
    """The chance a car other than the winner is classified (``placings``)."""


def grid_lean_share(config: Stage2Config, rules_races: np.ndarray) -> np.ndarray:
    """The grid lean's share after ``rules_races`` races under the current rules (0 if
    unknown)."""
    n = np.asarray(rules_races, dtype=float)
    if not config.grid_coef or config.reset_weight <= 0.0 or config.reset_races <= 0.0:
        return np.zeros(n.shape)
    with np.errstate(invalid="ignore"):
        share = config.reset_weight * np.clip(1.0 - n / config.reset_races, 0.0, 1.0)
    return np.where(np.isnan(share), 0.0, share)


def grid_lean(config: Stage2Config, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per Stage-2 row, the grid lean's share and log-odds (the grid-only logit)."""
    rows = np.asarray(x, dtype=float)
    share = grid_lean_share(config, rows[:, STAGE2.pos["c_rules_races"]])
    if not share.any():
        return share, np.zeros(len(rows))
    return share, linear_design(rows, GRID_TERMS) @ np.asarray(config.grid_coef, dtype=float)


def apply_grid_lean(score: np.ndarray, share: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The served log-odds: ``score`` with ``share`` of each taken from the grid lean's."""
    return np.asarray(score if not share.any() else (1.0 - share) * score + share * grid)


class Stage2Model:
    """Monotone LightGBM win classifier; per-race softmax makes a field sum to 1."""

    def __init__(self, config: Stage2Config, booster: lgb.Booster) -> None:
        self.config = config
        self.booster = booster

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        y_win: np.ndarray,
        config: Stage2Config,
        groups: np.ndarray,
        ranks: np.ndarray | None = None,
    ) -> Stage2Model:
        """``groups`` (race ids) define the fields; ``ranks`` (finishing positions) let it
        learn from the first ``config.rank_depth`` places (without them: the winner)."""
        places = finish_ranks(y_win, ranks)
        if ranks is None:  # the winners alone: say so in the saved configuration
            config = replace(config, rank_depth=1)
        depth = config.rank_depth
        params: dict[str, Any] = {
            "objective": "binary",
            "num_leaves": config.num_leaves,
            "learning_rate": config.learning_rate,
            "min_data_in_leaf": config.min_child_samples,
            "monotone_constraints": [int(STAGE2_MONOTONE[i]) for i in _BOOSTED_AT],
            "monotone_constraints_method": "advanced",
            "feature_fraction": 0.9,
            "feature_pre_filter": False,  # tiny data: a stump, not "no features" (fatal)
            "seed": 7,
            "num_threads": 1,
            "verbosity": -1,
            "deterministic": True,
        }
        if config.objective == "race_softmax":
            params["objective"] = race_softmax_objective(groups, places, depth, config.rank_decay)
        elif config.objective != "binary":
            raise ValueError(f"unknown Stage-2 objective {config.objective!r}")
        import lightgbm as lgb

        ds = lgb.Dataset(boosted_columns(x), label=y_win, feature_name=list(BOOSTED))
        booster = lgb.train(params, ds, num_boost_round=config.n_estimators)
        config = replace(
            config,
            grid_coef=fit_linear(x, y_win, groups, GRID_TERMS),
            grid_mean=[float(v) for v in linear_design(np.asarray(x), GRID_TERMS).mean(axis=0)],
        )
        if config.stack_weight < 1.0:
            config = replace(
                config,
                linear_terms=[t.name for t in LINEAR_TERMS],
                linear_coef=fit_linear(
                    x, y_win, groups, ranks=places, depth=depth, decay=config.rank_decay
                ),
                linear_mean=[float(v) for v in linear_design(np.asarray(x)).mean(axis=0)],
            )
        return cls(config, booster)

    def raw_score(self, x: np.ndarray) -> np.ndarray:
        """The booster's log-odds alone."""
        return np.asarray(self.booster.predict(boosted_columns(x), raw_score=True, num_threads=1))

    def linear_score(self, x: np.ndarray) -> np.ndarray:
        """The linear conditional logit's log-odds (0 when it was not fitted)."""
        if not self.config.linear_coef:
            return np.zeros(len(x))
        rows = np.asarray(x, dtype=float)  # a frame with the STAGE2 columns works too
        return np.asarray(linear_design(rows) @ np.asarray(self.config.linear_coef, dtype=float))

    def logit(self, x: np.ndarray) -> np.ndarray:
        """Win log-odds: booster and linear part stacked, over the temperature, grid lean."""
        w = self.config.stack_weight
        score = self.raw_score(x) if w >= 1.0 else w * self.raw_score(x)
        if w < 1.0:
            score = score + (1.0 - w) * self.linear_score(x)
        return apply_grid_lean(score / self.config.temperature, *grid_lean(self.config, x))

    def explain_logit(self, x: np.ndarray) -> np.ndarray:
        """Per-feature contributions to ``logit``: (rows, features + 1), the base value
        last (LightGBM's ``pred_contrib`` and ``_add_linear``, weighted as in ``logit``)."""
        w = self.config.stack_weight
        rows = np.asarray(x, dtype=float)
        tree = np.asarray(
            self.booster.predict(boosted_columns(rows), pred_contrib=True, num_threads=1)
        )
        contrib = np.zeros((len(tree), len(STAGE2) + 1))
        contrib[:, _BOOSTED_AT] = tree[:, :-1]
        contrib[:, -1] = tree[:, -1]
        contrib = w * contrib if w < 1.0 else contrib
        c = self.config
        if w < 1.0 and c.linear_coef:
            _add_linear(contrib, rows, LINEAR_TERMS, c.linear_coef, c.linear_mean, 1.0 - w)
        contrib = contrib / c.temperature
        share, _ = grid_lean(c, rows)
        if share.any():
            contrib = contrib * (1.0 - share)[:, None]
            _add_linear(contrib, rows, GRID_TERMS, c.grid_coef, c.grid_mean, share)
        return np.asarray(contrib, dtype=float)

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(path / "booster.txt"))
        (path / "config.json").write_text(json.dumps(asdict(self.config), indent=2))

    @classmethod
    def load(cls, path: Path) -> Stage2Model:
        config = cls.load_config(path)
        import lightgbm as lgb

        booster = lgb.Booster(model_file=str(path / "booster.txt"))
        STAGE2.check([*booster.feature_name(), *STAGE2_UNBOOSTED], None, str(path))
        return cls(config, booster)

    @staticmethod
    def load_config(path: Path) -> Stage2Config:
        """The saved configuration (older: fitted on winners); ValueError if its linear
        part is on other terms than the code's."""
        raw = json.loads((path / "config.json").read_text())
        config = Stage2Config(**{"rank_depth": 1} | raw)
        terms = [t.name for t in LINEAR_TERMS]
        if config.linear_coef and config.linear_terms != terms:
            raise ValueError(
                f"model '{path}' has a linear part on {config.linear_terms}, the code's terms "
                f"are {terms}. Run `f1 train` to train models for this code."
            )
        return config


def _add_linear(
    contrib: np.ndarray,
    x: np.ndarray,
    terms: tuple[Term, ...],
    coef: list[float],
    mean: list[float],
    weight: float | np.ndarray,
) -> None:
    """Add a linear part's contributions to ``contrib``: ``weight`` x coefficient x the
    car's distance from the training mean, on each term's feature."""
    b = np.asarray(coef, dtype=float)
    m = np.asarray(mean or np.zeros(len(b)), dtype=float)
    design = linear_design(x, terms)
    for j, term in enumerate(terms):
        contrib[:, STAGE2.pos[term.feature]] += weight * b[j] * (design[:, j] - m[j])
    contrib[:, -1] += weight * float(b @ m)
