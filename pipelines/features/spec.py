"""Feature names and order: one spec per stage, and rows filled by name.

The spec is the contract between the feature code, the stored models and serving: a
model records the names it was trained on, and serving refuses a model whose list
differs from the code's (``FeatureSpec.check``), naming the difference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

PRACTICE_SESSIONS = ("fp1", "fp2", "fp3", "sq")
"""Pre-qualifying sessions used as features; the order is their order in a weekend."""


class FeatureMismatch(ValueError):
    """A stored model was trained on other features than the code builds."""


@dataclass(frozen=True)
class FeatureSpec:
    """The ordered feature names of one stage (and a revision for changed meanings)."""

    stage: str
    names: tuple[str, ...]
    revision: int = 1
    """Raised when a feature keeps its name but changes its meaning (retrain needed)."""
    pos: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"{self.stage}: duplicated feature names")
        object.__setattr__(self, "pos", {n: i for i, n in enumerate(self.names)})

    def __len__(self) -> int:
        return len(self.names)

    def rows(self, n: int) -> Rows:
        """``n`` empty rows (NaN: LightGBM's missing value) to fill column by name."""
        return Rows(self, np.full((n, len(self.names)), np.nan))

    def vector(self, values: Mapping[str, float], default: float = 0.0) -> list[float]:
        """A per-feature list (e.g. monotone constraints) from the named exceptions."""
        unknown = set(values) - set(self.names)
        if unknown:
            raise KeyError(f"{self.stage}: no feature named {sorted(unknown)}")
        return [values.get(n, default) for n in self.names]

    def check(self, stored: Sequence[str], revision: int | None, model: str) -> None:
        """Raise ``FeatureMismatch`` naming what differs between a model and the code."""
        stored = list(stored)
        if stored == list(self.names) and revision in (None, self.revision):
            return
        missing = [n for n in self.names if n not in stored]
        extra = [n for n in stored if n not in self.names]
        parts = []
        if missing:
            parts.append(f"the code builds {missing} which the model lacks")
        if extra:
            parts.append(f"the model expects {extra} which the code no longer builds")
        if not parts and stored != list(self.names):
            parts.append("same names in another order")
        if revision not in (None, self.revision):
            parts.append(f"features revision {revision}, the code's is {self.revision}")
        raise FeatureMismatch(
            f"model '{model}' was trained on other {self.stage} features than this code "
            f"builds: {'; '.join(parts)}. Run `f1 train` to train models for this code."
        )


class Rows:
    """A feature matrix whose columns are read and written by name."""

    __slots__ = ("spec", "x")

    def __init__(self, spec: FeatureSpec, x: np.ndarray) -> None:
        self.spec = spec
        self.x = x

    def __setitem__(self, name: str, values: np.ndarray | float) -> None:
        self.x[:, self.spec.pos[name]] = values

    def __getitem__(self, name: str) -> np.ndarray:
        return self.x[:, self.spec.pos[name]]


STAGE1 = FeatureSpec(
    "stage-1",
    (
        "p_fp1_gap",
        "p_fp2_gap",
        "p_fp3_gap",
        "p_sq_gap",
        "p_best_gap",
        "p_last_gap",
        "p_mean_rank",
        "p_laps",
        "p_n_sessions",
        "p_tm_gap",
        "d_q_gap_ewm",
        "d_q_gap_last",
        "d_q_pos_ewm",
        "d_n_events",
        "d_points_ewm",
        "t_q_gap_ewm",
        "t_points_ewm",
        "d_vs_team_gap",
        "c_street",
        "c_sprint",
        "c_length_km",
        "c_rules_races",
    ),
    revision=3,  # 3: races under the current rules (routing); 2: practice rank field-wide
)
STAGE1_TEAM_FORM = ("t_q_gap_ewm", "t_points_ewm", "d_vs_team_gap")
"""The Stage-1 features a team without history lacks (a new entrant: NaN in serving)."""
STAGE1_FORM = (
    "d_q_gap_ewm",
    "d_q_gap_last",
    "d_q_pos_ewm",
    "d_points_ewm",
    *STAGE1_TEAM_FORM,
)
"""The Stage-1 features read from the cars' earlier results: at the first race under new
technical rules they are about cars that no longer race (the practice-only ensemble
predicts those rows without them). A driver's experience (``d_n_events``) is not."""
STAGE1_UNBOOSTED = ("c_rules_races",)
"""Stage-1 inputs no booster is fitted on: they route a row to an ensemble
(``Stage1Model``), they are not a pace signal."""
STAGE1_PRACTICE = tuple(n for n in STAGE1.names if n.startswith("p_"))
"""The Stage-1 features from the event's own practice: NaN (counts 0) for an event whose
practice is not in the data yet, as for a forecast made days before the weekend."""
STAGE1_PRACTICE_COUNTS = ("p_laps", "p_n_sessions")
"""Of those, the counts: 0 without practice, not NaN."""
STAGE2 = FeatureSpec(
    "stage-2",
    (
        "grid",
        "q_gap_pct",
        "q_tm_gap",
        "d_r_pos_ewm",
        "d_points_ewm",
        "d_win_ewm",
        "d_podium_ewm",
        "d_q_gap_ewm",
        "t_points_ewm",
        "t_win_ewm",
        "d_champ_points",
        "d_champ_pos",
        "d_champ_share",
        "c_champ_points",
        "c_champ_pos",
        "c_rules_races",
    ),
    revision=3,  # 3: races run under the current technical rules (the reset blend)
)
STAGE2_UNBOOSTED = ("c_rules_races",)
"""Stage-2 inputs the booster is not fitted on (left out of its inputs): they steer how
the log-odds are used (``stage2.grid_lean``), not what they are."""
RULES_RESETS = (2009, 2014, 2017, 2022, 2026)
"""Seasons whose technical rules were rewritten (aero and KERS, hybrid turbo engines, wide
cars, ground effect, the 2026 engines and active aero): known years in advance, so a
feature may use them. The order of the field before such a season says little about the
order after it."""
STAGE2_MONOTONE = STAGE2.vector({"grid": -1, "q_gap_pct": -1, "q_tm_gap": -1})
"""Win probability never rises with a worse grid slot or a slower qualifying lap."""

LABELS: Mapping[str, str] = {
    # Stage-1: practice at this event (gaps in % of the session's fastest lap)
    "p_fp1_gap": "FP1 gap to the fastest",
    "p_fp2_gap": "FP2 gap to the fastest",
    "p_fp3_gap": "FP3 gap to the fastest",
    "p_sq_gap": "sprint qualifying gap to the fastest",
    "p_best_gap": "best practice gap to the fastest",
    "p_last_gap": "latest practice session's gap to the fastest",
    "p_mean_rank": "average practice position",
    "p_laps": "practice laps run",
    "p_n_sessions": "practice sessions run",
    "p_tm_gap": "practice gap to the teammate",
    # form before the event
    "d_q_gap_ewm": "driver's recent qualifying pace",
    "d_q_gap_last": "driver's qualifying gap last time out",
    "d_q_pos_ewm": "driver's recent qualifying positions",
    "d_n_events": "driver's experience (events)",
    "d_points_ewm": "driver's recent points",
    "t_q_gap_ewm": "team's recent qualifying pace",
    "t_points_ewm": "team's recent points",
    "d_vs_team_gap": "driver's recent pace against the team's",
    # the circuit and the weekend
    "c_street": "street circuit",
    "c_sprint": "sprint weekend",
    "c_length_km": "lap length",
    # Stage-2: the grid and qualifying
    "grid": "starting position",
    "q_gap_pct": "qualifying gap to pole",
    "q_tm_gap": "qualifying gap to the teammate",
    "c_rules_races": "races run under the current technical rules",
    # race form and the championship
    "d_r_pos_ewm": "driver's recent finishing positions",
    "d_win_ewm": "driver's recent wins",
    "d_podium_ewm": "driver's recent podiums",
    "t_win_ewm": "team's recent wins",
    "d_champ_points": "driver's championship points",
    "d_champ_pos": "driver's championship position",
    "d_champ_share": "driver's points against the championship leader's",
    "c_champ_points": "team's championship points",
    "c_champ_pos": "team's championship position",
}
"""What each feature means to a fan (explanations show these beside the names)."""


def label(name: str) -> str:
    """The feature's label (its name if it has none: a test keeps every feature labelled)."""
    return LABELS.get(name, name.replace("_", " "))
