"""The store under interruption: Ctrl-C, a killed writer, two writers at once.

No test here depends on the SIGINT disposition pytest inherited: a job started in the
background of a non-interactive shell (`bash -c 'pytest &'`, as CI runners do) starts
with SIGINT ignored, and Python then never raises KeyboardInterrupt. A test that needs
Ctrl-C installs Python's handler itself (`ctrl_c_raises`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bentoml
import pytest

from pipelines.models import store
from pipelines.models.stage2 import Stage2Model
from tests.session import STORE_HOME

ROOT = Path(__file__).resolve().parents[3]


def _versions(name: str) -> set[str]:
    return {m.tag.version for m in bentoml.models.list(name)}


def _assert_consistent() -> None:
    """Every stored version is complete and loads; `latest` of each is complete."""
    for name, load in (("f1_features", store.open_snapshot), ("f1_stage1", store.open_stage1),
                       ("f1_stage2", store.open_stage2)):  # fmt: skip
        for version in _versions(name):
            load(store.get_model(f"{name}:{version}"))
        load(store.get_model(f"{name}:latest"))


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt for the test, whatever pytest inherited."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@pytest.fixture
def ctrl_c_ignored() -> Iterator[None]:
    """SIGINT ignored, as in a job started in the background of a non-interactive shell."""
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _one_version_each() -> bool:
    return (
        len(_versions("f1_features"))
        == len(_versions("f1_stage1"))
        == len(_versions("f1_stage2"))
        == 1
    )


def test_ctrl_c_during_a_save_waits_for_all_three(empty_store: Path, tiny_models: Any,
                                                  ctrl_c_raises: None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    snap, s1, s2 = tiny_models
    real_save = Stage2Model.save

    def save_then_ctrl_c(self: Stage2Model, path: Path) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # arrives in the middle of the commit
        real_save(self, path)

    monkeypatch.setattr(Stage2Model, "save", save_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        store.save_all(snap, s1, s2, {}, [2023, 2024])
    assert _one_version_each()
    _assert_consistent()


def test_an_ignored_ctrl_c_stays_ignored_through_a_save(empty_store: Path, tiny_models: Any,
                                                        ctrl_c_ignored: None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Started with SIGINT ignored (CI): the save neither un-ignores it nor turns a
    Ctrl-C into an exception afterwards; SIGTERM is still held for the save."""
    snap, s1, s2 = tiny_models
    real_save = Stage2Model.save
    seen: dict[str, Any] = {}

    def save_with_ctrl_c(self: Stage2Model, path: Path) -> None:
        seen["sigint"] = signal.getsignal(signal.SIGINT)
        seen["sigterm"] = signal.getsignal(signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        real_save(self, path)

    monkeypatch.setattr(Stage2Model, "save", save_with_ctrl_c)
    tags = store.save_all(snap, s1, s2, {}, [2023, 2024])  # no KeyboardInterrupt
    assert seen["sigint"] is signal.SIG_IGN, "the save un-ignored SIGINT"
    assert callable(seen["sigterm"]), "SIGTERM was not held during the save"
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert _one_version_each() and str(bentoml.models.get("f1_stage2:latest").tag) == tags.stage2
    _assert_consistent()


def test_ctrl_c_test_passes_when_pytest_starts_with_sigint_ignored() -> None:
    """Regression: started with SIGINT ignored (`bash -c 'pytest &'` in CI), the Ctrl-C
    test failed with "DID NOT RAISE KeyboardInterrupt"."""
    test_id = f"{Path(__file__).relative_to(ROOT)}::test_ctrl_c_during_a_save_waits_for_all_three"
    out = subprocess.run(
        [sys.executable, "-m", "pytest", test_id, "-q", "-p", "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "1 passed" in out.stdout


def test_repair_removes_half_written_versions(empty_store: Path, tiny_models: Any) -> None:
    snap, s1, s2 = tiny_models
    tags = store.save_all(snap, s1, s2, {}, [2023, 2024])
    half = Path(store.store_home()) / "models" / "f1_stage1" / "halfwritten"
    (half / "model").mkdir(parents=True)
    (Path(store.store_home()) / "models" / "f1_stage1" / "latest").write_text("halfwritten")
    assert store.repair_store() == ["f1_stage1:halfwritten"]
    assert not half.exists()
    assert str(bentoml.models.get("f1_stage1:latest").tag) == tags.stage1
    _assert_consistent()


def test_a_copy_cut_short_after_its_model_yaml_is_removed(
    empty_store: Path, tiny_models: Any
) -> None:
    """BentoML copies a version into the store file by file: killed mid-copy, model.yaml
    can stand beside an empty model file (seen in CI: a 0-byte entrants.parquet). Without
    the marker a finished save writes, such a version is half-written; a version saved
    before markers existed (no flag in its metadata) is judged by model.yaml alone."""
    snap, s1, s2 = tiny_models
    tags = store.save_all(snap, s1, s2, {}, [2023, 2024])
    for tag in (tags.features, tags.stage1, tags.stage2):
        assert (Path(bentoml.models.get(tag).path) / store.COMPLETE).exists()
    second = store.save_all(snap, s1, s2, {}, [2023, 2024])
    cut = Path(bentoml.models.get(second.features).path)
    (cut / store.COMPLETE).unlink()
    for f in (cut / "snapshot").glob("*.parquet"):
        f.write_bytes(b"")  # the copy stopped here
    old = Path(bentoml.models.get(tags.stage1).path)  # as saved before markers
    (old / store.COMPLETE).unlink()
    info = old / "model.yaml"
    info.write_text(info.read_text().replace(f"  {store.MARKED}: true\n", ""))
    assert store.MARKED not in info.read_text()

    assert store.repair_store() == [f"f1_features:{second.features.split(':')[1]}"]
    assert not cut.exists() and old.exists()
    assert str(bentoml.models.get("f1_features:latest").tag) == tags.features
    _assert_consistent()


SAVER = textwrap.dedent("""
    import sys
    from pipelines.models import store
    snap = store.open_snapshot(store.get_model("f1_features:latest"))
    s1, s2 = store.open_stage1(store.get_model("f1_stage1:latest")), store.open_stage2(store.get_model("f1_stage2:latest"))
    for i in range(int(sys.argv[1])):
        store.save_all(snap, s1, s2, {"run": sys.argv[2]}, [2023, 2024])
        print("saved", flush=True)
""")


def _ignore_ctrl_c() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _saver(
    n: int, label: str, ctrl_c_ignored: bool = False, tmp: Path | None = None
) -> subprocess.Popen[str]:
    """A writer saving n times; ``ctrl_c_ignored``: started as a CI job is (SIGINT
    inherited as SIG_IGN). ``tmp``: its TMPDIR (BentoML stages each version in a temp
    folder; a writer killed mid-save leaves it behind, so killed ones stage in the
    test's own tmp path, not the machine's /tmp)."""
    env = os.environ | {"BENTOML_HOME": str(STORE_HOME)}
    if tmp is not None:
        env["TMPDIR"] = str(tmp)
    return subprocess.Popen([sys.executable, "-c", SAVER, str(n), label], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ignore_ctrl_c if ctrl_c_ignored else None)  # fmt: skip


def test_killed_writers_never_leave_the_store_broken(
    empty_store: Path, tiny_models: Any, tmp_path: Path
) -> None:
    snap, s1, s2 = tiny_models
    store.save_all(snap, s1, s2, {}, [2023, 2024])
    for delay in (0.0, 0.05, 0.11, 0.23):
        proc = _saver(50, "killed", tmp=tmp_path)
        assert proc.stdout is not None and proc.stdout.readline().startswith("saved")
        time.sleep(delay)  # somewhere inside a later save
        proc.send_signal(signal.SIGKILL)
        proc.communicate()  # reaps it and closes its pipes
        store.repair_store()  # what the next `f1 train` does first
        _assert_consistent()
    n = len(_versions("f1_stage1"))
    assert n > 1, "the writers never got to save: the kills proved nothing"


def _assert_matching_sets() -> None:
    counts = {name: len(_versions(name)) for name in store.MANAGED}
    assert len(set(counts.values())) == 1, f"a save was cut in half: {counts}"


def test_sigterm_to_a_writer_started_with_ctrl_c_ignored_is_all_or_none(
    empty_store: Path, tiny_models: Any, tmp_path: Path
) -> None:
    """`f1 train` started as CI starts jobs (SIGINT ignored): Ctrl-C does nothing, and a
    SIGTERM mid-save still lets the save finish first: no repair needed afterwards, and
    no staging folder left in the temp dir."""
    snap, s1, s2 = tiny_models
    store.save_all(snap, s1, s2, {}, [2023, 2024])
    for delay in (0.0, 0.07, 0.19):
        proc = _saver(200, "ci", ctrl_c_ignored=True, tmp=tmp_path)
        assert proc.stdout is not None and proc.stdout.readline().startswith("saved")
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)  # ignored: the writer carries on
        assert proc.stdout.readline().startswith("saved"), "SIGINT stopped the writer"
        assert proc.poll() is None
        time.sleep(delay)  # somewhere inside a later save
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGTERM, err[-2000:]
        assert "Traceback" not in err, err[-2000:]
        assert store.repair_store() == [], "SIGTERM left a half-written version"
        assert not list(tmp_path.glob("bentoml-model-*")), "SIGTERM left staging folders"
        _assert_matching_sets()
        _assert_consistent()
    assert len(_versions("f1_stage1")) > 4, "the writers never got to save"


def test_two_writers_at_once_keep_latest_a_matching_set(
    empty_store: Path, tiny_models: Any
) -> None:
    snap, s1, s2 = tiny_models
    store.save_all(snap, s1, s2, {}, [2023, 2024])
    procs = [_saver(6, "a"), _saver(6, "b")]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        assert out.count("saved") == 6
    assert len(_versions("f1_stage1")) == len(_versions("f1_stage2")) == 13
    _assert_consistent()
    latest1 = bentoml.models.get("f1_stage1:latest")
    latest2 = bentoml.models.get("f1_stage2:latest")
    feat = bentoml.models.get("f1_features:latest")
    assert latest1.info.metadata["features_tag"] == str(feat.tag)
    assert latest2.info.metadata["features_tag"] == str(feat.tag)
