"""The track record's answers: what /track_record and /track_record/{season}/{round}
give (pydantic only, so every process can import the routes' types)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from pipelines.serving.schemas import QualiPrediction, RacePrediction

Kind = Literal["weekend_ahead", "before_qualifying"]
KINDS: tuple[Kind, ...] = ("weekend_ahead", "before_qualifying")


class ScoredEvent(BaseModel):
    """One event's last recorded forecast of one kind, against the result."""

    season: int
    round: int
    name: str
    kind: Kind = Field(
        description="weekend_ahead: the data held no practice of the event; "
        "before_qualifying: it did."
    )
    forecast_at: datetime = Field(description="When the forecast was last given (UTC).")
    model_versions: dict[str, str]
    data_hash: str | None
    winner: str | None = Field(description="Who won the race.")
    winner_probability: float | None = Field(
        description="The recorded win probability of the car that won."
    )
    winner_log_loss: float | None = Field(description="-ln(winner_probability).")
    top1: bool | None = Field(description="The forecast's favourite won.")
    favourite: str | None = Field(description="The car with the highest win probability.")
    pole_sitter: str | None
    gap_pct_mae: float | None = Field(
        description="Mean absolute error of the predicted gap to pole (%), over the cars "
        "that set a qualifying time."
    )
    spearman: float | None = Field(
        description="Rank correlation of predicted and actual qualifying gaps."
    )
    field_size: int


class KindSummary(BaseModel):
    """A season's figures for one kind of forecast."""

    events: int
    winner_log_loss: float | None
    top1: float | None
    gap_pct_mae: float | None
    spearman: float | None
    uniform_log_loss: float | None = Field(description="Uniform odds over each field.")
    uniform_top1: float | None
    pole_sitter_top1: float | None = Field(description="How often the pole-sitter won.")


class TrackRecord(BaseModel):
    season: int
    events: list[ScoredEvent]
    summary: dict[str, KindSummary]


class RecordedForecast(BaseModel):
    """The forecast recorded before an event, in /predict_full's shape (no explanations)."""

    season: int
    round: int
    kind: Kind
    forecast_at: datetime
    model_versions: dict[str, str]
    data_hash: str | None
    qualifying_predictions: list[QualiPrediction]
    race_winner_predictions: list[RacePrediction]
