"""What every test of the session shares: a throw-away model store, the real F1DB data's
place, and whether missing data skips a test or fails it.

Importing this module sets BENTOML_HOME. BentoML reads it once, at its import, so
tests/conftest.py imports this module before anything imports bentoml: every test then
writes to the throw-away store, never to ~/bentoml.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

STORE_HOME = Path(tempfile.mkdtemp(prefix="f1-bentoml-home-"))
os.environ["BENTOML_HOME"] = str(STORE_HOME)
os.environ.setdefault("OMP_NUM_THREADS", "1")

REAL_DATA = Path(
    os.environ.get("F1_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "f1db"
)
"""The real F1DB tree, found as the app finds it: F1_DATA_DIR, else ../shared/f1db."""


def in_ci() -> bool:
    """CI=true (GitHub Actions, GitLab, .ci/run ...): missing inputs are failures."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def require_real_data() -> Path:
    """The real F1DB tree, else stop the test that needs it: skipped on a laptop without
    the data, failed under CI=true (a CI run that skips every real-data test proves
    nothing). Every test or fixture that reads REAL_DATA goes through here."""
    if (REAL_DATA / "seasons").is_dir():
        return REAL_DATA
    if in_ci():
        pytest.fail(
            f"real F1DB data not found at {REAL_DATA} (CI=true: the data must be there; "
            "set F1_DATA_DIR or run `f1 data download`)",
            pytrace=False,
        )
    pytest.skip(f"real F1DB data not found at {REAL_DATA}")


def store_models() -> list[Any]:
    """Every model in the session's store."""
    import bentoml

    return list(bentoml.models.list())
