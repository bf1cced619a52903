"""tests.session: missing real data is skipped on a laptop and a failure under CI=true.

Without the failure, a CI runner that lost the data would go green having tested nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import session

ROOT = Path(__file__).resolve().parents[1]
MISSING = "/nonexistent/f1db"
PROBE_CONFTEST = """
pytest_plugins = ["tests.conftest"]  # the project's fixtures, real_tables among them
"""
PROBE_TEST = """
def test_needs_real_tables(real_tables):
    pass
"""


def _run_probe(ci: str | None, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """pytest on one test that needs only `real_tables` (in tmp_path: independent of the
    other test modules), with F1_DATA_DIR pointing nowhere."""
    (tmp_path / "conftest.py").write_text(PROBE_CONFTEST)
    (tmp_path / "test_probe.py").write_text(PROBE_TEST)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["F1_DATA_DIR"] = MISSING
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(tmp_path / "test_probe.py"), "-q", "-rA",
         "-p", "no:cacheprovider", "--rootdir", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_missing_real_data_fails_under_ci_naming_the_path(tmp_path: Path) -> None:
    out = _run_probe("true", tmp_path)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text[-3000:]
    assert "1 error" in out.stdout or "1 failed" in out.stdout, text[-3000:]
    assert f"real F1DB data not found at {MISSING}" in text, text[-3000:]
    assert "CI=true" in text and "skipped" not in out.stdout.splitlines()[-1], text[-3000:]


def test_missing_real_data_is_skipped_without_ci(tmp_path: Path) -> None:
    out = _run_probe(None, tmp_path)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "1 skipped" in out.stdout.splitlines()[-1], text[-3000:]
    assert f"real F1DB data not found at {MISSING}" in text, text[-3000:]


@pytest.mark.parametrize("ci", ["true", "1", "TRUE"])
def test_helper_fails_under_ci(ci: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gone = tmp_path / "no-f1db"
    monkeypatch.setattr(session, "REAL_DATA", gone)
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match=f"not found at {gone}"):
        session.require_real_data()


@pytest.mark.parametrize("ci", [None, "", "false", "0"])
def test_helper_skips_outside_ci(
    ci: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = tmp_path / "no-f1db"
    monkeypatch.setattr(session, "REAL_DATA", gone)
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match=f"not found at {gone}"):
        session.require_real_data()


def test_helper_returns_the_tree_when_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "seasons").mkdir()
    monkeypatch.setattr(session, "REAL_DATA", tmp_path)
    monkeypatch.setenv("CI", "true")
    assert session.require_real_data() == tmp_path
