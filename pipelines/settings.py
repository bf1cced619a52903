"""One typed settings object (env prefix ``F1_``); no disk access at import time."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Runtime configuration; every field can be set as ``F1_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="F1_", extra="ignore", use_attribute_docstrings=True
    )

    data_dir: Path | None = None
    """F1DB YAML source tree (the folder holding seasons/, drivers/ ...)."""
    cache_dir: Path = PROJECT_ROOT / ".cache"
    """Parsed-table cache (parquet, keyed by content)."""
    reports_dir: Path = PROJECT_ROOT / "reports"
    """Evaluation outputs."""
    history_from: int = 2012
    """First season parsed (form warm-up)."""
    train_from: int = 2014
    """First season used as training rows."""
    valid_season: int = 2024
    """Season used to tune settings."""
    test_season: int = 2025
    """Held-out season the report is about."""
    stage2_rank_depth: int | None = Field(None, ge=1)
    """Places of each training race Stage-2 learns from (Plackett-Luce; 1: the winner
    alone). Unset: the code's choice (3)."""
    stage2_rank_decay: float | None = Field(None, gt=0)
    """Weight of place j in that likelihood, decay ** (j - 1). Unset: 1."""

    stage1_model: str = "f1_stage1:latest"
    """Stage-1 model tag to serve."""
    stage2_model: str = "f1_stage2:latest"
    """Stage-2 model tag to serve."""
    features_model: str = "f1_features:latest"
    """Feature snapshot tag to serve."""

    api_key: str | None = None
    """If set, predictions and /model_info need 'Authorization: Bearer <key>'."""
    cors_origins: list[str] = Field(default_factory=list)
    """Origins allowed by CORS (empty: CORS off)."""
    max_body_bytes: int = 256 * 1024
    """Largest accepted request body."""
    max_in_flight: int = 256
    """Prediction requests in flight per front process before new ones get 503."""
    front_workers: int = Field(2, ge=1, le=8)
    """Processes of the front service, where a request's CPU goes (docs/deployment.md)."""
    model_timeout_s: float = Field(3.0, gt=0)
    """Deadline of one call to a model service: past it the caller gets 503."""
    log_format: Literal["json", "text"] = "json"
    """Server logs: 'json' (one object per line) or 'text'."""

    f1db_repo_url: str = "https://github.com/f1db/f1db"
    """Where F1DB is downloaded from (<url>/releases/latest; a mirror, a test server)."""
    f1db_tag: str | None = None
    """F1DB release fetched when no data is found (e.g. v2025.24.0). Unset: the latest."""

    ledger: bool = True
    """Record every answer in the prediction log (false: record nothing)."""
    ledger_url: str | None = None
    """The prediction log's database (postgresql://user:pass@host:port/db, shared by every
    worker and replica). Unset: a SQLite file beside the model store."""
    ledger_retention_days: float | None = Field(None, gt=0)
    """Delete logged answers last given longer ago. Unset: keep all."""
    ledger_max_pending: int = Field(10_000, ge=1)
    """Distinct answers waiting for the database per front process; past it new ones are
    dropped (counted in /metrics)."""
    ledger_timeout_s: float = Field(5.0, gt=0)
    """Longest wait of one database call of the prediction log."""
    ledger_flush_s: float = Field(3.0, gt=0)
    """At shutdown, how long the answers still waiting may take to be written."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process (tests build their own ``Settings``)."""
    return Settings()


SHARED_DATA_DIR = PROJECT_ROOT.parent / "shared" / "f1db"
"""The team's copy of F1DB beside the checkout (tests and CI read it)."""


def downloaded_data_dir() -> Path:
    """Where F1DB goes when downloaded without F1_DATA_DIR: a per-user data folder,
    ``$XDG_DATA_HOME/f1-predictor/f1db`` (default ``~/.local/share/f1-predictor/f1db``)."""
    home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(home) / "f1-predictor" / "f1db"


def resolve_data_dir(settings: Settings | None = None) -> Path:
    """``F1_DATA_DIR`` if set, else ``../shared/f1db`` when present, else the downloaded
    copy (``downloaded_data_dir``, which may not exist yet)."""
    s = settings or get_settings()
    if s.data_dir is not None:
        return Path(s.data_dir)
    if (SHARED_DATA_DIR / "seasons").is_dir():
        return SHARED_DATA_DIR
    return downloaded_data_dir()
