"""One typed settings object for the whole project (env prefix ``F1_``).

Nothing here touches the disk at import time: paths are resolved by functions.
"""

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

    model_config = SettingsConfigDict(env_prefix="F1_", extra="ignore")

    data_dir: Path | None = Field(
        None, description="F1DB YAML source tree (the folder holding seasons/, drivers/ ...)."
    )
    cache_dir: Path = Field(
        PROJECT_ROOT / ".cache", description="Parsed-table cache (parquet, keyed by content)."
    )
    reports_dir: Path = Field(PROJECT_ROOT / "reports", description="Evaluation outputs.")
    history_from: int = Field(2012, description="First season parsed (form warm-up).")
    train_from: int = Field(2014, description="First season used as training rows.")
    valid_season: int = Field(2024, description="Season used to tune settings.")
    test_season: int = Field(2025, description="Held-out season the report is about.")
    stage2_rank_depth: int | None = Field(
        None,
        ge=1,
        description="Places of each training race Stage-2 learns from (Plackett-Luce; 1: "
        "the winner alone). Unset: the code's choice (3). For reproducing the comparison.",
    )
    stage2_rank_decay: float | None = Field(
        None,
        gt=0,
        description="Weight of place j in that likelihood, decay ** (j - 1). Unset: 1.",
    )

    stage1_model: str = Field("f1_stage1:latest", description="Stage-1 model tag to serve.")
    stage2_model: str = Field("f1_stage2:latest", description="Stage-2 model tag to serve.")
    features_model: str = Field("f1_features:latest", description="Feature snapshot tag to serve.")

    api_key: str | None = Field(
        None, description="If set, predictions and /model_info need 'Authorization: Bearer <key>'."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS (empty: CORS off)."
    )
    max_body_bytes: int = Field(256 * 1024, description="Largest accepted request body.")
    max_in_flight: int = Field(
        256,
        description="Prediction requests in flight per front process before new ones get "
        "503 + Retry-After.",
    )

    front_workers: int = Field(
        2,
        ge=1,
        le=8,
        description="Processes of the front service, where a request's CPU goes (each "
        "~240 MiB; the model services stay one each: concurrent requests are merged into "
        "one call per stage). 2 uses both cores of a laptop (BENCHMARKS.md); 1 where a "
        "replica gets less than a core (deploy/k8s).",
    )
    model_timeout_s: float = Field(
        3.0,
        gt=0,
        description="Deadline of one call to a model service (the model itself "
        "takes under a millisecond): past it the caller gets 503 + Retry-After.",
    )

    log_format: Literal["json", "text"] = Field(
        "json", description="Server logs: 'json' (one object per line) or 'text'."
    )

    f1db_repo_url: str = Field(
        "https://github.com/f1db/f1db",
        description="Where F1DB is downloaded from: <url>/releases/latest names the latest "
        "release, <url>/archive/refs/tags/<tag>.tar.gz holds it (a mirror, a test server).",
    )
    f1db_tag: str | None = Field(
        None,
        description="F1DB release that `make serve` and `f1 data download` fetch when no data "
        "is found (e.g. v2025.24.0), for a reproducible build. Unset: the latest release.",
    )


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
