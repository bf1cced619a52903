"""The `f1` command line through typer's CliRunner (temporary store, synthetic data)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import typer.main
from typer.testing import CliRunner

from pipelines.f1db.parse import data_hash, load_tables
from pipelines.models import store
from tests.fakes import SyntheticTree, write_f1db_tree
from tests.pipelines.f1db.fake_github import (
    LATEST_PATH,
    archive_path,
    as_fresh_clone,
    serve_fake_github,
    tree_tarball,
)
from tests.session import store_models
from tests.training.test_backtest import small_grids  # noqa: F401  (fixture)
from training import cli
from training.cli import app

runner = CliRunner()


def _flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def _commands() -> list[tuple[list[str], click.Command]]:
    root = typer.main.get_command(app)
    out: list[tuple[list[str], click.Command]] = []

    def walk(cmd: click.Command, path: list[str]) -> None:
        out.append((path, cmd))
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name])

    walk(root, [])
    return out


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich tables wide enough that tags are never cut."""
    monkeypatch.setattr(cli.console, "_width", 250)
    monkeypatch.setattr(cli.err, "_width", 250)


@pytest.fixture
def f1_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clear_settings, wide
) -> Iterator[dict[str, Path]]:
    """F1_* settings pointing at temporary folders (settings cache cleared around)."""
    paths = {"cache": tmp_path / "cache", "reports": tmp_path / "reports"}
    monkeypatch.setenv("F1_CACHE_DIR", str(paths["cache"]))
    monkeypatch.setenv("F1_REPORTS_DIR", str(paths["reports"]))
    yield paths


def test_every_command_has_help() -> None:
    cmds = _commands()
    names = {" ".join(p) for p, _c in cmds}
    assert {"train", "evaluate", "refresh", "predict", "models", "data info"} <= names
    for path, cmd in cmds:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output
        doc = inspect.cleandoc(cmd.help or "").splitlines()[0]
        assert _flat(doc)[:40] in _flat(result.output), path


def test_no_arguments_shows_help() -> None:
    result = runner.invoke(app, [])
    assert "Usage:" in result.output
    for name in ("train", "predict", "models", "data"):
        assert name in result.output


def test_data_info_on_synthetic_tree(
    synthetic_tree: SyntheticTree, f1_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("F1_DATA_DIR", str(synthetic_tree.root))
    result = runner.invoke(app, ["data", "info"])
    assert result.exit_code == 0, result.output
    out = _flat(result.output)
    expected = load_tables(synthetic_tree.root, None, min_season=2012)
    assert expected.content_hash in out
    assert str(synthetic_tree.root) in out
    seasons = synthetic_tree.seasons
    n = len(synthetic_tree.races)
    assert f"{min(seasons)}-{max(seasons)} ({n} events, {n} with results)" in out
    last = synthetic_tree.races[-1]
    assert f"{last.season} round {last.round} {last.slug} ({last.date.isoformat()})" in out
    # the parse was cached in F1_CACHE_DIR, not next to the data
    assert list(f1_env["cache"].glob("tables-*"))
    assert not list(synthetic_tree.root.glob("**/*.parquet"))


def test_data_info_without_data_is_a_clean_error(
    tmp_path: Path, f1_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("F1_DATA_DIR", str(tmp_path / "nothing-here"))
    result = runner.invoke(app, ["data", "info"])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "F1_DATA_DIR" in _flat(result.output)
    assert "Traceback" not in result.output


def test_predict_with_empty_store_names_f1_train(empty_store, f1_env) -> None:
    result = runner.invoke(app, ["predict", "--season", "2024", "--round", "1"])
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit)
    out = _flat(result.output)
    assert "f1 train" in out
    assert "f1_features:latest" in out
    assert "Traceback" not in result.output


def test_train_on_too_small_data_is_a_clean_error(
    synthetic_tree: SyntheticTree, empty_store, f1_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("F1_DATA_DIR", str(synthetic_tree.root))
    result = runner.invoke(app, ["train"])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "too few seasons" in _flat(result.output)
    assert "Traceback" not in result.output
    assert store_models() == []
    assert not f1_env["reports"].exists()


def test_train_on_seasons_before_train_from_is_a_clean_error(
    tmp_path: Path, empty_store, f1_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Data that holds no season from F1_TRAIN_FROM on: an error message, no traceback."""
    tree = write_f1db_tree(tmp_path / "old", seasons=(2012, 2013), sprint_round=None)
    monkeypatch.setenv("F1_DATA_DIR", str(tree.root))
    result = runner.invoke(app, ["train"])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "too few seasons" in _flat(result.output)
    assert store_models() == []


def test_models_lists_versions_after_a_save(empty_store, tiny_models, f1_env) -> None:
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0
    assert "no models yet" in _flat(result.output)
    assert "f1 train" in _flat(result.output)

    snap, s1, s2 = tiny_models
    first = store.save_all(snap, s1, s2, {}, [2021, 2025])
    second = store.save_all(snap, s1, s2, {}, [2021, 2025])
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    out = result.output
    for tags in (first, second):
        for tag in (tags.features, tags.stage1, tags.stage2):
            assert tag in out
    assert snap.meta["data_hash"][:12] in out
    assert str(store.store_home()) in _flat(out)


def test_predict_prints_a_full_field(empty_store, tiny_models, synthetic_tree, f1_env) -> None:
    snap, s1, s2 = tiny_models
    store.save_all(snap, s1, s2, {}, [2021, 2025])
    ctx = snap.event_by_round(2024, 2)
    result = runner.invoke(app, ["predict", "--season", "2024", "--round", "2"])
    assert result.exit_code == 0, result.output
    for e in snap.entries(ctx):  # by name ("Max Verstappen"), not by id
        assert snap.driver_name(e.driver_id) in result.output
        assert e.driver_id not in result.output
    assert "Red-Bull" in result.output and "Mclaren" in result.output  # the tree's team names
    assert "P(podium)" in result.output and "P(points)" in result.output
    assert "technical rules" not in result.output  # the tree's era began before its data
    missing = runner.invoke(app, ["predict", "--season", "2024", "--round", "99"])
    assert missing.exit_code == 1
    assert "round=99" in _flat(missing.output)


def test_predict_says_when_the_win_forecast_leans_on_the_grid(
    empty_store, tiny_models, synthetic_tree, f1_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were 2024 a season of new technical rules, its first races would lean on the grid,
    and the table would be followed by the note the API sends as a warning."""
    snap, s1, s2 = tiny_models
    store.save_all(snap, s1, s2, {}, [2021, 2025])
    monkeypatch.setattr("pipelines.features.rows.RULES_RESETS", (2024,))
    for rnd, races, share in ((1, 0, "100%"), (2, 1, "75%")):
        result = runner.invoke(app, ["predict", "--season", "2024", "--round", str(rnd)])
        assert result.exit_code == 0, result.output
        out = _flat(result.output)
        assert f"note: 2024: {races} race(s) under the current technical rules" in out
        assert f"takes {share} of its log-odds from the grid alone" in out


def test_predict_prints_the_apis_warnings(empty_store, tiny_models, synthetic_tree, f1_env) -> None:
    """The first event of the data: no one has results before it, as the API says."""
    snap, s1, s2 = tiny_models
    store.save_all(snap, s1, s2, {}, [2021, 2025])
    first = min(synthetic_tree.seasons)
    result = runner.invoke(app, ["predict", "--season", str(first), "--round", "1"])
    assert result.exit_code == 0, result.output
    out = _flat(result.output)
    assert "note: no results in the data before this event for driver(s)" in out
    assert "note: no results in the data before this event for team(s)" in out
    later = runner.invoke(app, ["predict", "--season", str(first), "--round", "2"])
    assert "no results in the data" not in _flat(later.output)


def test_refresh_adds_only_a_snapshot(
    synthetic_tree: SyntheticTree, empty_store, tiny_models, f1_env, monkeypatch
) -> None:
    snap, s1, s2 = tiny_models
    tags = store.save_all(snap, s1, s2, {}, [2021, 2025])
    monkeypatch.setenv("F1_DATA_DIR", str(synthetic_tree.root))
    result = runner.invoke(app, ["refresh"])
    assert result.exit_code == 0, result.output
    names = sorted(m.tag.name for m in store_models())
    assert names == sorted(
        [store.FEATURES_NAME, store.FEATURES_NAME, store.STAGE1_NAME, store.STAGE2_NAME]
    )
    latest = store.get_model(f"{store.FEATURES_NAME}:latest")
    assert str(latest.tag) != tags.features
    assert str(latest.tag) in _flat(result.output)


def test_refresh_refits_stage1_on_a_newer_qualifying(
    synthetic_tree: SyntheticTree, empty_store, tiny_models, f1_env, monkeypatch
) -> None:
    """Stage-1 fitted through an earlier event than the data's latest qualifying: `f1
    refresh` stores a snapshot and a Stage-1 refitted with the same settings, recording
    what it was fitted through and what it replaced; run again, nothing more to refit."""
    snap, s1, s2 = tiny_models
    first = synthetic_tree.races[0]
    last = max(synthetic_tree.races, key=lambda r: (r.season, r.round))
    through = {"season": first.season, "round": first.round, "race_id": 1}
    tags = store.save_all(snap, s1, s2, {}, [first.season, first.season], through)
    monkeypatch.setenv("F1_DATA_DIR", str(synthetic_tree.root))
    result = runner.invoke(app, ["refresh"])
    assert result.exit_code == 0, result.output
    stage1 = sorted(str(m.tag) for m in store_models() if m.tag.name == store.STAGE1_NAME)
    assert len(stage1) == 2 and tags.stage1 in stage1
    new = store.get_model(f"{store.STAGE1_NAME}:latest")
    meta = new.info.metadata
    assert (meta["fitted_through"]["season"], meta["fitted_through"]["round"]) == (
        last.season,
        last.round,
    )
    assert meta["refit_of"] == tags.stage1
    assert meta["features_tag"] == str(store.get_model(f"{store.FEATURES_NAME}:latest").tag)
    refit = store.open_stage1(store.get_model(str(new.tag)))
    assert refit.config == s1.config
    assert "Stage-1 refitted" in _flat(result.output) and str(new.tag) in _flat(result.output)
    listed = runner.invoke(app, ["models"], terminal_width=250)
    assert f"{last.season} round {last.round}" in _flat(listed.output)
    again = runner.invoke(app, ["refresh"])
    assert again.exit_code == 0, again.output
    assert "Stage-1 refitted" not in _flat(again.output)
    assert len([m for m in store_models() if m.tag.name == store.STAGE1_NAME]) == 2


def test_train_if_missing_refreshes_a_snapshot_older_than_the_data(
    synthetic_tree: SyntheticTree, empty_store, tiny_models, f1_env, monkeypatch
) -> None:
    """`make serve` with models stored: the data as it was -> nothing to do; a newer
    F1DB (a file changed) -> a new f1_features snapshot, the models kept."""
    snap, s1, s2 = tiny_models
    tags = store.save_all(snap, s1, s2, {}, [2021, 2025])
    monkeypatch.setenv("F1_DATA_DIR", str(synthetic_tree.root))

    def features() -> list[str]:
        return sorted(str(m.tag) for m in store_models() if m.tag.name == store.FEATURES_NAME)

    same = runner.invoke(app, ["train", "--if-missing"])
    assert same.exit_code == 0, same.output
    assert "skipping training" in _flat(same.output) and "refreshing" not in same.output
    assert features() == [tags.features]

    race = synthetic_tree.race_dir(2024, 2) / "race-results.yml"
    race.write_text(race.read_text() + "# a correction in a later release\n")
    newer = runner.invoke(app, ["train", "--if-missing"])
    assert newer.exit_code == 0, newer.output
    assert "the data changed since the stored feature snapshot" in _flat(newer.output)
    assert len(features()) == 2
    assert {str(m.tag) for m in store_models()} >= {tags.stage1, tags.stage2}
    again = runner.invoke(app, ["train", "--if-missing"])
    assert "refreshing" not in again.output and len(features()) == 2


def test_train_if_missing_first_removes_a_save_that_never_finished(
    synthetic_tree: SyntheticTree, empty_store, tiny_models, f1_env, monkeypatch
) -> None:
    """`make serve` after a writer was killed mid-save: the half-written version goes
    before anything reads the store, so `latest` is never a broken version."""
    snap, s1, s2 = tiny_models
    store.save_all(snap, s1, s2, {}, [2021, 2025])
    monkeypatch.setenv("F1_DATA_DIR", str(synthetic_tree.root))
    half = Path(store.store_home()) / "models" / store.STAGE1_NAME / "killedmidcopy"
    (half / "model").mkdir(parents=True)
    result = runner.invoke(app, ["train", "--if-missing"])
    assert result.exit_code == 0, result.output
    assert f"removed {store.STAGE1_NAME}:killedmidcopy" in _flat(result.output)
    assert not half.exists() and "skipping training" in _flat(result.output)


def test_train_if_missing_on_a_fresh_clone_downloads_f1db_then_trains(
    tmp_path: Path,
    empty_store,
    clear_settings,
    small_grids,  # noqa: F811
    wide,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`make serve` on a clone with no ../shared and no F1_DATA_DIR: the latest F1DB
    release is downloaded into the per-user data folder, credited, and trained on; the next
    run finds both the models and the data and asks the network nothing."""
    tree = write_f1db_tree(tmp_path / "published", seasons=(2020, 2021, 2022, 2023), rounds=6)
    with serve_fake_github() as github:
        github.release("v2023.8.0", tree_tarball(tree.root, "f1db-2023.8.0"))
        home = as_fresh_clone(monkeypatch, tmp_path, github.repo_url)
        for key, value in {
            "F1_HISTORY_FROM": "2020",
            "F1_TRAIN_FROM": "2020",
            "F1_VALID_SEASON": "2022",
            "F1_TEST_SEASON": "2023",
        }.items():
            monkeypatch.setenv(key, value)
        first = runner.invoke(app, ["train", "--if-missing"])
        assert first.exit_code == 0, first.output
        assert github.requests == [LATEST_PATH, archive_path("v2023.8.0")]
        again = runner.invoke(app, ["train", "--if-missing"])
        assert again.exit_code == 0, again.output
        assert len(github.requests) == 2

    data = home / "f1-predictor" / "f1db"
    out = _flat(first.output)
    assert "latest F1DB release: v2023.8.0" in out
    assert "Data: F1DB (https://github.com/f1db/f1db), CC-BY-4.0" in out
    assert "F1DB release: v2023.8.0" in (data / "SOURCE.txt").read_text()
    # the models were fitted on the downloaded data, which is the published tree
    assert store.snapshot_data_hash() == data_hash(data, 2020) == data_hash(tree.root, 2020)
    names = sorted(m.tag.name for m in store_models())
    assert names == sorted([store.FEATURES_NAME, store.STAGE1_NAME, store.STAGE2_NAME])
    assert "skipping training" in _flat(again.output) and "downloading" not in again.output
