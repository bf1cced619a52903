"""The F1DB YAML tree -> tables: parsing, content-keyed cache, errors, derived facts."""

from __future__ import annotations

import math
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.f1db import parse as data
from pipelines.f1db.laptime import parse_time
from pipelines.f1db.parse import (
    DataError,
    Tables,
    content_hash,
    load_tables,
    sessions_before_qualifying,
    team_lineage,
)
from tests.fakes import DRIVERS, RESERVE, TURNS, SyntheticTree, fmt_lap
from tests.session import REAL_DATA
from training.datasets import grid_slots

# ------------------------------------------------------------------------ parsing


def test_tables_have_one_row_per_source_record(synthetic_tree: SyntheticTree) -> None:
    tree = synthetic_tree
    t = load_tables(tree.root, None, min_season=2000)
    assert len(t.races) == len(tree.races)
    assert len(t.qualifying) == sum(len(r.quali) for r in tree.races)
    assert len(t.practice) == sum(len(f) for r in tree.races for f in r.practice.values())
    assert len(t.grid) == sum(len(r.grid) for r in tree.races)
    assert len(t.results) == sum(len(r.results) for r in tree.races)
    assert len(t.sessions) == sum(len(r.practice) for r in tree.races)
    n_drivers = len(DRIVERS) + 1  # the reserve driver runs in FP1
    assert len(t.drivers) == n_drivers
    assert set(t.drivers["driver_id"]) == {d for d, *_ in DRIVERS} | {RESERVE[0]}
    assert len(t.constructors) == 2
    assert set(t.circuits["circuit_id"]) == {r.circuit_id for r in tree.races}
    # entrants: every driver once per season (test driver included, flagged)
    assert len(t.entrants) == len(tree.seasons) * n_drivers
    assert t.entrants.loc[t.entrants["test_driver"], "driver_id"].unique().tolist() == [RESERVE[0]]


def test_race_rows_match_race_files(synthetic_tree: SyntheticTree) -> None:
    t = load_tables(synthetic_tree.root, None, min_season=2000)
    races = t.races.set_index("race_id")
    for spec in synthetic_tree.races:
        row = races.loc[spec.race_id]
        assert (row["season"], row["round"]) == (spec.season, spec.round)
        assert row["date"] == pd.Timestamp(spec.date)
        assert row["circuit_id"] == spec.circuit_id
        assert row["turns"] == TURNS[spec.circuit_id]
        assert bool(row["is_sprint"]) == spec.is_sprint
        assert bool(row["has_quali"]) and bool(row["has_results"])
    # the calendar is in date order
    assert t.races["date"].is_monotonic_increasing


def test_qualifying_best_is_fastest_of_q1_q2_q3(synthetic_tree: SyntheticTree) -> None:
    t = load_tables(synthetic_tree.root, None, min_season=2000)
    for spec in synthetic_tree.races:
        q = t.qualifying[t.qualifying["race_id"] == spec.race_id].set_index("driver_id")
        for d, (q1, q2, q3) in spec.quali.items():
            assert q.loc[d, "best_s"] == pytest.approx(min(x for x in (q1, q2, q3) if x))
            if q3 is None:
                assert math.isnan(q.loc[d, "q3_s"])
            else:
                assert q.loc[d, "q3_s"] == pytest.approx(q3)


def test_practice_rows_keep_session_time_and_laps(synthetic_tree: SyntheticTree) -> None:
    t = load_tables(synthetic_tree.root, None, min_season=2000)
    for spec in synthetic_tree.races:
        for s, fld in spec.practice.items():
            p = t.practice[(t.practice["race_id"] == spec.race_id) & (t.practice["session"] == s)]
            got = dict(zip(p["driver_id"], zip(p["time_s"], p["laps"], strict=True), strict=True))
            assert set(got) == set(fld)
            for d, (lap, laps) in fld.items():
                # sprint qualifying rows hold q1 (slower) and q2: the best counts
                assert got[d][0] == pytest.approx(lap)
                assert got[d][1] == laps


def test_grid_pit_lane_and_non_starters(synthetic_tree: SyntheticTree) -> None:
    t = load_tables(synthetic_tree.root, None, min_season=2000)
    for spec in synthetic_tree.races:
        g = t.grid[t.grid["race_id"] == spec.race_id].set_index("driver_id")
        for d, pos in spec.grid.items():
            assert bool(g.loc[d, "pit_lane"]) == (pos == "PL")
            if isinstance(pos, int):
                assert g.loc[d, "grid"] == pos
            else:
                assert math.isnan(g.loc[d, "grid"])
        res = t.results[t.results["race_id"] == spec.race_id]
        assert res["position_text"].tolist() == [p for _d, p, _pts in spec.results]
        assert res["points"].sum() == pytest.approx(sum(p for *_x, p in spec.results))


def test_standings_are_cumulative_points(synthetic_tree: SyntheticTree) -> None:
    t = load_tables(synthetic_tree.root, None, min_season=2000)
    for season in synthetic_tree.seasons:
        specs = [r for r in synthetic_tree.races if r.season == season]
        last = specs[-1]
        total: dict[str, float] = {}
        for r in specs:
            for d, _p, pts in r.results:
                total[d] = total.get(d, 0.0) + pts
        st = t.driver_standings[t.driver_standings["race_id"] == last.race_id]
        assert dict(zip(st["id"], st["points"], strict=True)) == total
        # positions follow points
        assert st.sort_values("position")["points"].is_monotonic_decreasing


def test_min_season_limits_the_parse(synthetic_tree: SyntheticTree) -> None:
    t = load_tables(synthetic_tree.root, None, min_season=2024)
    assert set(t.races["season"]) == {2024}
    assert set(t.qualifying["race_id"]) == {
        r.race_id for r in synthetic_tree.races if r.season == 2024
    }
    with pytest.raises(DataError, match="no season >= 2030"):
        load_tables(synthetic_tree.root, None, min_season=2030)


# -------------------------------------------------------------------------- cache


def _assert_tables_equal(a: Tables, b: Tables) -> None:
    for name in Tables.table_names():
        pd.testing.assert_frame_equal(
            getattr(a, name).reset_index(drop=True), getattr(b, name).reset_index(drop=True)
        )


def test_second_load_reads_the_parquet_cache(
    synthetic_tree: SyntheticTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    first = load_tables(synthetic_tree.root, cache, min_season=2000)
    assert [p.name for p in cache.iterdir()] == [f"tables-{first.content_hash}"]

    def no_parse(*_a, **_k):
        raise AssertionError("the tree was parsed again despite a valid cache")

    monkeypatch.setattr(data, "_parse_tree", no_parse)
    second = load_tables(synthetic_tree.root, cache, min_season=2000)
    assert second.content_hash == first.content_hash
    _assert_tables_equal(first, second)


def test_changed_file_rebuilds_with_new_hash(synthetic_tree: SyntheticTree, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = load_tables(synthetic_tree.root, cache, min_season=2000)
    spec = synthetic_tree.race(2024, 1)
    qfile = synthetic_tree.race_dir(2024, 1) / "qualifying-results.yml"
    driver = DRIVERS[0][0]
    old = spec.quali[driver][2]
    assert old is not None
    new = round(old - 1.0, 3)
    text = qfile.read_text()
    assert text.count(fmt_lap(old)) == 1
    qfile.write_text(text.replace(fmt_lap(old), fmt_lap(new)))

    second = load_tables(synthetic_tree.root, cache, min_season=2000)
    assert second.content_hash != first.content_hash
    assert {p.name for p in cache.iterdir()} == {
        f"tables-{first.content_hash}",
        f"tables-{second.content_hash}",
    }
    q = second.qualifying
    row = q[(q["race_id"] == spec.race_id) & (q["driver_id"] == driver)]
    assert row["best_s"].item() == pytest.approx(new)


def test_content_hash_ignores_location_but_not_bytes(
    synthetic_tree: SyntheticTree, tmp_path: Path
) -> None:
    seasons = synthetic_tree.seasons
    copy = tmp_path / "elsewhere"
    shutil.copytree(synthetic_tree.root, copy)
    assert content_hash(copy, seasons) == content_hash(synthetic_tree.root, seasons)
    # the hash covers the reference folders too
    ref = copy / "drivers" / f"{DRIVERS[0][0]}.yml"
    ref.write_text(ref.read_text() + "# edited\n")
    assert content_hash(copy, seasons) != content_hash(synthetic_tree.root, seasons)
    # and the season selection
    assert content_hash(synthetic_tree.root, seasons[1:]) != content_hash(
        synthetic_tree.root, seasons
    )


def test_failed_cache_write_leaves_nothing(
    synthetic_tree: SyntheticTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure while writing the parquet files leaves neither a cache nor a temp folder."""
    cache = tmp_path / "cache"
    real = pd.DataFrame.to_parquet
    calls = {"n": 0}

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise TypeError("simulated serialisation failure")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", flaky)
    with pytest.raises(TypeError, match="simulated"):
        load_tables(synthetic_tree.root, cache, min_season=2000)
    assert calls["n"] == 3
    assert list(cache.glob("tables-*")) == []
    assert list(cache.glob(".tmp-*")) == []


# ------------------------------------------------------------------------- errors


def _assert_nothing_cached(cache: Path) -> None:
    """No cache folder and no temporary folder (glob of a missing folder is empty)."""
    assert list(cache.glob("tables-*")) == []
    assert list(cache.glob(".tmp-*")) == []


def test_malformed_yaml_names_file_and_line(synthetic_tree: SyntheticTree, tmp_path: Path) -> None:
    bad = synthetic_tree.race_dir(2024, 2) / "qualifying-results.yml"
    bad.write_text("- position: 1\n  driverNumber: 1\n  driverId: max: verstappen\n")
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as exc:
        load_tables(synthetic_tree.root, cache, min_season=2000)
    msg = str(exc.value)
    assert str(bad) in msg
    assert "line 3" in msg
    _assert_nothing_cached(cache)


def test_bad_time_names_file_and_field(synthetic_tree: SyntheticTree, tmp_path: Path) -> None:
    bad = synthetic_tree.race_dir(2023, 1) / "qualifying-results.yml"
    doc = yaml.safe_load(bad.read_text())
    doc[1]["q2"] = "1:75.000"
    bad.write_text(yaml.safe_dump(doc))
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as exc:
        load_tables(synthetic_tree.root, cache, min_season=2000)
    assert str(bad) in str(exc.value)
    assert "'q2'" in str(exc.value)
    _assert_nothing_cached(cache)


def test_missing_race_yml_is_named(synthetic_tree: SyntheticTree, tmp_path: Path) -> None:
    race_yml = synthetic_tree.race_dir(2023, 2) / "race.yml"
    race_yml.unlink()
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as exc:
        load_tables(synthetic_tree.root, cache, min_season=2000)
    assert str(race_yml) in str(exc.value)
    assert "missing" in str(exc.value)
    _assert_nothing_cached(cache)


def test_missing_required_field_is_named(synthetic_tree: SyntheticTree) -> None:
    race_yml = synthetic_tree.race_dir(2024, 1) / "race.yml"
    race_yml.write_text(
        "\n".join(line for line in race_yml.read_text().splitlines() if "circuitId" not in line)
    )
    with pytest.raises(DataError, match="'circuitId' is missing") as exc:
        load_tables(synthetic_tree.root, None, min_season=2000)
    assert str(race_yml) in str(exc.value)


def test_list_file_with_a_mapping_is_rejected(synthetic_tree: SyntheticTree) -> None:
    bad = synthetic_tree.race_dir(2024, 1) / "race-results.yml"
    bad.write_text("position: 1\ndriverId: max-verstappen\n")
    with pytest.raises(DataError, match="expected a list of mappings") as exc:
        load_tables(synthetic_tree.root, None, min_season=2000)
    assert str(bad) in str(exc.value)


def test_empty_data_dir_mentions_f1_data_dir(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="F1_DATA_DIR"):
        load_tables(empty, cache, min_season=2000)
    assert not cache.exists()


def test_empty_results_file_means_no_results(synthetic_tree: SyntheticTree) -> None:
    """Cancelled sessions have empty files: no rows, no error."""
    fp2 = synthetic_tree.race_dir(2023, 1) / "free-practice-2-results.yml"
    fp2.write_text("")
    t = load_tables(synthetic_tree.root, None, min_season=2000)
    rid = synthetic_tree.race(2023, 1).race_id
    p = t.practice[t.practice["race_id"] == rid]
    assert set(p["session"]) == {"fp1", "fp3"}


# ------------------------------------------------------------ session ordering


@pytest.mark.parametrize("season", [2021, 2022, 2023])
def test_early_sprint_weekends_use_fp1_only(season: int) -> None:
    avail = ["fp1", "fp2", "sq"]
    assert sessions_before_qualifying(season, True, avail) == ["fp1"]


@pytest.mark.parametrize("season", [2024, 2025])
def test_modern_sprint_weekends_use_fp1_and_sprint_qualifying(season: int) -> None:
    assert sessions_before_qualifying(season, True, ["sq", "fp1"]) == ["fp1", "sq"]


def test_normal_weekends_use_all_practice_in_order() -> None:
    assert sessions_before_qualifying(2019, False, ["fp3", "fp1", "fp2"]) == ["fp1", "fp2", "fp3"]
    # a cancelled FP3 simply is not there
    assert sessions_before_qualifying(2024, False, ["fp1", "fp2"]) == ["fp1", "fp2"]


def test_start_times_decide_when_all_are_known() -> None:
    day = datetime(2022, 4, 22)
    starts = {
        "fp1": day.replace(hour=13),
        "fp2": day.replace(day=23, hour=12),  # after qualifying
        "quali": day.replace(hour=17),
    }
    assert sessions_before_qualifying(2019, False, ["fp1", "fp2"], starts) == ["fp1"]
    # a sprint weekend whose FP2 ran before qualifying: the times win over the era rule
    starts["fp2"] = day.replace(hour=15)
    assert sessions_before_qualifying(2022, True, ["fp1", "fp2"], starts) == ["fp1", "fp2"]


def test_missing_start_time_falls_back_to_the_era_rule() -> None:
    day = datetime(2022, 4, 22)
    starts = {"fp1": day.replace(hour=13), "fp2": None, "quali": day.replace(hour=17)}
    assert sessions_before_qualifying(2022, True, ["fp1", "fp2"], starts) == ["fp1"]
    assert sessions_before_qualifying(2022, False, ["fp1", "fp2"], starts) == ["fp1", "fp2"]


def test_sessions_table_flags_pre_qualifying_sessions(synthetic_tree: SyntheticTree) -> None:
    t = load_tables(synthetic_tree.root, None, min_season=2000)
    for spec in synthetic_tree.races:
        s = t.sessions[t.sessions["race_id"] == spec.race_id]
        assert sorted(s.loc[s["before_quali"], "session"]) == sorted(spec.before_quali)
        assert set(s["session"]) == set(spec.practice)


# ----------------------------------------------------------------- team lineage


def test_team_lineage_maps_to_newest_member() -> None:
    cons = pd.DataFrame(
        {
            "constructor_id": ["b", "c", "x", "y", "solo"],
            "name": ["B", "C", "X", "Y", "Solo"],
            "chronology": [
                "a:1990,b:2000,c:2010",
                "a:1990,b:2000,c:2010",
                "x:1980,y:2001,x:2015",  # a name that comes back (Renault)
                "x:1980,y:2001,x:2015",
                "",
            ],
        }
    )
    lin = team_lineage(cons)
    assert lin["a"] == lin["b"] == lin["c"] == "c"
    assert lin["y"] == lin["x"] == "x"
    assert "solo" not in lin  # no chronology: callers fall back to the id itself


def test_team_lineage_prefers_the_latest_chain() -> None:
    """A team listed in two chronologies follows the one whose head is newest."""
    cons = pd.DataFrame(
        {
            "constructor_id": ["old", "new"],
            "name": ["Old", "New"],
            "chronology": ["p:1990,q:2000", "p:1990,q:2000,r:2020"],
        }
    )
    assert team_lineage(cons) == {"p": "r", "q": "r", "r": "r"}


@pytest.mark.parametrize(
    "family",
    [
        ["toro-rosso", "alphatauri", "rb"],
        ["force-india", "racing-point", "aston-martin"],
        ["renault", "lotus-f1", "alpine"],
        ["sauber", "alfa-romeo", "kick-sauber"],
    ],
)
def test_real_team_lineage_families(real_tables: Tables, family: list[str]) -> None:
    lin = team_lineage(real_tables.constructors)
    heads = {lin[c] for c in family}
    assert len(heads) == 1, f"{family} split into {heads}"
    # distinct families stay distinct (a team without chronology is its own lineage)
    assert lin.get("red-bull", "red-bull") not in heads
    assert lin.get("mclaren", "mclaren") not in heads


def test_real_lineage_keeps_unrelated_teams_apart(real_tables: Tables) -> None:
    lin = team_lineage(real_tables.constructors)
    current = ["red-bull", "ferrari", "mercedes", "mclaren", "williams", "haas"]
    assert len({lin.get(c, c) for c in current}) == len(current)


# ------------------------------------------------------------ real-data sessions


@pytest.mark.parametrize(
    ("season", "gp", "expected"),
    [
        (2022, "emilia-romagna", {"fp1"}),  # sprint, FP2 ran after qualifying
        (2023, "azerbaijan", {"fp1"}),  # sprint shootout ran after qualifying
        (2024, "china", {"fp1", "sq"}),  # 2024 sprint format
        (2024, "bahrain", {"fp1", "fp2", "fp3"}),
    ],
)
def test_real_pre_qualifying_sessions(
    real_tables: Tables, season: int, gp: str, expected: set[str]
) -> None:
    r = real_tables.races
    rid = r.loc[(r["season"] == season) & (r["grand_prix_id"] == gp), "race_id"].item()
    s = real_tables.sessions[real_tables.sessions["race_id"] == rid]
    assert set(s.loc[s["before_quali"], "session"]) == expected


_START_KEYS = {
    "fp1": "freePractice1",
    "fp2": "freePractice2",
    "fp3": "freePractice3",
    "sq": "sprintQualifying",
    "quali": "qualifying",
}


def _start(race: dict, session: str) -> datetime:
    """A session's start from race.yml (PyYAML reads an unquoted 15:00 as 900 minutes)."""
    day = race[f"{_START_KEYS[session]}Date"]
    t = race[f"{_START_KEYS[session]}Time"]
    hh, mm = divmod(t, 60) if isinstance(t, int) else map(int, str(t).split(":"))
    return datetime(day.year, day.month, day.day, hh, mm)


def test_real_session_times_decide_for_2024(real_tables: Tables) -> None:
    """2024+ weekends have session times: a session is a feature iff it started before
    qualifying (checked against race.yml, read independently of the parser)."""
    r = real_tables.races
    checked = 0
    for row in r[r["season"] >= 2024].itertuples():
        folder = next(
            (REAL_DATA / "seasons" / str(row.season) / "races").glob(f"{row.round:02d}-*")
        )
        race = yaml.safe_load((folder / "race.yml").read_text())
        q_start = _start(race, "quali")
        s = real_tables.sessions[real_tables.sessions["race_id"] == row.race_id]
        for sess, before in zip(s["session"], s["before_quali"], strict=True):
            assert bool(before) == (_start(race, sess) < q_start), (row.season, row.round, sess)
            checked += 1
    assert checked >= 2 * 3 * 20


# --------------------------------------------------------------- pit-lane starts


def test_grid_slots_put_pit_lane_starters_behind_the_grid() -> None:
    rows = [  # race, driver, grid slot or "PL"
        (1, "a", 1),
        (1, "b", 2),
        (1, "c", "PL"),
        (1, "d", 3),
        (1, "e", "PL"),
        (2, "a", 1),
        (2, "b", 2),
        (2, "c", 3),
        (3, "a", 1),
        (3, "b", 2),
        (3, "c", 4),  # slot 3 left empty, so a car sits at slot n
        (3, "d", "PL"),
    ]
    grid = pd.DataFrame(
        {
            "race_id": [r for r, _d, _g in rows],
            "driver_id": [d for _r, d, _g in rows],
            "grid": [np.nan if g == "PL" else float(g) for _r, _d, g in rows],
            "pit_lane": [g == "PL" for _r, _d, g in rows],
            "penalty": np.nan,
        }
    )
    t = Tables(**{n: pd.DataFrame() for n in Tables.table_names()})
    t.grid = grid
    slots = grid_slots(t).set_index(["race_id", "driver_id"])["slot"]
    race1 = slots.loc[1]
    gridded = race1[["a", "b", "d"]]
    assert gridded.tolist() == [1.0, 2.0, 3.0]
    assert race1["c"] > gridded.max() and race1["e"] > gridded.max()
    assert slots.loc[2].tolist() == [1.0, 2.0, 3.0]  # no pit-lane starter: unchanged
    # a grid with an empty slot (slot 3 unused, as at Spa 2022): still behind everyone
    race3 = slots.loc[3]
    assert race3["d"] > race3[["a", "b", "c"]].max()


def test_real_pit_lane_starters_start_last(real_tables: Tables) -> None:
    g = real_tables.grid
    assert g["pit_lane"].sum() > 0
    slots = grid_slots(real_tables).merge(g, on=["race_id", "driver_id"])
    for _rid, rows in slots.groupby("race_id"):
        pl = rows[rows["pit_lane"]]
        if len(pl):
            assert pl["slot"].min() > rows.loc[~rows["pit_lane"], "slot"].max()


def test_real_pit_lane_starts_match_the_yaml(real_tables: Tables) -> None:
    """'PL' in a starting grid file is a pit-lane start, never a slot number."""
    f = REAL_DATA / "seasons/2021/races/10-great-britain/starting-grid-positions.yml"
    doc = yaml.safe_load(f.read_text())
    pl = {r["driverId"] for r in doc if r.get("position") == "PL"}
    assert pl
    r = real_tables.races
    rid = r.loc[(r["season"] == 2021) & (r["round"] == 10), "race_id"].item()
    g = real_tables.grid[real_tables.grid["race_id"] == rid]
    assert set(g.loc[g["pit_lane"], "driver_id"]) == pl
    assert g.loc[g["pit_lane"], "grid"].isna().all()


def test_real_quali_times_match_the_yaml(real_tables: Tables) -> None:
    """Spot check: the parsed best lap is the fastest of q1/q2/q3 in the file."""
    f = REAL_DATA / "seasons" / "2024" / "races" / "05-china" / "qualifying-results.yml"
    doc = yaml.safe_load(f.read_text())
    r = real_tables.races
    rid = r.loc[(r["season"] == 2024) & (r["round"] == 5), "race_id"].item()
    q = real_tables.qualifying[real_tables.qualifying["race_id"] == rid].set_index("driver_id")
    assert len(q) == len(doc)
    for row in doc:
        laps = [parse_time(row.get(k)) for k in ("q1", "q2", "q3")]
        laps = [x for x in laps if not math.isnan(x)]
        if laps:
            assert q.loc[row["driverId"], "best_s"] == pytest.approx(min(laps))
