"""The BentoML model store (a temporary BENTOML_HOME, set by tests/session.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pytest

from pipelines.features.spec import STAGE1, STAGE2
from pipelines.models import store
from pipelines.models.stage1 import Stage1Model
from pipelines.models.stage2 import LINEAR_TERMS, Stage2Model
from tests.session import STORE_HOME, store_models

EVALUATION = {
    "stage1": {"test": {"season": 2025, "mae_s": 0.5, "spearman": 0.8}},
    "stage2": {
        "test": {"season": 2025, "top1": 0.6, "winner_log_loss": float("inf")},
        "test_chained": {"season": 2025, "top1": 0.4, "winner_log_loss": 1.5},
        "baselines": {"logistic_grid": {"test": {"top1": 0.5}, "test_chained": {"top1": 0.3}}},
    },
    "protocol": {"train_seasons": [2021, 2023], "valid_season": 2024, "test_season": 2025},
}


def test_store_is_the_temporary_one() -> None:
    assert os.environ["BENTOML_HOME"] == str(STORE_HOME)
    assert Path(store.store_home()).resolve() == STORE_HOME.resolve()


def test_save_all_then_load_round_trip(empty_store, tiny_models) -> None:
    snap, s1, s2 = tiny_models
    tags = store.save_all(snap, s1, s2, EVALUATION, [2021, 2025])
    assert tags.features.startswith(f"{store.FEATURES_NAME}:")
    assert tags.stage1.startswith(f"{store.STAGE1_NAME}:")
    assert tags.stage2.startswith(f"{store.STAGE2_NAME}:")
    assert store.has_models()

    snap2 = store.open_snapshot(store.get_model(f"{store.FEATURES_NAME}:latest"))
    m1 = store.open_stage1(store.get_model(tags.stage1))
    m2 = store.open_stage2(store.get_model(f"{store.STAGE2_NAME}:latest"))
    assert snap2.meta == snap.meta
    ctx = snap.event_by_round(2024, 2)
    x1 = snap.stage1_rows(ctx, snap.event_field(ctx))
    x1b = snap2.stage1_rows(ctx, snap2.event_field(ctx))
    np.testing.assert_array_equal(x1, x1b)
    np.testing.assert_array_equal(m1.predict_gap(x1), s1.predict_gap(x1))
    rng = np.random.default_rng(0)
    x2 = rng.normal(size=(20, len(STAGE2)))
    np.testing.assert_array_equal(m2.logit(x2), s2.logit(x2))


def test_metadata_describes_the_models(empty_store, tiny_models) -> None:
    snap, s1, s2 = tiny_models
    tags = store.save_all(snap, s1, s2, EVALUATION, [2021, 2025])
    md1 = bentoml.models.get(tags.stage1).info.metadata
    md2 = bentoml.models.get(tags.stage2).info.metadata
    mdf = bentoml.models.get(tags.features).info.metadata
    assert md1["feature_names"] == list(STAGE1.names)
    assert md2["feature_names"] == list(STAGE2.names)
    assert md1["features_revision"] == STAGE1.revision
    assert md2["features_revision"] == STAGE2.revision
    for md in (md1, md2, mdf):
        assert md["training_seasons"] == [2021, 2025]
        assert md["data_hash"] == snap.meta["data_hash"] != ""
        versions = md["library_versions"]
        assert versions["bentoml"] == bentoml.__version__
        assert {"python", "lightgbm", "numpy", "pandas"} <= set(versions)
        assert "F1DB" in md["data_credit"]
    assert md1["metrics"]["test"]["mae_s"] == 0.5
    assert md2["metrics"]["test"]["top1"] == 0.6
    assert md2["metrics"]["test"]["winner_log_loss"] == "inf"  # plain types only
    assert md2["protocol"]["test_season"] == 2025
    assert md1["features_tag"] == md2["features_tag"] == tags.features
    latest = snap.meta["latest_event"]
    assert mdf["data_latest_event"]["round"] == latest["round"]


def test_model_info_shows_both_stage2_modes(empty_store, tiny_models) -> None:
    """/model_info: Stage-2's test season after qualifying and before it (chained),
    beside the baselines in both modes, and what each block means."""
    snap, s1, s2 = tiny_models
    tags = store.save_all(snap, s1, s2, EVALUATION, [2021, 2025])
    info = store.model_info(
        {"stage1": tags.stage1, "stage2": tags.stage2},
        bentoml.models.get(tags.stage1).info.metadata,
        bentoml.models.get(tags.stage2).info.metadata,
    )
    m2 = info["stage2"]["metrics"]
    assert m2["test"]["top1"] == 0.6
    assert m2["test_chained"] == {"season": 2025, "top1": 0.4, "winner_log_loss": 1.5}
    assert m2["baselines"]["logistic_grid"]["test_chained"]["top1"] == 0.3
    guide = info["metrics_guide"]
    assert "real grid" in guide["stage2.metrics.test"]
    assert "before qualifying" in guide["stage2.metrics.test_chained"]
    # the fitted seasons, and that an answer about one of their events is in-sample
    assert info["training_seasons"] == [2021, 2025]
    assert "knows how it went" in guide["training_seasons"]


def test_retraining_adds_versions_and_moves_latest(empty_store, tiny_models) -> None:
    snap, s1, s2 = tiny_models
    first = store.save_all(snap, s1, s2, EVALUATION, [2021, 2025])
    second = store.save_all(snap, s1, s2, EVALUATION, [2021, 2025])
    assert len({first.stage1, second.stage1}) == 2
    for name, old, new in (
        (store.STAGE1_NAME, first.stage1, second.stage1),
        (store.STAGE2_NAME, first.stage2, second.stage2),
        (store.FEATURES_NAME, first.features, second.features),
    ):
        assert str(bentoml.models.get(f"{name}:latest").tag) == new
        assert len([m for m in store_models() if m.tag.name == name]) == 2
        assert str(store.get_model(old).tag) == old  # the old version still loads
    store.open_stage1(store.get_model(first.stage1))
    store.open_stage2(store.get_model(first.stage2))
    store.open_snapshot(store.get_model(first.features))
    listed = [str(m.tag) for m in store.list_versions()]
    assert set(listed) == {*vars(first).values(), *vars(second).values()}
    # newest first within each name
    s1_listed = [t for t in listed if t.startswith(store.STAGE1_NAME)]
    assert s1_listed == [second.stage1, first.stage1]


def test_failure_midway_writes_nothing(
    empty_store, tiny_models, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap, s1, s2 = tiny_models
    before = store.save_all(snap, s1, s2, EVALUATION, [2021, 2025])
    n_before = len(store_models())

    def boom(self, path):
        raise RuntimeError("disk full while writing stage 2")

    monkeypatch.setattr(Stage2Model, "save", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        store.save_all(snap, s1, s2, EVALUATION, [2021, 2025])
    assert len(store_models()) == n_before
    for name, tag in (
        (store.FEATURES_NAME, before.features),
        (store.STAGE1_NAME, before.stage1),
        (store.STAGE2_NAME, before.stage2),
    ):
        assert str(bentoml.models.get(f"{name}:latest").tag) == tag


def test_failure_on_an_empty_store_leaves_it_empty(
    empty_store, tiny_models, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap, s1, s2 = tiny_models
    monkeypatch.setattr(Stage2Model, "save", lambda self, path: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        store.save_all(snap, s1, s2, EVALUATION, [2021, 2025])
    assert store_models() == []
    assert not store.has_models()


def test_missing_tag_names_the_tag_and_the_fix(empty_store) -> None:
    with pytest.raises(store.StoreError) as exc:
        store.get_model("f1_stage1:nosuchversion")
    assert "f1_stage1:nosuchversion" in str(exc.value)
    assert "f1 train" in str(exc.value)
    for tag, loader in (
        ("f1_stage1:doesnotexist", store.open_stage1),
        ("f1_stage2:latest", store.open_stage2),
        ("f1_features:latest", store.open_snapshot),
    ):
        with pytest.raises(store.StoreError) as exc:
            loader(store.get_model(tag))
        assert tag in str(exc.value)
        assert "f1 train" in str(exc.value)


def test_unreadable_model_is_a_store_error(empty_store, tiny_models) -> None:
    snap, s1, s2 = tiny_models
    tags = store.save_all(snap, s1, s2, EVALUATION, [2021, 2025])
    path = Path(bentoml.models.get(tags.stage2).path) / "model" / "config.json"
    path.write_text("{not json")
    with pytest.raises(store.StoreError, match="f1 train") as exc:
        store.open_stage2(store.get_model(tags.stage2))
    assert tags.stage2 in str(exc.value)


def test_save_snapshot_leaves_models_alone(empty_store, tiny_models) -> None:
    snap, s1, s2 = tiny_models
    tags = store.save_all(snap, s1, s2, EVALUATION, [2021, 2025])
    new = store.save_snapshot(snap)
    assert new != tags.features
    assert str(bentoml.models.get(f"{store.FEATURES_NAME}:latest").tag) == new
    assert str(bentoml.models.get(f"{store.STAGE1_NAME}:latest").tag) == tags.stage1
    assert len(store_models()) == 4


def _stage2_with_metadata(src: bentoml.Model, **changes: object) -> bentoml.Model:
    import shutil

    meta = dict(src.info.metadata) | changes
    with bentoml.models.create(store.STAGE2_NAME, metadata=meta) as m:
        shutil.copytree(Path(src.path) / "model", Path(m.path) / "model")
    return bentoml.models.get(m.tag)


def test_a_model_trained_on_other_features_is_refused_naming_the_difference(
    empty_store, tiny_models
) -> None:
    """Serving a model whose feature list differs from the code's fails at start-up
    (check_tags, which service.py calls at import), and `f1 train --if-missing` retrains."""
    snap, s1, s2 = tiny_models
    tags = store.save_all(snap, s1, s2, EVALUATION, [2021, 2025])
    store.check_tags(tags.features, tags.stage1, tags.stage2)
    src = bentoml.models.get(tags.stage2)
    names = list(STAGE2.names)
    renamed = _stage2_with_metadata(src, feature_names=[*names[:-1], "c_champ_old"])
    with pytest.raises(store.StoreError) as exc:
        store.check_tags(tags.features, tags.stage1, str(renamed.tag))
    msg = str(exc.value)
    assert str(renamed.tag) in msg and names[-1] in msg and "c_champ_old" in msg
    assert "f1 train" in msg
    assert not store.has_models()  # latest stage-2 mismatches: --if-missing retrains
    old = _stage2_with_metadata(src, features_revision=STAGE2.revision - 1)
    with pytest.raises(store.StoreError, match="revision"):
        store.check_tags(tags.features, tags.stage1, str(old.tag))
    swapped = _stage2_with_metadata(src, feature_names=[names[1], names[0], *names[2:]])
    with pytest.raises(store.StoreError, match="another order"):
        store.check_tags(tags.features, tags.stage1, str(swapped.tag))


def test_a_snapshot_of_another_format_makes_if_missing_retrain(empty_store, tiny_models) -> None:
    """After an upgrade that changes the snapshot format, `make serve` (f1 train
    --if-missing) must train anew rather than serve an unreadable snapshot."""
    import json

    snap, s1, s2 = tiny_models
    tags = store.save_all(snap, s1, s2, EVALUATION, [2021, 2025])
    assert store.has_models()
    meta = Path(bentoml.models.get(tags.features).path) / "snapshot" / "snapshot.json"
    doc = json.loads(meta.read_text())
    meta.write_text(json.dumps(doc | {"format": doc["format"] - 1}))
    assert not store.has_models()


def test_a_stage2_on_other_linear_terms_makes_if_missing_retrain(empty_store, tiny_models) -> None:
    """A model saved before Stage-2's linear terms changed cannot be loaded by this code:
    `make serve` (f1 train --if-missing) must train anew instead of failing at start-up."""
    import json

    snap, s1, s2 = tiny_models
    tags = store.save_all(snap, s1, s2, EVALUATION, [2021, 2025])
    assert store.has_models()
    cfg_path = Path(bentoml.models.get(tags.stage2).path) / "model" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    older = [t.name for t in LINEAR_TERMS][:-1]  # as saved before a term was added
    cfg_path.write_text(
        json.dumps(cfg | {"linear_terms": older, "linear_coef": [0.1] * len(older)})
    )
    assert not store.has_models()
    with pytest.raises(store.StoreError, match="f1 train"):
        store.open_stage2(bentoml.models.get(tags.stage2))


def _stored_without(tiny_models, stage: str, *keys: str) -> tuple[Any, Path]:
    """Store the tiny models, then drop ``keys`` from one stage's saved config, as a
    model saved before they existed: the tags and that model's folder."""
    import json

    snap, s1, s2 = tiny_models
    tags = store.save_all(snap, s1, s2, EVALUATION, [2021, 2025])
    assert store.has_models()
    folder = Path(bentoml.models.get(getattr(tags, stage)).path) / "model"
    cfg = json.loads((folder / "config.json").read_text())
    for key in keys:
        del cfg[key]
    (folder / "config.json").write_text(json.dumps(cfg))
    return tags, folder


def test_a_stage1_fitted_without_new_entrants_makes_if_missing_retrain(
    empty_store, tiny_models
) -> None:
    """A Stage-1 saved before it was fitted with blanked teams (its config has no
    ``new_team_share``) still loads, says it was fitted without them, and `make serve`
    trains anew so that what is served is what the README measured."""
    tags, folder = _stored_without(tiny_models, "stage1", "new_team_share", "new_team_seed")
    assert Stage1Model.load_config(folder).new_team_share == 0.0
    assert not store.has_models()
    assert store.open_stage1(bentoml.models.get(tags.stage1)) is not None  # still serves


def test_a_stage1_without_the_form_only_ensemble_makes_if_missing_retrain(
    empty_store, tiny_models
) -> None:
    """A Stage-1 saved before the form-only ensemble (no ``form_model`` in its config, no
    form boosters) still loads and serves, and `make serve` trains anew."""
    tags, folder = _stored_without(tiny_models, "stage1", "form_model")
    assert sorted(folder.glob("form_booster_*.txt"))
    for f in folder.glob("form_booster_*.txt"):
        f.unlink()
    assert not store.has_models()
    loaded = store.open_stage1(bentoml.models.get(tags.stage1))
    assert loaded is not None and not loaded.form_boosters


def test_a_stage1_with_one_pole_temperature_makes_if_missing_retrain(
    empty_store, tiny_models
) -> None:
    """A Stage-1 saved before the pole odds were scored (no ``pole_tau_ahead``: one
    temperature, chosen on one season) still loads and serves with that one, and `make
    serve` trains anew so that the odds served are those the reports score."""
    tags, _ = _stored_without(tiny_models, "stage1", "pole_tau_ahead")
    assert not store.has_models()
    loaded = store.open_stage1(bentoml.models.get(tags.stage1))
    assert loaded is not None and loaded.config.pole_tau_ahead is None


def test_a_stage2_fitted_on_winners_alone_makes_if_missing_retrain(
    empty_store, tiny_models
) -> None:
    """A Stage-2 saved before it learnt from each race's first places (no ``rank_depth``
    in its config) still loads, reads as fitted on the winner alone, and `make serve`
    trains anew."""
    tags, folder = _stored_without(tiny_models, "stage2", "rank_depth")
    assert Stage2Model.load_config(folder).rank_depth == 1
    assert not store.has_models()
    assert store.open_stage2(bentoml.models.get(tags.stage2)) is not None  # still serves


def test_a_stage2_on_other_places_than_the_settings_ask_makes_if_missing_retrain(
    empty_store, tiny_models, monkeypatch: pytest.MonkeyPatch, clear_settings
) -> None:
    """With ``F1_STAGE2_RANK_DEPTH`` set (to reproduce the winners-alone comparison), the
    stored Stage-2 fitted on three places is not what is asked for: `make serve` retrains;
    unset again, it is."""
    from pipelines.settings import get_settings

    snap, s1, s2 = tiny_models
    store.save_all(snap, s1, s2, EVALUATION, [2021, 2025])
    assert store.has_models()
    monkeypatch.setenv("F1_STAGE2_RANK_DEPTH", "1")
    get_settings.cache_clear()
    assert not store.has_models()
    monkeypatch.delenv("F1_STAGE2_RANK_DEPTH")
    get_settings.cache_clear()
    assert store.has_models()


def test_a_stage2_saved_before_cars_could_retire_makes_if_missing_retrain(
    empty_store, tiny_models
) -> None:
    """A Stage-2 saved before the finish rate was measured serves every car as
    classified (it still loads: finish rate 1); `make serve` trains anew to measure it."""
    import json

    snap, s1, s2 = tiny_models
    tags = store.save_all(snap, s1, s2, EVALUATION, [2021, 2025])
    assert store.has_models()
    cfg_path = Path(bentoml.models.get(tags.stage2).path) / "model" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    assert "finish_rate" in cfg
    cfg_path.write_text(json.dumps({k: v for k, v in cfg.items() if k != "finish_rate"}))
    assert not store.has_models()
    loaded = store.open_stage2_config(bentoml.models.get(tags.stage2))
    assert loaded.finish_rate == 1.0
