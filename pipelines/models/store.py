"""The BentoML model store: three versioned models that always move together.

``f1_features`` (the feature snapshot), ``f1_stage1`` and ``f1_stage2`` are written
inside nested ``bentoml.models.create`` blocks: BentoML commits a model only when its
block exits cleanly, so a failure (or Ctrl-C) while writing any of them leaves the
store as it was and ``latest`` on the previous complete set.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import platform
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import bentoml

from pipelines.features.spec import STAGE1, STAGE2, FeatureMismatch, FeatureSpec
from pipelines.models.stage1 import Stage1Config, Stage1Model
from pipelines.models.stage2 import Stage2Config, Stage2Model, stage2_places

if TYPE_CHECKING:
    # pandas comes with it: imported where a snapshot is opened, so that BentoML's
    # arbiter and the model services, which import this module, never load pandas
    from pipelines.features.snapshot import FeatureSnapshot

T = TypeVar("T")
STAGE1_NAME = "f1_stage1"
STAGE2_NAME = "f1_stage2"
FEATURES_NAME = "f1_features"
LABELS = {"project": "f1-predictor", "data": "F1DB (CC-BY-4.0)"}


class StoreError(RuntimeError):
    """A model or snapshot is missing or unreadable; the message names the tag and the fix."""


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("bentoml", "lightgbm", "numpy", "pandas", "scikit-learn", "pyarrow"):
        with contextlib.suppress(importlib_metadata.PackageNotFoundError):
            out[pkg] = importlib_metadata.version(pkg)
    return out


@dataclass
class SavedTags:
    features: str
    stage1: str
    stage2: str


def _plain(value: Any) -> Any:
    """Metadata must be plain Python types: no numpy scalars, no None, no inf."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None:
        return ""
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


# ------------------------------------------------------------------- commits

MANAGED = (FEATURES_NAME, STAGE1_NAME, STAGE2_NAME)


@contextlib.contextmanager
def _deferred_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block ends, then act on them as the process would
    have (its own handler back, the signal raised again): a Ctrl-C during a save waits
    for the save instead of leaving half a model behind. An ignored signal stays ignored
    (a background job of a non-interactive shell inherits SIGINT as SIG_IGN)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        # SIG_IGN: ignored before, ignored now. None: a handler set outside Python,
        # which signal.signal could not put back; leave it alone.
        if handler is not signal.SIG_IGN and handler is not None:
            old[sig] = handler
    for sig in old:
        signal.signal(sig, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if caught:
            signal.raise_signal(caught[0])


COMPLETE = ".f1-complete"
"""Written into a version's folder once BentoML has copied all of it into the store."""
MARKED = "f1_complete_marker"
"""Metadata flag of a version saved with ``COMPLETE`` (versions saved before it have none,
and are judged by their model.yaml alone)."""


def _complete(version: Path) -> bool:
    """A stored version BentoML finished copying. BentoML copies a model straight into its
    final folder, files in directory order: a writer killed mid-copy (SIGKILL, power loss)
    can leave model.yaml beside an empty or missing model file, so a version saved with
    the marker is complete only with it."""
    info = version / "model.yaml"
    if not info.exists():
        return False
    if (version / COMPLETE).exists():
        return True
    import yaml

    try:
        doc = yaml.safe_load(info.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    return isinstance(meta, dict) and not meta.get(MARKED)


def repair_store() -> list[str]:
    """Remove half-written versions of our models (a crash inside BentoML's copy), which
    would break `bentoml models list` or be served as `latest`."""
    removed = []
    root = Path(store_home()) / "models"
    for name in MANAGED:
        folder = root / name
        if not folder.is_dir():
            continue
        for version in folder.iterdir():
            if version.is_dir() and not _complete(version):
                shutil.rmtree(version, ignore_errors=True)
                removed.append(f"{name}:{version.name}")
        latest = folder / "latest"
        if latest.exists() and not (folder / latest.read_text().strip() / "model.yaml").exists():
            latest.unlink()  # BentoML recreates it from the newest complete version
    return removed


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One writer at a time: the store's file lock."""
    home = Path(store_home())
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".f1-store.lock").open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def commit() -> Iterator[None]:
    """One writer at a time (file lock), no half-written model (signals held), and a
    clean store to start from (repair)."""
    with _locked(), _deferred_signals():
        repair_store()
        yield


def repair() -> list[str]:
    """``repair_store`` under the lock: before reading the store for serving (`make
    serve` after a writer was killed mid-save), as every save does first."""
    with _locked():
        return repair_store()


@contextlib.contextmanager
def _create(name: str, metadata: dict[str, Any]) -> Iterator[bentoml.Model]:
    """``bentoml.models.create``, with its staging folder removed once the version is
    stored: BentoML removes it only when the Model object is collected, which never
    happens when a signal held over the save is acted on (death by SIGTERM)."""
    marked = _plain(metadata) | {MARKED: True}
    with bentoml.models.create(name, labels=LABELS, metadata=marked) as model:
        staging = Path(model.path)
        yield model
    shutil.rmtree(staging, ignore_errors=True)
    (Path(bentoml.models.get(model.tag).path) / COMPLETE).touch()  # the copy is whole


def _stamp(snapshot: FeatureSnapshot) -> dict[str, Any]:
    """What every saved version records of its data, libraries and time."""
    return {
        "data_hash": snapshot.meta.get("data_hash", ""),
        "data_latest_event": snapshot.meta.get("latest_event"),
        "library_versions": library_versions(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data_credit": "F1DB (https://github.com/f1db/f1db), CC-BY-4.0",
    }


def save_all(
    snapshot: FeatureSnapshot,
    stage1: Stage1Model,
    stage2: Stage2Model,
    evaluation: dict[str, Any],
    training_seasons: list[int],
    fitted_through: dict[str, int] | None = None,
) -> SavedTags:
    """Save the three models as new versions, all or none (``fitted_through``: the latest
    event Stage-1 was fitted on, which ``f1 refresh`` refits it beyond)."""
    common = _stamp(snapshot) | {"training_seasons": training_seasons}

    def create(stack: contextlib.ExitStack, name: str, extra: dict[str, Any]) -> bentoml.Model:
        return stack.enter_context(_create(name, common | extra))

    with commit(), contextlib.ExitStack() as stack:
        feat = create(stack, FEATURES_NAME, {"kind": "feature_snapshot"})
        snapshot.save(Path(feat.path) / "snapshot")
        links = {"features_tag": str(feat.tag)}
        m1 = create(
            stack,
            STAGE1_NAME,
            {
                "kind": "stage1_gap_to_pole_ensemble",
                **_features(STAGE1),
                "metrics": evaluation.get("stage1", {}),
                "fitted_through": fitted_through,
                **links,
            },
        )
        stage1.save(Path(m1.path) / "model")
        m2 = create(
            stack,
            STAGE2_NAME,
            {
                "kind": "stage2_win_classifier",
                **_features(STAGE2),
                "metrics": evaluation.get("stage2", {}),
                "protocol": evaluation.get("protocol", {}),
                **links,
            },
        )
        stage2.save(Path(m2.path) / "model")
        tags = SavedTags(str(feat.tag), str(m1.tag), str(m2.tag))
    return tags


def _features(spec: FeatureSpec) -> dict[str, Any]:
    """What a model records of the features it was trained on."""
    return {"feature_names": list(spec.names), "features_revision": spec.revision}


def check_features(model: bentoml.Model, spec: FeatureSpec) -> None:
    """Serving a model trained on other features than the code builds would be silent
    garbage: refuse it, naming the difference (raises StoreError)."""
    md = model.info.metadata
    names = md.get("feature_names", [])
    revision = md.get("features_revision", 1)
    try:
        spec.check(
            [str(n) for n in names] if isinstance(names, list) else [],
            revision if isinstance(revision, int) else None,
            str(model.tag),
        )
    except FeatureMismatch as exc:
        raise StoreError(str(exc)) from exc


METRICS_GUIDE = {
    "stage1.metrics.test": "test season: Stage-1 forecast made before qualifying (practice "
    "and form only), as /predict_quali and /predict_full give it",
    "stage1.metrics.new_team": "test season with every car's team form blanked, as for a "
    "new entrant without history, beside the same cars as they are",
    "stage1.metrics.new_rules": "the test season's first race under new technical rules: its "
    "cars with practice as served (the practice-only ensemble) and by the main ensemble "
    "reading their form ('rows' 0: the season has none)",
    "stage1.metrics.pole": "test season: the pole odds of /predict_quali ("
    "'probability_score') against qualifying's first place, over the cars that set a lap: "
    "per event the pole-sitter's log loss and top-1, Brier per car; before qualifying "
    "('test') and a weekend ahead ('before_practice'), beside an even chance and the "
    "baselines' gaps through the model's 'temperature' ('temperature_ahead' for a field "
    "without a practice lap; both chosen on the tuning seasons)",
    "stage2.metrics.test": "test season, after qualifying: the real grid and qualifying "
    "times given, as in /predict_race",
    "stage2.metrics.test_chained": "test season, before qualifying: the event only, "
    "Stage-1's grid and gaps chained into Stage-2, as in /predict_full without grid "
    "positions (the forecast most users get)",
    "stage2.metrics.rules_reset": "the test season's races early under new technical "
    "rules, where the win log-odds lean on a grid-only logit (share 'reset_weight' at the "
    "first race, none after 'reset_races'): as served, without the lean, and the logistic "
    "on the same grid ('races' 0: the season has none)",
    "stage1.metrics.before_practice": "test season, a weekend ahead: every event asked with "
    "its cars and no practice lap, as the next event looks while the data holds only the "
    "races before it (/predict_full days before the weekend), beside 'recent_form' (each "
    "driver's recent qualifying gap) and 'without_form_model' (Stage-1's main ensemble "
    "predicting every car, as before the form-only ensemble)",
    "stage2.metrics.before_practice": "the same forecasts a weekend ahead, Stage-1's grid "
    "chained into Stage-2, the baselines fed that grid",
    "training_seasons": "the seasons the served models were fitted on (Stage-1 through "
    "'stage1.fitted_through', Stage-2 through the last): an answer about one of those "
    "events knows how it went (a warning, and metadata.fitted_on_event in /predict_full); "
    "the metrics here are forecasts made before each event by models fitted without it",
    "baselines": "the simple predictors of the same rows: 'test' with the real grid, "
    "'test_chained' fed Stage-1's grid",
    "intervals": "90 % intervals from resampling the test season's events (seeded): "
    "each metric's, and the model's paired difference to each baseline with the share "
    "of resamples in which the model is better",
    "winner_log_loss": "mean -log P(actual winner) per race (lower is better); 'inf' when "
    "a predictor gave the winner zero probability",
    "stage2.metrics.podium": "test season: podium (top 3) probabilities per starter (Brier, "
    "binary log loss, share of each podium among the three most likely cars), after "
    "qualifying ('test'), before it ('test_chained') and a weekend ahead "
    "('before_practice'), beside each grid slot's podium rate and the same strengths "
    "with every car classified ('every_car_classified', the odds before cars could "
    "retire); 'finish_rate': the chance a car other than the winner is classified in the "
    "placings model, measured on the tuning seasons; 'stage2.metrics.points': the same "
    "for the top 10",
    "gap_pct_mae_dry": "Stage-1's gap-to-pole MAE (%) over the dry events alone (pole lap "
    "faster than the best practice lap; F1DB records no weather), likewise "
    "'spearman_dry': how much of the season's score its wet qualifying sessions are",
}
"""What each held-out metric block of /model_info means."""


def model_info(
    tags: dict[str, str], stage1_meta: dict[str, Any], stage2_meta: dict[str, Any]
) -> dict[str, Any]:
    """The /model_info answer: versions, features and held-out metrics of both stages
    (Stage-2's after qualifying, ``test``, and before it, ``test_chained``)."""
    return {
        "model_versions": tags,
        "stage1": {
            "description": "LightGBM ensemble on the gap to pole (%) x a pole-lap estimate",
            "feature_count": len(stage1_meta.get("feature_names", [])),
            "feature_names": stage1_meta.get("feature_names", []),
            "metrics": stage1_meta.get("metrics", {}),
            "fitted_through": stage1_meta.get("fitted_through"),
        },
        "stage2": {
            "description": "Monotone LightGBM stacked with a linear conditional logit fitted "
            "on each training race's first three finishers (Plackett-Luce; the booster too "
            "when its loss is per race), softmax per race (podium and points: Plackett-Luce "
            "on the same strengths, cars other than the winner classified at the "
            "training seasons' rate)",
            "feature_count": len(stage2_meta.get("feature_names", [])),
            "feature_names": stage2_meta.get("feature_names", []),
            "metrics": stage2_meta.get("metrics", {}),
        },
        "training_seasons": stage1_meta.get("training_seasons"),
        "evaluation_protocol": stage2_meta.get("protocol", {}),
        "metrics_guide": METRICS_GUIDE,
        "data_credit": "F1DB (https://github.com/f1db/f1db), CC-BY-4.0",
    }


def save_snapshot(snapshot: FeatureSnapshot) -> str:
    """A new ``f1_features`` version only (``f1 refresh``), models untouched."""
    meta = {"kind": "feature_snapshot", **_stamp(snapshot)}
    with (
        commit(),
        _create(FEATURES_NAME, meta) as feat,
    ):
        snapshot.save(Path(feat.path) / "snapshot")
    return str(feat.tag)


def save_refit(
    snapshot: FeatureSnapshot, stage1: Stage1Model, fitted_through: dict[str, int]
) -> SavedTags:
    """``f1 refresh`` with results newer than Stage-1's: a new ``f1_features`` version and
    a new ``f1_stage1`` version refitted on them, both or neither. The refit keeps the
    latest Stage-1's settings and held-out metrics (the evaluation refits it before each
    event of the test season the same way) and records what it was fitted through."""
    base = bentoml.models.get(f"{STAGE1_NAME}:latest")
    old = {k: v for k, v in base.info.metadata.items() if k != MARKED}
    stamp = _stamp(snapshot)
    with commit(), contextlib.ExitStack() as stack:
        feat = stack.enter_context(_create(FEATURES_NAME, stamp | {"kind": "feature_snapshot"}))
        snapshot.save(Path(feat.path) / "snapshot")
        meta = (
            old
            | stamp
            | {
                "fitted_through": fitted_through,
                "refit_of": str(base.tag),
                "features_tag": str(feat.tag),
            }
        )
        m1 = stack.enter_context(_create(STAGE1_NAME, meta))
        stage1.save(Path(m1.path) / "model")
        stage2 = bentoml.models.get(f"{STAGE2_NAME}:latest")
        tags = SavedTags(str(feat.tag), str(m1.tag), str(stage2.tag))
    return tags


def stage1_fitted_through() -> tuple[dict[str, int] | None, list[int], Stage1Config] | None:
    """The latest Stage-1's latest fitted event (None for a model saved before it was
    recorded), training seasons and settings; None without a stored Stage-1."""
    try:
        model = bentoml.models.get(f"{STAGE1_NAME}:latest")
    except bentoml.exceptions.NotFound:
        return None
    meta = model.info.metadata
    cfg = open_stage1_config(model)
    through = meta.get("fitted_through")
    seasons = meta.get("training_seasons")
    return (
        {str(k): int(cast(int, v)) for k, v in through.items()}
        if isinstance(through, dict)
        else None,
        [int(cast(int, v)) for v in seasons] if isinstance(seasons, list) else [],
        cfg,
    )


def get_model(tag: str) -> bentoml.Model:
    try:
        return bentoml.models.get(tag)
    except bentoml.exceptions.NotFound as exc:
        raise StoreError(
            f"model '{tag}' is not in the model store ({store_home()}): run `f1 train` "
            "(or `f1 refresh` for f1_features), or pin an existing tag"
        ) from exc


def snapshot_data_hash() -> str | None:
    """The data hash of the latest stored feature snapshot (None without one)."""
    try:
        model = bentoml.models.get(f"{FEATURES_NAME}:latest")
    except bentoml.exceptions.NotFound:
        return None
    return str(model.info.metadata.get("data_hash") or "") or None


class Stored(Protocol):
    """A stored model: ``bentoml.models.get``'s answer, or a service's ``BentoModel``."""

    @property
    def tag(self) -> Any: ...

    @property
    def path(self) -> str: ...

    @property
    def info(self) -> Any: ...


def _open(
    model: Stored, load: Callable[[Path], T], what: str, fix: str, *errors: type[Exception]
) -> T:
    """``load`` of the model's folder; unreadable -> StoreError naming it and the fix."""
    caught: tuple[type[Exception], ...] = (OSError, ValueError, KeyError, TypeError, *errors)
    try:
        return load(Path(model.path))
    except caught as exc:
        raise StoreError(f"{what} '{model.tag}' is unreadable ({exc}): run `{fix}`") from exc


def open_snapshot(model: Stored) -> FeatureSnapshot:
    from pipelines.features.snapshot import FeatureSnapshot

    def load(path: Path) -> FeatureSnapshot:
        return FeatureSnapshot.load(path / "snapshot")

    return _open(model, load, "feature snapshot", "f1 refresh")


def open_stage1(model: Stored) -> Stage1Model:
    return _open(model, lambda p: Stage1Model.load(p / "model"), "model", "f1 train", lgb_error())


def open_stage2(model: Stored) -> Stage2Model:
    return _open(model, lambda p: Stage2Model.load(p / "model"), "model", "f1 train", lgb_error())


def open_stage1_config(model: Stored) -> Stage1Config:
    """The settings alone (the front needs the pole estimate, not the trees)."""
    return _open(model, lambda p: Stage1Model.load_config(p / "model"), "model", "f1 train")


def open_stage2_config(model: Stored) -> Stage2Config:
    return _open(model, lambda p: Stage2Model.load_config(p / "model"), "model", "f1 train")


def import_lightgbm_lean() -> None:
    """Import LightGBM for a process that only predicts from numpy rows (a model
    service): without its optional pandas and scikit-learn integrations, which would
    load pandas and pyarrow for nothing. A no-op where either is imported already."""
    if "lightgbm" in sys.modules or "pandas" in sys.modules:
        return
    blocked = [name for name in ("pandas", "sklearn") if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # importing it raises ImportError
    try:
        import lightgbm  # noqa: F401
    finally:
        for name in blocked:
            if sys.modules.get(name, "") is None:
                del sys.modules[name]


def lgb_error() -> type[Exception]:
    import lightgbm

    return lightgbm.basic.LightGBMError


def check_tags(features_tag: str, stage1_tag: str, stage2_tag: str) -> None:
    """Every tag resolves in the store and both models were trained on the features this
    code builds, else one StoreError naming each missing tag or the difference."""
    missing = []
    for tag, spec in ((features_tag, None), (stage1_tag, STAGE1), (stage2_tag, STAGE2)):
        try:
            model = bentoml.models.get(tag)
        except bentoml.exceptions.NotFound:
            missing.append(tag)
            continue
        if spec is not None:
            check_features(model, spec)
    if missing:
        raise StoreError(
            f"not in the model store ({store_home()}): {', '.join(missing)}. Run `f1 train` "
            "(or `f1 refresh` for f1_features), or pin existing tags with F1_STAGE1_MODEL, "
            "F1_STAGE2_MODEL, F1_FEATURES_MODEL (`f1 models` lists them)"
        )


def has_models() -> bool:
    """The three models are stored and the latest of each is what this code trains (its
    features, settings and snapshot format); else `f1 train --if-missing` trains anew."""
    names = {m.tag.name for m in bentoml.models.list()}
    if not {STAGE1_NAME, STAGE2_NAME, FEATURES_NAME} <= names:
        return False
    stage1 = bentoml.models.get(f"{STAGE1_NAME}:latest")
    stage2 = bentoml.models.get(f"{STAGE2_NAME}:latest")
    try:
        check_features(stage1, STAGE1)
        check_features(stage2, STAGE2)
        raw2 = json.loads((Path(stage2.path) / "model" / "config.json").read_text())
        cfg2 = Stage2Model.config_from(raw2, Path(stage2.path) / "model")
        cfg1 = Stage1Model.load_config(Path(stage1.path) / "model")
    except (StoreError, ValueError, OSError, TypeError):
        return False
    if "finish_rate" not in raw2:
        return False  # saved before the podium and points odds let cars retire
    raw1 = json.loads((Path(stage1.path) / "model" / "config.json").read_text())
    if "pole_tau_ahead" not in raw1:
        return False  # pole odds tuned on one season, before they were scored
    fresh = Stage1Config()
    settings1 = (cfg1.new_team_share, cfg1.form_model, cfg1.practice_model)
    if settings1 != (fresh.new_team_share, fresh.form_model, fresh.practice_model):
        return False  # fitted before new entrants (fields without practice, the first race
        # under new rules) were trained for
    from pipelines.settings import get_settings

    if (cfg2.rank_depth, cfg2.rank_decay) != stage2_places(get_settings()):
        return False  # fitted on other places of each race (the winner alone, before)
    from pipelines.features.snapshot import SNAPSHOT_FORMAT, FeatureSnapshot

    snap = Path(bentoml.models.get(f"{FEATURES_NAME}:latest").path) / "snapshot"
    return FeatureSnapshot.format_of(snap) == SNAPSHOT_FORMAT


def list_versions() -> Iterator[bentoml.Model]:
    models = [
        m for m in bentoml.models.list() if m.tag.name in {STAGE1_NAME, STAGE2_NAME, FEATURES_NAME}
    ]
    yield from sorted(models, key=lambda m: (m.tag.name, m.creation_time), reverse=True)


def store_home() -> str:
    from bentoml._internal.configuration.containers import BentoMLContainer

    return str(BentoMLContainer.bentoml_home.get())
