"""The store under interruption: Ctrl-C, a killed writer, two writers at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import bentoml
import pytest

from pipelines import store
from pipelines.models import Stage2Model
from tests.conftest import STORE_HOME

ROOT = Path(__file__).resolve().parents[2]


def _versions(name: str) -> set[str]:
    return {m.tag.version for m in bentoml.models.list(name)}


def _assert_consistent() -> None:
    """Every stored version is complete and loads; `latest` of each is complete."""
    for name, load in (("f1_features", store.load_snapshot), ("f1_stage1", store.load_stage1),
                       ("f1_stage2", store.load_stage2)):  # fmt: skip
        for version in _versions(name):
            load(f"{name}:{version}")
        load(f"{name}:latest")


def test_ctrl_c_during_a_save_waits_for_all_three(empty_store: Path, tiny_models: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    snap, s1, s2 = tiny_models
    real_save = Stage2Model.save

    def save_then_ctrl_c(self: Stage2Model, path: Path) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # arrives in the middle of the commit
        real_save(self, path)

    monkeypatch.setattr(Stage2Model, "save", save_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        store.save_all(snap, s1, s2, {}, [2023, 2024])
    assert (
        len(_versions("f1_features"))
        == len(_versions("f1_stage1"))
        == len(_versions("f1_stage2"))
        == 1
    )
    _assert_consistent()


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


SAVER = textwrap.dedent("""
    import sys
    from pipelines import store
    snap = store.load_snapshot("f1_features:latest")
    s1, s2 = store.load_stage1("f1_stage1:latest"), store.load_stage2("f1_stage2:latest")
    for i in range(int(sys.argv[1])):
        store.save_all(snap, s1, s2, {"run": sys.argv[2]}, [2023, 2024])
        print("saved", flush=True)
""")


def _saver(n: int, label: str) -> subprocess.Popen[str]:
    env = os.environ | {"BENTOML_HOME": str(STORE_HOME)}
    return subprocess.Popen([sys.executable, "-c", SAVER, str(n), label], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_killed_writers_never_leave_the_store_broken(empty_store: Path, tiny_models: Any) -> None:
    snap, s1, s2 = tiny_models
    store.save_all(snap, s1, s2, {}, [2023, 2024])
    for delay in (0.0, 0.05, 0.11, 0.23):
        proc = _saver(50, "killed")
        assert proc.stdout is not None and proc.stdout.readline().startswith("saved")
        time.sleep(delay)  # somewhere inside a later save
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store.repair_store()  # what the next `f1 train` does first
        _assert_consistent()
    n = len(_versions("f1_stage1"))
    assert n > 1, "the writers never got to save: the kills proved nothing"


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
