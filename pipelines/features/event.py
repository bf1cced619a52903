"""An event and its field as serving passes them: plain Python and numpy, so a process
without the snapshot (BentoML's arbiter, the model services) never imports pandas."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class EventContext:
    """What is known about an event before its weekend (no results)."""

    season: int
    date: pd.Timestamp
    round: int | None = None
    race_id: int | None = None
    circuit_id: str | None = None
    layout_id: str | None = None
    circuit_type: str | None = None
    course_length: float = math.nan
    is_sprint: bool = False
    grand_prix_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "season": self.season,
            "round": self.round,
            "date": self.date.date().isoformat(),
            "circuit_id": self.circuit_id,
            "race_id": self.race_id,
            "is_sprint": self.is_sprint,
        }


@dataclass
class Entry:
    """One driver at one event, with whatever is known before qualifying."""

    driver_id: str
    constructor_id: str | None = None
    practice: dict[str, float] = field(default_factory=dict)
    laps: dict[str, float] = field(default_factory=dict)
    grid: float | None = None
    quali_time: float | None = None


@dataclass
class EventField:
    """Every car at an event and every lap set before its qualifying (what each driver's
    features are relative to): the data's entry list with a request's drivers merged in."""

    entries: list[Entry]
    laps: dict[str, dict[str, float]] = field(default_factory=dict)
    """session -> driver -> best lap (s); reserve drivers' FP1 laps included."""
    as_in_data: bool = False
    """The event's field exactly as the data has it (its feature rows are memoised)."""

    def index(self, driver_ids: Sequence[str]) -> np.ndarray:
        """Positions of these drivers in ``entries``."""
        pos = {e.driver_id: i for i, e in enumerate(self.entries)}
        return np.array([pos[d] for d in driver_ids], dtype=np.int64)


def day_number(ts: pd.Timestamp | Any) -> int:
    """Days since the epoch: the time axis of every history."""
    import pandas as pd  # only where the snapshot is, so already imported

    return int(pd.Timestamp(ts).value // 86_400_000_000_000)


@dataclass(frozen=True)
class PoleHistory:
    """Past events with a pole lap, oldest first, as arrays (what the estimate reads)."""

    session: np.ndarray
    layout: np.ndarray
    ratio: np.ndarray
    pole_s: np.ndarray
    day: np.ndarray
    course_length: np.ndarray
    """km (NaN where F1DB does not give it)."""

    @classmethod
    def from_frame(cls, history: pd.DataFrame) -> PoleHistory:
        return cls(
            history["session"].to_numpy(object),
            history["layout_id"].to_numpy(object),
            history["ratio"].to_numpy(float),
            history["pole_s"].to_numpy(float),
            history["day"].to_numpy(np.int64),
            history["course_length"].to_numpy(float),
        )

    def head(self, n: int) -> PoleHistory:
        """The first ``n`` events (history is sorted by day, so: those before a day)."""
        return PoleHistory(*(getattr(self, f.name)[:n] for f in fields(self)))
