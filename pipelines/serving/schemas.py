"""Request and response models of the prediction API (and of the Python client).

The ``EXAMPLES`` here feed the Swagger UI, the README and the tests.
"""

from __future__ import annotations

import math
import re
from datetime import date as Date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipelines.f1db.laptime import parse_time

MAX_DRIVERS = 30
LAP_MIN_S, LAP_MAX_S = 20.0, 300.0
"""Plausible single-lap range; anything outside is a typo or a unit error."""

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


def _lap(value: Any, field: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"{field}: expected seconds or 'm:ss.fff', got a boolean")
    try:
        t = parse_time(value)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None
    if not math.isfinite(t):
        raise ValueError(f"{field}: lap time must be a finite number of seconds")
    if not LAP_MIN_S <= t <= LAP_MAX_S:
        raise ValueError(f"{field}: {t:g} s is not a plausible lap ({LAP_MIN_S:g}-{LAP_MAX_S:g} s)")
    return t


class PracticeTimes(BaseModel):
    """Best laps in the sessions held before qualifying (seconds or "1:29.374")."""

    model_config = ConfigDict(extra="forbid")
    fp1: float | str | None = Field(None, description="Best FP1 lap.", examples=["1:27.128"])
    fp2: float | str | None = Field(None, description="Best FP2 lap.", examples=[87.2])
    fp3: float | str | None = Field(None, description="Best FP3 lap.", examples=["1:26.901"])
    sq: float | str | None = Field(
        None, description="Best sprint-qualifying lap (2024+ sprint weekends: before qualifying)."
    )

    @field_validator("fp1", "fp2", "fp3", "sq", mode="before")
    @classmethod
    def _check(cls, v: Any, info: Any) -> float | None:
        return _lap(v, info.field_name)

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.model_dump().items() if v is not None}


class DriverInput(BaseModel):
    """One driver. Only ``driver_id`` is required; other known fields sharpen the answer.

    Unknown extra fields are accepted (the original API sent ``temperature`` and
    ``humidity``); the response's warnings say that the model does not use them.
    """

    model_config = ConfigDict(extra="allow")
    driver_id: str | int = Field(
        ...,
        description="F1DB driver id (e.g. 'max-verstappen') or the car number raced that season.",
        examples=["max-verstappen", 1],
    )
    constructor_id: str | None = Field(
        None,
        description="F1DB constructor id; default: the driver's latest team.",
        examples=["red-bull"],
    )
    practice: PracticeTimes | None = Field(None, description="Pre-qualifying best laps.")
    grid_position: int | None = Field(
        None, ge=1, le=MAX_DRIVERS, description="Starting slot, when known (/predict_race)."
    )
    qualifying_time: float | str | None = Field(
        None, description="Best qualifying lap, when known (/predict_race)."
    )
    temperature: float | None = Field(
        None, allow_inf_nan=False, description="Accepted for compatibility; not used by the model."
    )
    humidity: float | None = Field(
        None, allow_inf_nan=False, description="Accepted for compatibility; not used by the model."
    )

    @field_validator("driver_id", mode="before")
    @classmethod
    def _driver(cls, v: Any) -> str | int:
        if isinstance(v, bool):
            raise ValueError("expected an F1DB id or a car number")
        if isinstance(v, int):
            if not 0 <= v <= 99:
                raise ValueError(f"car number {v} is outside 0-99")
            return v
        if isinstance(v, str):
            s = v.strip()
            if s.isdigit() and s.isascii():
                return cls._driver(int(s))
            if not _ID_RE.match(s):
                raise ValueError(
                    "expected an F1DB id (lowercase letters, digits and '-', e.g. "
                    "'max-verstappen') or a car number"
                )
            return s
        raise ValueError("expected an F1DB id or a car number")

    @field_validator("constructor_id", mode="before")
    @classmethod
    def _team(cls, v: Any) -> str | None:
        if v is None:
            return None
        if not isinstance(v, str) or not _ID_RE.match(v.strip()):
            raise ValueError("expected an F1DB constructor id such as 'red-bull'")
        return v.strip()

    @field_validator("qualifying_time", mode="before")
    @classmethod
    def _qtime(cls, v: Any) -> float | None:
        return _lap(v, "qualifying_time")

    def extra_inputs(self) -> list[str]:
        """Inputs accepted for compatibility that the model does not use."""
        unused = [k for k in ("temperature", "humidity") if getattr(self, k) is not None]
        return unused + sorted((self.model_extra or {}).keys())


class EventInput(BaseModel):
    """An event in the data (season + round) or one that is not (season + circuit + race
    date in that season; the data's event when it has one there on that date)."""

    model_config = ConfigDict(extra="forbid")
    season: int = Field(..., ge=1950, le=2100, description="Championship year.", examples=[2025])
    round: int | None = Field(None, ge=1, le=30, description="Round in the season.", examples=[8])
    circuit_id: str | None = Field(None, description="F1DB circuit id.", examples=["monaco"])
    date: Date | None = Field(None, description="Race date, YYYY-MM-DD.", examples=["2026-06-07"])

    @field_validator("circuit_id", mode="before")
    @classmethod
    def _circuit(cls, v: Any) -> str | None:
        if v is None:
            return None
        if not isinstance(v, str) or not _ID_RE.match(v.strip()):
            raise ValueError(
                "expected an F1DB circuit id (lower-case letters, digits and hyphens) such as "
                "'monaco' or 'yas-marina'"
            )
        return v.strip()

    @model_validator(mode="after")
    def _one_form(self) -> EventInput:
        if self.round is None and (self.circuit_id is None or self.date is None):
            raise ValueError("give either 'round', or both 'circuit_id' and 'date'")
        if self.date is not None and not 1950 <= self.date.year <= 2100:
            raise ValueError("date must be between 1950 and 2100")
        if self.date is not None and self.date.year != self.season:
            raise ValueError(
                f"date {self.date.isoformat()} is not in season {self.season} (a season is "
                "one calendar year)"
            )
        return self


def _check_drivers(v: list[DriverInput] | None) -> list[DriverInput] | None:
    if v is not None and len(v) == 0:
        raise ValueError("must not be empty (omit 'drivers' to use the event's entry list)")
    return v


EXPLAIN_DESCRIPTION = (
    "Add an `explanation` to each driver's prediction: what moved the model's output, "
    "feature by feature (LightGBM contributions). Off by default, and free when off."
)


class QualiRequest(BaseModel):
    """Predict qualifying. Omit ``drivers`` for an event in the data to use its entry list."""

    model_config = ConfigDict(extra="forbid")
    event: EventInput | None = Field(None, description="Default: the next event in the calendar.")
    drivers: list[DriverInput] | None = Field(None, max_length=MAX_DRIVERS)
    session_type: Literal["qualifying"] = Field("qualifying", description="Only 'qualifying'.")
    explain: bool = Field(False, description=EXPLAIN_DESCRIPTION)

    @field_validator("drivers")
    @classmethod
    def _drivers(cls, v: list[DriverInput] | None) -> list[DriverInput] | None:
        return _check_drivers(v)


class RaceRequest(BaseModel):
    """Predict the race winner; a missing grid position comes from Stage-1."""

    model_config = ConfigDict(extra="forbid")
    event: EventInput | None = Field(None, description="Default: the next event in the calendar.")
    drivers: list[DriverInput] | None = Field(None, max_length=MAX_DRIVERS)
    explain: bool = Field(False, description=EXPLAIN_DESCRIPTION)

    @field_validator("drivers")
    @classmethod
    def _drivers(cls, v: list[DriverInput] | None) -> list[DriverInput] | None:
        return _check_drivers(v)


Request = QualiRequest | RaceRequest
"""Either prediction request: both name an event and, optionally, the drivers."""


class Contribution(BaseModel):
    """One feature's push on the model's output for this driver."""

    feature: str = Field(
        ...,
        description="Feature name (as listed in /model_info), or 'other' for the sum of "
        "every feature not listed.",
        examples=["p_fp3_gap"],
    )
    label: str = Field(
        ...,
        description="What the feature means, in plain words.",
        examples=["FP3 gap to the fastest"],
    )
    value: float = Field(
        ...,
        description="How much it moved the output, in the explanation's unit (gap %: "
        "positive = slower; log-odds: positive = more likely to win).",
        examples=[0.21],
    )


class Explanation(BaseModel):
    """Why the model said what it said for one driver: ``base + sum(values)`` is the
    model's raw output (Stage-1: the gap to pole in % before it is floored at 0;
    Stage-2: the win log-odds before the softmax over the field)."""

    unit: Literal["gap %", "log-odds"] = Field(
        ...,
        description="'gap %' (Stage-1, qualifying) or 'log-odds' (Stage-2, race win).",
        examples=["gap %"],
    )
    base: float = Field(
        ...,
        description="The model's average output over its training rows, before any "
        "feature of this driver is looked at.",
        examples=[1.52],
    )
    contributions: list[Contribution] = Field(
        ...,
        description="The 5 largest contributions by absolute size, largest first, then "
        "one 'other' entry with the sum of the rest.",
    )


def _driver_name() -> Any:
    return Field(
        None, description="F1DB name (null if the id is not in F1DB).", examples=["Max Verstappen"]
    )


def _team_name() -> Any:
    return Field(
        None,
        description="F1DB name of the team (null if it is not in F1DB).",
        examples=["Red Bull"],
    )


class QualiPrediction(BaseModel):
    driver_id: str = Field(..., description="Resolved F1DB driver id.")
    driver_name: str | None = _driver_name()
    constructor_id: str | None = Field(None, description="Team used for the prediction.")
    constructor_name: str | None = _team_name()
    predicted_time: float | None = Field(
        ...,
        description="Predicted best qualifying lap in seconds (null if the circuit is unknown).",
    )
    predicted_gap_to_pole_pct: float = Field(..., description="Predicted gap to pole, in %.")
    grid_position_estimate: int = Field(..., description="Predicted qualifying position, 1..N.")
    probability_score: float = Field(
        ...,
        description="Estimated probability of pole, over the event's whole field (sums to 1 "
        "there); how good these odds have been: /model_info, stage1.metrics.pole.",
    )
    explanation: Explanation | None = Field(
        None,
        description="Stage-1's explanation of the gap to pole (unit 'gap %'); only when "
        'the request says "explain": true.',
    )


class RacePrediction(BaseModel):
    driver_id: str = Field(..., description="Resolved F1DB driver id.")
    driver_name: str | None = _driver_name()
    constructor_id: str | None = Field(None, description="Team used for the prediction.")
    constructor_name: str | None = _team_name()
    win_probability: float = Field(..., description="Probability of winning (sums to 1).")
    podium_probability: float = Field(
        ...,
        description="Probability of finishing in the top 3 (Plackett-Luce on the win "
        "strengths over the whole field, every car but the winner classified at the "
        "training seasons' rate: sums to a little under 3, as cars may retire).",
        examples=[0.62],
    )
    points_probability: float = Field(
        ...,
        description="Probability of finishing in the top 10, the points (the same model: "
        "sums to a little under min(10, N) over the field); win <= podium <= points.",
        examples=[0.93],
    )
    predicted_rank: int = Field(..., description="Rank by win probability, 1..N.")
    grid_position: int = Field(..., description="Grid slot used (given, or Stage-1's estimate).")
    explanation: Explanation | None = Field(
        None,
        description="Stage-2's explanation of the win log-odds (unit 'log-odds'); only "
        'when the request says "explain": true.',
    )


class Metadata(BaseModel):
    event: dict[str, Any] = Field(..., description="The event predicted.")
    model_versions: dict[str, str] = Field(..., description="Tags of the models used.")
    warnings: list[str] = Field(default_factory=list)
    fitted_on_event: bool = Field(
        False,
        description="True when the served models were fitted on this event's own results "
        "(a past event in their training data): the answer knows how it went, so it is "
        "not the forecast they would have made before it (a warning says so too).",
    )
    inference_ms: float = Field(..., description="Server time spent on this request.")


class FullResponse(BaseModel):
    qualifying_predictions: list[QualiPrediction]
    race_winner_predictions: list[RacePrediction]
    metadata: Metadata


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str


class ErrorResponse(BaseModel):
    error: str
    detail: list[ErrorDetail] = Field(default_factory=list)


EXAMPLES: dict[str, dict[str, Any]] = {
    "original": {
        "drivers": [{"driver_id": 1, "temperature": 25.0, "humidity": 60.0}],
        "session_type": "qualifying",
    },
    "known_event": {"event": {"season": 2025, "round": 8}, "session_type": "qualifying"},
    "custom_field": {
        "event": {"season": 2026, "circuit_id": "monaco", "date": "2026-06-07"},
        "drivers": [
            {"driver_id": "max-verstappen", "practice": {"fp3": "1:11.2"}},
            {"driver_id": "lando-norris", "constructor_id": "mclaren", "practice": {"fp3": 71.05}},
            {"driver_id": 16, "practice": {"fp3": "1:11.4"}},
        ],
        "session_type": "qualifying",
    },
    "race_with_grid": {
        "event": {"season": 2025, "round": 8},
        "drivers": [
            {"driver_id": "lando-norris", "grid_position": 1},
            {"driver_id": "charles-leclerc", "grid_position": 2},
            {"driver_id": "oscar-piastri", "grid_position": 3},
            {"driver_id": "max-verstappen", "grid_position": 4},
        ],
    },
    "explain": {
        "event": {"season": 2025, "round": 8},
        "drivers": [{"driver_id": "max-verstappen"}, {"driver_id": "lando-norris"}],
        "explain": True,
    },
}


class EventSummary(BaseModel):
    """One event of the calendar."""

    season: int
    round: int
    name: str = Field(..., description="Grand prix, e.g. 'Monaco Grand Prix'.")
    circuit_id: str | None = None
    date: Date
    is_sprint: bool = False
    has_results: bool = Field(..., description="Qualifying and race results are in the data.")


class Calendar(BaseModel):
    """A season's events, and which one comes next."""

    season: int
    seasons: list[int] = Field(..., description="Seasons in the data, oldest first.")
    next_event: EventSummary | None = Field(
        None, description="The first event after the latest results, if the data has one."
    )
    events: list[EventSummary]


class QualifyingResult(BaseModel):
    driver_id: str
    position: int | None = None
    time_s: float | None = Field(None, description="Best qualifying lap, seconds.")


class RaceResult(BaseModel):
    driver_id: str
    position: int | None = Field(None, description="Finishing position; null if not classified.")
    status: str = Field("", description="F1DB's position text: '1'..'20', 'DNF', 'DSQ', 'DNS'.")


class EventResults(BaseModel):
    """What happened at an event (empty lists before it is run)."""

    event: EventSummary
    qualifying: list[QualifyingResult]
    race: list[RaceResult]
