"""Stage-1: an ensemble of LightGBM regressors on the gap to pole (%), saved as LightGBM
text files and JSON settings (no pickles: loading runs no stored code)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.features.spec import (
    STAGE1,
    STAGE1_FORM,
    STAGE1_PRACTICE,
    STAGE1_PRACTICE_COUNTS,
    STAGE1_TEAM_FORM,
    STAGE1_UNBOOSTED,
)
from pipelines.models.pole import PoleParams

if TYPE_CHECKING:  # LightGBM (and SciPy) load only where a model is fitted or loaded:
    import lightgbm as lgb  # not in the front service, not in BentoML's arbiter


@dataclass
class Stage1Config:
    members: list[dict[str, Any]] = field(
        default_factory=lambda: [{"objective": "l1", "seed": seed} for seed in (1, 2, 3)]
    )
    """Three l1 boosters with different bagging seeds: the target is scored by MAE."""
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
    pole_tau_ahead: float | None = None
    """The same for a field without a practice lap (None: ``pole_tau``)."""
    new_team_share: float = 0.1
    """Share of (event, team) pairs fitted with the team's form blanked (a new team)."""
    new_team_seed: int = 0
    form_model: bool = True
    """Also fit a form-only ensemble (practice blanked) for cars without a practice lap."""
    practice_model: bool = True
    """Also fit a practice-only ensemble for the first race under new technical rules."""


BOOSTED = tuple(n for n in STAGE1.names if n not in STAGE1_UNBOOSTED)
"""The Stage-1 features the boosters are fitted on (all but ``STAGE1_UNBOOSTED``)."""
_BOOSTED_AT = np.array([STAGE1.pos[n] for n in BOOSTED])


def boosted_columns(x: np.ndarray) -> np.ndarray:
    """The boosters' inputs (``BOOSTED``) from Stage-1 rows."""
    return np.asarray(x, dtype=float)[:, _BOOSTED_AT]


def first_under_new_rules(x: np.ndarray) -> np.ndarray:
    """Which Stage-1 rows are of the first race under new technical rules (``c_rules_races``
    0; NaN, rules older than the data, is not)."""
    return np.asarray(x[:, STAGE1.pos["c_rules_races"]] == 0, dtype=bool)


def _blanked(x: np.ndarray, names: Sequence[str], rows: np.ndarray | None) -> np.ndarray:
    """A copy of Stage-1 rows with ``names`` missing (NaN, 0 for the practice counts) in
    ``rows`` (a boolean mask; every row when None)."""
    out = np.array(x, dtype=float, copy=True)
    at = slice(None) if rows is None else rows
    for name in names:
        out[at, STAGE1.pos[name]] = 0.0 if name in STAGE1_PRACTICE_COUNTS else np.nan
    return out


def without_form(x: np.ndarray) -> np.ndarray:
    """Stage-1 rows with ``STAGE1_FORM`` blanked: the practice-only ensemble's view."""
    return _blanked(x, STAGE1_FORM, None)


def blank_team_form(x: np.ndarray, teams: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Stage-1 rows with the team form blanked for a seeded ``share`` of the (event, team)
    keys in ``teams`` (both cars of a picked team)."""
    keys, inverse = np.unique(np.asarray(teams).astype(str), return_inverse=True)
    picked = np.random.default_rng(seed).random(len(keys)) < share
    return without_team_form(x, picked[inverse])


def without_team_form(x: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Stage-1 rows with ``STAGE1_TEAM_FORM`` blanked, as a team without history has it."""
    return _blanked(x, STAGE1_TEAM_FORM, rows)


def without_practice(x: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Stage-1 rows with no practice in ``rows`` (every row when None)."""
    return _blanked(x, STAGE1_PRACTICE, rows)


def no_practice(x: np.ndarray) -> np.ndarray:
    """Which Stage-1 rows have no practice lap at all (the form-only ensemble's rows)."""
    return np.asarray(x[:, STAGE1.pos["p_n_sessions"]] == 0, dtype=bool)


ENSEMBLES = ("", "form_", "practice_")
"""File prefixes of the main, form-only and practice-only ensembles' boosters."""


class Stage1Model:
    """Ensemble of LightGBM regressors on the gap to pole (%), plus a pole-lap estimate."""

    def __init__(
        self,
        config: Stage1Config,
        boosters: Sequence[lgb.Booster],
        form_boosters: Sequence[lgb.Booster] = (),
        practice_boosters: Sequence[lgb.Booster] = (),
    ) -> None:
        self.config = config
        self.boosters = list(boosters)
        self.form_boosters = list(form_boosters)
        self.practice_boosters = list(practice_boosters)

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        y_gap: np.ndarray,
        config: Stage1Config,
        teams: np.ndarray | None = None,
        form: bool = True,
    ) -> Stage1Model:
        """``teams``: one (event, team) key per row, for ``blank_team_form``. ``form``
        False skips the form-only and practice-only ensembles."""
        y = np.clip(y_gap, 0.0, config.target_clip)
        practice_x = without_form(x) if form and config.practice_model else None
        if teams is not None and config.new_team_share > 0:
            x = blank_team_form(x, teams, config.new_team_share, config.new_team_seed)
        boosters = _fit_members(x, y, config)
        if not form:
            return cls(config, boosters)
        return cls(
            config,
            boosters,
            _fit_members(without_practice(x), y, config) if config.form_model else (),
            _fit_members(practice_x, y, config) if practice_x is not None else (),
        )

    def _routed(self, x: np.ndarray, contrib: bool) -> np.ndarray:
        """Each row by its ensemble (when fitted): the form-only one for a car without a
        practice lap, the practice-only one at the first race under new rules, else the main."""
        x = np.asarray(x, dtype=float)
        none, laps = np.zeros(len(x), dtype=bool), ~no_practice(x)
        form = ~laps if self.form_boosters else none
        practice = first_under_new_rules(x) & laps if self.practice_boosters else none
        if not (form.any() or practice.any()):  # the usual case
            return _mean_predict(self.boosters, x, contrib)
        width = len(STAGE1) + 1 if contrib else None
        out = np.empty((len(x), width) if width else len(x), dtype=float)
        for rows, boosters in (
            (~(form | practice), self.boosters),
            (form, self.form_boosters),
            (practice, self.practice_boosters),
        ):
            if rows.any():
                out[rows] = _mean_predict(boosters, x[rows], contrib)
        return out

    def raw_gap(self, x: np.ndarray) -> np.ndarray:
        """The ensemble's mean prediction (gap to pole %), before it is floored at 0."""
        return self._routed(x, contrib=False)

    def predict_gap(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(np.clip(self.raw_gap(x), 0.0, None))

    def explain_gap(self, x: np.ndarray) -> np.ndarray:
        """Per-feature contributions to ``raw_gap`` (LightGBM's ``pred_contrib``, averaged
        over the row's ensemble): (rows, features + 1), the base value last."""
        return self._routed(x, contrib=True)

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        ensembles = (self.boosters, self.form_boosters, self.practice_boosters)
        for prefix, boosters in zip(ENSEMBLES, ensembles, strict=True):
            for i, b in enumerate(boosters):
                b.save_model(str(path / f"{prefix}booster_{i}.txt"))
        (path / "config.json").write_text(json.dumps(asdict(self.config), indent=2))

    @staticmethod
    def load_config(path: Path) -> Stage1Config:
        """The settings alone (older models: fitted without the later options)."""
        raw = json.loads((path / "config.json").read_text())
        raw["pole"] = PoleParams(**raw["pole"])
        old = {"new_team_share": 0.0, "form_model": False, "practice_model": False}
        return Stage1Config(**(old | raw))

    @classmethod
    def load(cls, path: Path) -> Stage1Model:
        import lightgbm as lgb

        config = cls.load_config(path)
        members = range(len(config.members))
        fitted = (True, config.form_model, config.practice_model)
        ensembles = [
            [lgb.Booster(model_file=str(path / f"{prefix}booster_{i}.txt")) for i in members]
            if on
            else []
            for prefix, on in zip(ENSEMBLES, fitted, strict=True)
        ]
        for b in itertools.chain(*ensembles):
            STAGE1.check([*b.feature_name(), *STAGE1_UNBOOSTED], None, str(path))
        return cls(config, *ensembles)


def _fit_members(x: np.ndarray, y: np.ndarray, config: Stage1Config) -> list[lgb.Booster]:
    """One LightGBM booster per ensemble member, on the same rows."""
    import lightgbm as lgb

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
        ds = lgb.Dataset(boosted_columns(x), label=y, feature_name=list(BOOSTED))
        boosters.append(lgb.train(params, ds, num_boost_round=config.n_estimators))
    return boosters


def _mean_predict(
    boosters: Sequence[lgb.Booster], x: np.ndarray, contrib: bool = False
) -> np.ndarray:
    xb = boosted_columns(x)
    preds = [
        np.asarray(b.predict(xb, pred_contrib=contrib, num_threads=1), dtype=float)
        for b in boosters
    ]
    mean = np.asarray(np.mean(preds, axis=0), dtype=float)
    if not contrib:
        return mean
    out = np.zeros((len(x), len(STAGE1) + 1))  # an unboosted input contributes nothing
    out[:, _BOOSTED_AT] = mean[:, :-1]
    out[:, -1] = mean[:, -1]
    return out
