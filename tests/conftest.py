"""Shared fixtures: a temporary model store, a tiny synthetic F1DB tree, real-data slices,
and the real trained models the service, benchmark and deployment tests serve.

tests.session comes first: importing it sets BENTOML_HOME before anything imports bentoml.
"""

from __future__ import annotations

from tests.session import STORE_HOME, require_real_data  # isort: skip (sets BENTOML_HOME)

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.fakes import SyntheticTree, fit_tiny_models, write_f1db_tree, write_season_under_way

if TYPE_CHECKING:
    from pipelines.f1db.parse import Tables
    from pipelines.features.snapshot import FeatureSnapshot
    from pipelines.models.stage1 import Stage1Model
    from pipelines.models.stage2 import Stage2Model
    from training.pipeline import TrainResult

# ------------------------------------------------------------------- data


@pytest.fixture
def synthetic_tree(tmp_path: Path) -> SyntheticTree:
    """A fresh synthetic F1DB tree (seasons 2023-2024, two rounds each) in tmp_path."""
    return write_f1db_tree(tmp_path / "f1db")


@pytest.fixture(scope="session")
def synthetic_tables(tmp_path_factory: pytest.TempPathFactory) -> tuple[SyntheticTree, Tables]:
    """The synthetic tree's parsed tables (read-only: tests must copy before changing)."""
    from pipelines.f1db.parse import load_tables

    root = tmp_path_factory.mktemp("synthetic")
    tree = write_f1db_tree(root / "f1db")
    return tree, load_tables(tree.root, root / "cache", min_season=2000)


@pytest.fixture(scope="session")
def real_tables(tmp_path_factory: pytest.TempPathFactory) -> Tables:
    """Real F1DB seasons 2019-2025, parsed once per session into a temporary cache."""
    from pipelines.f1db.parse import load_tables

    return load_tables(require_real_data(), tmp_path_factory.mktemp("cache"), min_season=2019)


@pytest.fixture(scope="session")
def real_snapshot(real_tables: Tables) -> FeatureSnapshot:
    from pipelines.features.snapshot import FeatureSnapshot

    return FeatureSnapshot.build(real_tables)


@pytest.fixture(scope="session")
def season_under_way(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``write_season_under_way`` on the real data, once per session."""
    root = tmp_path_factory.mktemp("f1db-under-way") / "f1db"
    return write_season_under_way(root, require_real_data())


# ----------------------------------------------------------------- models


@pytest.fixture(scope="session")
def trained(real_tables: Tables) -> TrainResult:
    """The real training pipeline, run once per session on a reduced protocol: seasons
    2019-2025 (2021-2023 train, 2024 validation, 2025 test) and at most two values per
    tuning-grid dimension (same code path, fewer candidate fits)."""
    from training import pipeline
    from training.pipeline import Protocol, run

    with pytest.MonkeyPatch.context() as mp:
        for name in ("STAGE1_GRID", "STAGE2_GRID", "POLE_GRID"):
            grid = getattr(pipeline, name)
            mp.setattr(pipeline, name, {k: list(v)[:2] for k, v in grid.items()})
        return run(real_tables, Protocol(train_from=2021, valid_season=2024, test_season=2025))


@pytest.fixture(scope="session")
def tiny_models(
    synthetic_tables: tuple[SyntheticTree, Tables],
) -> tuple[FeatureSnapshot, Stage1Model, Stage2Model]:
    """A feature snapshot from the synthetic tables and two quickly fitted models."""
    return fit_tiny_models(synthetic_tables[1])


@pytest.fixture(scope="session")
def served_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The models the service tests serve: trained on the real data with the full protocol
    and saved in the session store; returns the tags (pinned: other tests add versions)."""
    from pipelines.f1db.parse import load_tables
    from pipelines.models import store
    from training.pipeline import run

    cache = tmp_path_factory.mktemp("service-cache")
    res = run(load_tables(require_real_data(), cache))
    tags = store.save_all(
        res.snapshot, res.stage1, res.stage2, res.evaluation, [2014, 2025], res.stage1_through
    )
    return {"tags": tags, "evaluation": res.evaluation}


@pytest.fixture(scope="session")
def pinned_env(served_models: dict[str, Any]) -> dict[str, str]:
    """The served models' tags, as the environment variables that pin them."""
    tags = served_models["tags"]
    return {
        "F1_FEATURES_MODEL": tags.features,
        "F1_STAGE1_MODEL": tags.stage1,
        "F1_STAGE2_MODEL": tags.stage2,
    }


@pytest.fixture(scope="session")
def service_module(pinned_env: dict[str, str]) -> Any:
    """service.py imported with the session's tags pinned (settings are read at import)."""
    os.environ.update(pinned_env)
    from pipelines.settings import get_settings

    get_settings.cache_clear()
    import service

    return service


@pytest.fixture(scope="session")
def bento_client(service_module: Any) -> Iterator[Any]:
    """One in-process client for the Bento's ASGI app per session: building the app twice
    in a process registers BentoML's Prometheus metrics twice (DuplicateTimeseries)."""
    from starlette.testclient import TestClient

    with TestClient(service_module.F1Predictor.to_asgi()) as client:
        yield client


# ------------------------------------------------------------ store, settings


@pytest.fixture
def empty_store() -> Iterator[Path]:
    """An empty model store for one test; the models already there are put back after.

    The session's store is shared (BentoML reads BENTOML_HOME once), so emptying it for
    good would take the trained models from tests that run later.
    """
    from pipelines.models.store import store_home

    home = Path(store_home()).resolve()
    assert home == STORE_HOME.resolve(), f"refusing to touch a store outside the tests: {home}"
    models = home / "models"
    saved = home / f"models.saved-{uuid.uuid4().hex}"
    if models.exists():
        models.rename(saved)
    models.mkdir()
    try:
        yield home
    finally:
        shutil.rmtree(models, ignore_errors=True)
        if saved.exists():
            saved.rename(models)
        else:
            models.mkdir()


@pytest.fixture
def clear_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Default settings: no F1_* variables (other tests may pin model tags in the
    environment), and ``get_settings``'s per-process cache cleared around the test."""
    from pipelines.settings import get_settings

    for key in list(os.environ):
        if key.startswith("F1_"):
            monkeypatch.delenv(key)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(STORE_HOME, ignore_errors=True)
