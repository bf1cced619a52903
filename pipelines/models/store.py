"""The BentoML model store: ``f1_features`` (the snapshot), ``f1_stage1``, ``f1_stage2``, written
in nested ``bentoml.models.create`` blocks: a failure leaves ``latest`` on the last full set."""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import platform
import re
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
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


MANAGED = (FEATURES_NAME, STAGE1_NAME, STAGE2_NAME)


@contextlib.contextmanager
def _deferred_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block ends, then raise them again under the old
    handlers: a Ctrl-C waits for the save. An ignored signal stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    old = {sig: h for sig, h in old.items() if h is not signal.SIG_IGN and h is not None}
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
"""Metadata flag of a version saved with ``COMPLETE`` (older versions: model.yaml alone)."""


def _complete(version: Path) -> bool:
    """A stored version BentoML finished copying (a marked version needs ``COMPLETE``)."""
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
    """Remove half-written versions of our models (a crash inside BentoML's copy)."""
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
    """One writer at a time: the store's file lock (released when the file closes)."""
    home = Path(store_home())
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".f1-store.lock").open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def commit() -> Iterator[None]:
    """One writer at a time, signals held, from a repaired store."""
    with _locked(), _deferred_signals():
        repair_store()
        yield


def repair() -> list[str]:
    """``repair_store`` under the lock (before serving, as every save does first)."""
    with _locked():
        return repair_store()


@contextlib.contextmanager
def _create(name: str, metadata: dict[str, Any]) -> Iterator[bentoml.Model]:
    """``bentoml.models.create``, its staging folder removed once the version is stored
    (BentoML removes it only when the Model is collected: never on SIGTERM)."""
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


def _save(
    stack: contextlib.ExitStack,
    name: str,
    item: FeatureSnapshot | Stage1Model | Stage2Model,
    meta: dict[str, Any],
) -> bentoml.Model:
    """A new version ``name`` of ``item`` inside the commit's ``stack``."""
    stored = stack.enter_context(_create(name, meta))
    item.save(Path(stored.path) / ("snapshot" if name == FEATURES_NAME else "model"))
    return stored


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
    meta1 = {"kind": "stage1_gap_to_pole_ensemble", "metrics": evaluation.get("stage1", {})}
    meta1["fitted_through"] = fitted_through
    meta2 = {"kind": "stage2_win_classifier", "metrics": evaluation.get("stage2", {})}
    meta2["protocol"] = evaluation.get("protocol", {})
    with commit(), contextlib.ExitStack() as stack:
        feat = _save(stack, FEATURES_NAME, snapshot, common | {"kind": "feature_snapshot"})
        common |= {"features_tag": str(feat.tag)}
        m1 = _save(stack, STAGE1_NAME, stage1, common | _features(STAGE1) | meta1)
        m2 = _save(stack, STAGE2_NAME, stage2, common | _features(STAGE2) | meta2)
        tags = SavedTags(str(feat.tag), str(m1.tag), str(m2.tag))
    return tags


def _features(spec: FeatureSpec) -> dict[str, Any]:
    return {"feature_names": list(spec.names), "features_revision": spec.revision}


def check_features(model: bentoml.Model, spec: FeatureSpec) -> None:
    """Refuse a model trained on other features than the code builds (StoreError)."""
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


def _metrics_guide() -> dict[str, str]:
    """What each held-out metric block of /model_info means: ``metrics_guide.md``'s bullets."""
    text = Path(__file__).with_name("metrics_guide.md").read_text(encoding="utf-8")
    bullets = re.findall(r"^- `([^`]+)`: (.+?)(?=^- |\Z)", text, re.MULTILINE | re.DOTALL)
    return {key: " ".join(meaning.split()) for key, meaning in bullets}


METRICS_GUIDE = _metrics_guide()


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
    stamp = _stamp(snapshot) | {"kind": "feature_snapshot"}
    with commit(), contextlib.ExitStack() as stack:
        feat = _save(stack, FEATURES_NAME, snapshot, stamp)
    return str(feat.tag)


def save_refit(
    snapshot: FeatureSnapshot, stage1: Stage1Model, fitted_through: dict[str, int]
) -> SavedTags:
    """``f1 refresh`` with newer results: new ``f1_features`` and ``f1_stage1`` versions,
    both or neither, the refit keeping the latest Stage-1's settings and metrics."""
    base = bentoml.models.get(f"{STAGE1_NAME}:latest")
    old = {k: v for k, v in base.info.metadata.items() if k != MARKED}
    stamp = _stamp(snapshot)
    with commit(), contextlib.ExitStack() as stack:
        feat = _save(stack, FEATURES_NAME, snapshot, stamp | {"kind": "feature_snapshot"})
        refit = {"fitted_through": fitted_through, "refit_of": str(base.tag)}
        meta = old | stamp | refit | {"features_tag": str(feat.tag)}
        m1 = _save(stack, STAGE1_NAME, stage1, meta)
        stage2 = bentoml.models.get(f"{STAGE2_NAME}:latest")
        tags = SavedTags(str(feat.tag), str(m1.tag), str(stage2.tag))
    return tags


def stage1_fitted_through() -> tuple[dict[str, int] | None, list[int], Stage1Config] | None:
    """The latest Stage-1's latest fitted event, training seasons and settings (or None)."""
    try:
        model = bentoml.models.get(f"{STAGE1_NAME}:latest")
    except bentoml.exceptions.NotFound:
        return None
    through, seasons = (model.info.metadata.get(k) for k in ("fitted_through", "training_seasons"))
    fitted = (
        {str(k): int(cast(int, v)) for k, v in through.items()}
        if isinstance(through, dict)
        else None
    )
    years = [int(cast(int, v)) for v in seasons] if isinstance(seasons, list) else []
    return fitted, years, open_stage1_config(model)


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

    return _open(
        model, lambda p: FeatureSnapshot.load(p / "snapshot"), "feature snapshot", "f1 refresh"
    )


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
    """Import LightGBM without its pandas and scikit-learn integrations (a model service
    predicts from numpy rows); a no-op where either is imported already."""
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
    """Every tag resolves and both models use this code's features, else one StoreError."""
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
    """The latest of the three models is what this code trains (features, settings and
    snapshot format); else `f1 train --if-missing` trains anew."""
    if not set(MANAGED) <= {m.tag.name for m in bentoml.models.list()}:
        return False
    feat, stage1, stage2 = (bentoml.models.get(f"{name}:latest") for name in MANAGED)
    try:
        check_features(stage1, STAGE1)
        check_features(stage2, STAGE2)
        cfg2 = Stage2Model.load_config(Path(stage2.path) / "model")
        saved = [
            json.loads((Path(m.path) / "model" / "config.json").read_text())
            for m in (stage1, stage2)
        ]
    except (StoreError, ValueError, OSError, TypeError):
        return False
    for raw, config in zip(saved, (Stage1Config, Stage2Config), strict=True):
        if not {f.name for f in fields(config)} <= set(raw):
            return False  # saved before one of this code's settings existed
    from pipelines.settings import get_settings

    if (cfg2.rank_depth, cfg2.rank_decay) != stage2_places(get_settings()):
        return False  # fitted on other places of each race than the settings ask
    from pipelines.features.snapshot import SNAPSHOT_FORMAT, FeatureSnapshot

    return FeatureSnapshot.format_of(Path(feat.path) / "snapshot") == SNAPSHOT_FORMAT


def list_versions() -> Iterator[bentoml.Model]:
    models = [m for m in bentoml.models.list() if m.tag.name in MANAGED]
    yield from sorted(models, key=lambda m: (m.tag.name, m.creation_time), reverse=True)


def store_home() -> str:
    from bentoml._internal.configuration.containers import BentoMLContainer

    return str(BentoMLContainer.bentoml_home.get())
