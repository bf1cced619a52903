"""Feature names and order: one spec per stage (a model trained on another list is
refused, ``FeatureSpec.check``), and rows filled by name."""

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


STAGE1_LABELS: Mapping[str, str] = {
    # practice at this event (gaps in % of the session's fastest lap)
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
    "c_rules_races": "races run under the current technical rules",
}
"""Stage-1's features in order, each with its label."""
STAGE1 = FeatureSpec("stage-1", tuple(STAGE1_LABELS), revision=3)
STAGE1_TEAM_FORM = ("t_q_gap_ewm", "t_points_ewm", "d_vs_team_gap")
"""The Stage-1 features a team without history lacks (a new entrant: NaN in serving)."""
STAGE1_FORM = ("d_q_gap_ewm", "d_q_gap_last", "d_q_pos_ewm", "d_points_ewm", *STAGE1_TEAM_FORM)
"""The Stage-1 features read from the cars' earlier results."""
STAGE1_UNBOOSTED = ("c_rules_races",)
"""Stage-1 inputs no booster is fitted on: they route a row to an ensemble."""
STAGE1_PRACTICE = tuple(n for n in STAGE1.names if n.startswith("p_"))
"""The Stage-1 features from the event's own practice (missing before the weekend)."""
STAGE1_PRACTICE_COUNTS = ("p_laps", "p_n_sessions")
"""Of those, the counts: 0 without practice, not NaN."""
STAGE2_LABELS: Mapping[str, str] = {
    # the grid and qualifying
    "grid": "starting position",
    "q_gap_pct": "qualifying gap to pole",
    "q_tm_gap": "qualifying gap to the teammate",
    # race form and the championship
    "d_r_pos_ewm": "driver's recent finishing positions",
    "d_points_ewm": STAGE1_LABELS["d_points_ewm"],
    "d_win_ewm": "driver's recent wins",
    "d_podium_ewm": "driver's recent podiums",
    "d_q_gap_ewm": STAGE1_LABELS["d_q_gap_ewm"],
    "t_points_ewm": STAGE1_LABELS["t_points_ewm"],
    "t_win_ewm": "team's recent wins",
    "d_champ_points": "driver's championship points",
    "d_champ_pos": "driver's championship position",
    "d_champ_share": "driver's points against the championship leader's",
    "c_champ_points": "team's championship points",
    "c_champ_pos": "team's championship position",
    "c_rules_races": STAGE1_LABELS["c_rules_races"],
}
"""Stage-2's features in order, each with its label."""
STAGE2 = FeatureSpec("stage-2", tuple(STAGE2_LABELS), revision=3)
STAGE2_UNBOOSTED = ("c_rules_races",)
"""Stage-2 inputs the booster is not fitted on: they steer the log-odds (``grid_lean``)."""
RULES_RESETS = (2009, 2014, 2017, 2022, 2026)
"""Seasons whose technical rules were rewritten (known years in advance)."""
STAGE2_MONOTONE = [-1.0 if n in ("grid", "q_gap_pct", "q_tm_gap") else 0.0 for n in STAGE2.names]
"""Win probability never rises with a worse grid slot or a slower qualifying lap."""

LABELS: Mapping[str, str] = {**STAGE1_LABELS, **STAGE2_LABELS}
"""What each feature means to a fan (explanations show these beside the names)."""


def label(name: str) -> str:
    """The feature's label (its name if it has none: a test keeps every feature labelled)."""
    return LABELS.get(name, name.replace("_", " "))
