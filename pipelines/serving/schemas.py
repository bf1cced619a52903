"""Request and response models of the prediction API (and of the Python client); the
``EXAMPLES`` here feed the Swagger UI, the README and the tests."""

from __future__ import annotations

import math
import re
from datetime import date as Date
from datetime import datetime
from functools import partial
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from pipelines.f1db.laptime import parse_time

MAX_DRIVERS = 30
LAP_MIN_S, LAP_MAX_S = 20.0, 300.0
"""Plausible single-lap range; anything outside is a typo or a unit error."""

# The request's two-form fields, as the published schema states them. Python checks them
# with re.fullmatch, which (unlike re.match with "$") refuses a trailing newline, as
# JSON Schema's ECMA-262 patterns do.
LAP_PATTERN = r"^(?:0:[2-5][0-9]|[1-4]:[0-5][0-9])(?:\.[0-9]{1,3})?$|^5:00(?:\.0{1,3})?$"
"""A lap as text: "m:ss.fff", from 0:20 to 5:00 (LAP_MIN_S-LAP_MAX_S)."""
ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
"""An F1DB id: lower-case letters, digits and hyphens, e.g. 'max-verstappen'."""
ID_MAX_LENGTH = 64
DRIVER_PATTERN = r"^(?:[0-9]{1,2}|[0-9]*[a-z][a-z0-9-]*|[0-9]+-[a-z0-9-]*)$"
"""A driver as text: an F1DB id (ID_PATTERN, not all digits) or a car number 0-99."""

_LAP_RE, _ID_RE, _DRIVER_RE = map(re.compile, (LAP_PATTERN, ID_PATTERN, DRIVER_PATTERN))
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_INT_TEXT_RE = re.compile(r"-?[0-9]+")


def _lap(value: Any, info: ValidationInfo) -> float | None:
    """Seconds (a number) or "m:ss.fff" text; nothing else (not "87.2", not a boolean)."""
    field = info.field_name
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{field}: lap time must be a finite number of seconds")
        if not LAP_MIN_S <= value <= LAP_MAX_S:  # compared as given: a huge int overflows float
            shown = f"{float(value):g}" if abs(value) < 1e9 else "that many"
            raise ValueError(
                f"{field}: {shown} s is not a plausible lap ({LAP_MIN_S:g}-{LAP_MAX_S:g} s)"
            )
        return float(value)
    if isinstance(value, str) and _LAP_RE.fullmatch(value):
        return parse_time(value)
    raise ValueError(
        f"{field}: expected seconds as a number ({LAP_MIN_S:g}-{LAP_MAX_S:g}) or 'm:ss.fff' "
        "text (0:20.000-5:00.000)"
    )


Lap = Annotated[
    float | str | None,
    BeforeValidator(_lap),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": LAP_MIN_S, "maximum": LAP_MAX_S},
                {"type": "string", "pattern": LAP_PATTERN},
                {"type": "null"},
            ]
        }
    ),
]
"""A lap time: seconds (a number) or "m:ss.fff" text; validated to seconds."""


def _f1db_id(example: str, value: Any) -> str | None:
    if value is None or (isinstance(value, str) and _ID_RE.fullmatch(value)):
        return value
    raise ValueError(
        f"expected an F1DB id (lower-case letters, digits and hyphens) such as {example}"
    )


_ID_OR_NULL = WithJsonSchema(
    {"anyOf": [{"type": "string", "pattern": ID_PATTERN}, {"type": "null"}]}
)
ConstructorId = Annotated[str | None, BeforeValidator(partial(_f1db_id, "'red-bull'")), _ID_OR_NULL]
CircuitId = Annotated[
    str | None, BeforeValidator(partial(_f1db_id, "'monaco' or 'yas-marina'")), _ID_OR_NULL
]


def _driver(value: Any) -> str | int:
    """An F1DB id, or a car number (an integer, or text of one or two digits)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= 99:
            raise ValueError(f"car number {value if abs(value) < 1000 else '...'} is outside 0-99")
        return value
    if isinstance(value, str) and len(value) <= ID_MAX_LENGTH and _DRIVER_RE.fullmatch(value):
        return int(value) if value.isdigit() else value
    raise ValueError(
        "expected an F1DB id (lower-case letters, digits and '-', e.g. 'max-verstappen') "
        "or a car number 0-99"
    )


DriverId = Annotated[
    str | int,
    BeforeValidator(_driver),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": DRIVER_PATTERN, "maxLength": ID_MAX_LENGTH},
                {"type": "integer", "minimum": 0, "maximum": 99},
            ]
        }
    ),
]


def _date(value: Any) -> Date | None:
    """A date object (Python callers) or "YYYY-MM-DD" text; not a timestamp or a datetime."""
    if value is None or (isinstance(value, Date) and not isinstance(value, datetime)):
        return value
    if isinstance(value, str) and _DATE_RE.fullmatch(value):
        try:
            return Date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"not a date: {exc}") from None
    raise ValueError("expected a date as 'YYYY-MM-DD' text")


def _int_text(value: Any) -> Any:
    """A URL's integer (a query or path parameter): decimal digits, not "8.0" or " 8"."""
    if isinstance(value, str) and not _INT_TEXT_RE.fullmatch(value):
        raise ValueError("expected an integer (decimal digits)")
    return value


IntParam = Annotated[int, BeforeValidator(_int_text)]
"""An integer query or path parameter, as strict as the JSON body's integers."""


class PracticeTimes(BaseModel):
    """Best laps in the sessions held before qualifying (seconds or "1:29.374")."""

    model_config = ConfigDict(extra="forbid")
    fp1: Lap = Field(None, description="Best FP1 lap.", examples=["1:27.128"])
    fp2: Lap = Field(None, description="Best FP2 lap.", examples=[87.2])
    fp3: Lap = Field(None, description="Best FP3 lap.", examples=["1:26.901"])
    sq: Lap = Field(
        None, description="Best sprint-qualifying lap (2024+ sprint weekends: before qualifying)."
    )


_UNUSED = "Accepted for compatibility; not used by the model."
_Unused = Annotated[float | None, Field(strict=True, allow_inf_nan=False, description=_UNUSED)]


class DriverInput(BaseModel):
    """One driver. Only ``driver_id`` is required; other known fields sharpen the answer.

    Unknown extra fields are accepted (the original API sent ``temperature`` and
    ``humidity``); the response's warnings say that the model does not use them.
    """

    model_config = ConfigDict(extra="allow")
    driver_id: DriverId = Field(
        ...,
        description="F1DB driver id (e.g. 'max-verstappen') or the car number raced that "
        "season (an integer, or text of one or two digits).",
        examples=["max-verstappen", 1],
    )
    constructor_id: ConstructorId = Field(
        None,
        description="F1DB constructor id; default: the driver's latest team.",
        examples=["red-bull"],
    )
    practice: PracticeTimes | None = Field(None, description="Pre-qualifying best laps.")
    grid_position: int | None = Field(
        None,
        strict=True,
        ge=1,
        le=MAX_DRIVERS,
        description="Starting slot, when known (/predict_race).",
    )
    qualifying_time: Lap = Field(
        None, description="Best qualifying lap, when known (/predict_race)."
    )
    temperature: _Unused = None
    humidity: _Unused = None

    def extra_inputs(self) -> list[str]:
        """Inputs accepted for compatibility that the model does not use."""
        unused = [k for k in ("temperature", "humidity") if getattr(self, k) is not None]
        return unused + sorted((self.model_extra or {}).keys())


EVENT_FORMS: list[JsonValue] = [
    {"required": ["round"], "properties": {"round": {"type": "integer"}}},
    {
        "required": ["circuit_id", "date"],
        "properties": {"circuit_id": {"type": "string"}, "date": {"type": "string"}},
    },
]
"""The two ways to name an event, for the schema: a round, or a circuit and a date."""


class EventInput(BaseModel):
    """An event in the data (season + round) or one that is not (season + circuit + race
    date in that season; the data's event when it has one there on that date)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": EVENT_FORMS})
    season: int = Field(
        ..., strict=True, ge=1950, le=2100, description="Championship year.", examples=[2025]
    )
    round: int | None = Field(
        None, strict=True, ge=1, le=30, description="Round in the season.", examples=[8]
    )
    circuit_id: CircuitId = Field(None, description="F1DB circuit id.", examples=["monaco"])
    date: Annotated[Date | None, BeforeValidator(_date)] = Field(
        None, description="Race date, YYYY-MM-DD.", examples=["2026-06-07"]
    )

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


EXPLAIN_DESCRIPTION = (
    "Add an `explanation` to each driver's prediction: what moved the model's output, "
    "feature by feature (LightGBM contributions). Off by default, and free when off."
)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event: EventInput | None = Field(None, description="Default: the next event in the calendar.")
    drivers: list[DriverInput] | None = Field(
        None,
        min_length=1,
        max_length=MAX_DRIVERS,
        description="The field to predict; default: the event's entry list.",
    )

    @field_validator("drivers", mode="before")
    @classmethod
    def _drivers(cls, v: Any) -> Any:
        if isinstance(v, list) and len(v) == 0:
            raise ValueError("must not be empty (omit 'drivers' to use the event's entry list)")
        return v


class QualiRequest(_Request):
    """Predict qualifying. Omit ``drivers`` for an event in the data to use its entry list."""

    session_type: Literal["qualifying"] = Field(
        "qualifying",
        description="Only 'qualifying'.",
        json_schema_extra={"enum": ["qualifying"]},  # OpenAPI 3.0 has no "const"
    )
    explain: bool = Field(False, strict=True, description=EXPLAIN_DESCRIPTION)


class RaceRequest(_Request):
    """Predict the race winner; a missing grid position comes from Stage-1."""

    explain: bool = Field(False, strict=True, description=EXPLAIN_DESCRIPTION)


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


class _Prediction(BaseModel):
    driver_id: str = Field(..., description="Resolved F1DB driver id.")
    driver_name: str | None = Field(
        None, description="F1DB name (null if the id is not in F1DB).", examples=["Max Verstappen"]
    )
    constructor_id: str | None = Field(None, description="Team used for the prediction.")
    constructor_name: str | None = Field(
        None,
        description="F1DB name of the team (null if it is not in F1DB).",
        examples=["Red Bull"],
    )


class QualiPrediction(_Prediction):
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


class RacePrediction(_Prediction):
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
