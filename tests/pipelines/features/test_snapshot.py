"""The feature module: point-in-time correctness (no leakage) first, then the details."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.f1db.parse import Tables
from pipelines.features.event import Entry, EventContext, EventField, day_number
from pipelines.features.history import History
from pipelines.features.lookups import IdKind
from pipelines.features.snapshot import FeatureSnapshot
from pipelines.features.spec import STAGE1, STAGE2
from pipelines.models.stage1 import Stage1Model
from pipelines.models.stage2 import Stage2Model
from pipelines.serving.orchestrator import Forecast, TwoStage, run
from tests.fakes import copy_tables
from tests.session import REAL_DATA
from training.datasets import stage1_data, stage2_data
from training.pipeline import pole_predictions

# ------------------------------------------------------------------------ helpers

Models = tuple[Stage1Model, Stage2Model]


def race_id_of(t: Tables, season: int, gp: str) -> int:
    r = t.races
    return int(r.loc[(r["season"] == season) & (r["grand_prix_id"] == gp), "race_id"].item())


def event_features(t: Tables, race_id: int, models: Models) -> dict[str, np.ndarray]:
    """Every input of an answer about one event, and the answer, through the serving and
    training paths: Stage-1 and Stage-2 rows, the pole history and pole-lap estimate, and
    the whole forecast of the flow the service runs (``models``: any two fitted models)."""
    snap = FeatureSnapshot.build(t)
    ctx = snap.event_by_id(race_id)
    assert ctx is not None
    entries = snap.entries(ctx)
    n = len(entries)
    fld = snap.event_field(ctx)
    x1 = snap.stage1_rows(ctx, fld)
    x2 = snap.stage2_rows(
        ctx, entries, np.arange(1.0, n + 1.0), np.linspace(0.0, 2.5, n)
    )  # fixed grid and gap: only history may vary
    only = replace(
        t,
        qualifying=t.qualifying[t.qualifying["race_id"] == race_id],
        results=t.results[t.results["race_id"] == race_id],
        grid=t.grid[t.grid["race_id"] == race_id],
    )
    s1 = stage1_data(snap, only, ctx.season)
    s2 = stage2_data(snap, only, ctx.season)
    flow = TwoStage.local(snap, *models)
    fc = run(flow.full(ctx, fld, np.arange(len(fld.entries))))
    day = day_number(ctx.date)
    hist = snap.pole_history(day)[["ref", "pole_s", "ratio", "day", "course_length"]]
    return {
        "serving1": x1,
        "serving2": x2,
        "train1": s1.x,
        "train2": s2.x,
        "pole_history": hist.to_numpy(float),
        "pole_arrays": np.array(snap.pole_arrays(day).pole_s),
        "pole": np.array([fc.quali.pole_s]),
        "train_pole": pole_predictions(snap, s1.meta, models[0].config.pole),
        "answer": answer_numbers(fc),
    }


def answer_numbers(fc: Forecast) -> np.ndarray:
    """Every number of a full forecast (times, gaps, grids, logits, probabilities)."""
    assert fc.race is not None
    q, r = fc.quali, fc.race
    parts = [q.gap_raw, q.time_s, q.grid, q.pole_prob, [q.pole_s], r.grid, r.q_gap, r.logit]
    parts += [r.win_prob, r.podium_prob, r.points_prob]
    return np.concatenate([np.asarray(p, dtype=float) for p in parts])


BEFORE_QUALI = ("serving1", "serving2", "train1", "pole_history", "pole_arrays", "pole")
"""What is known before the event's qualifying: none of it may read that session or later."""
ANSWER = (*BEFORE_QUALI, "train_pole", "answer")
"""Every input of an answer and the answer (``train2`` reads the event's own grid)."""


def later(t: Tables, race_id: int) -> set[int]:
    day = t.races.loc[t.races["race_id"] == race_id, "date"].item()
    return set(t.races.loc[t.races["date"] > day, "race_id"])


def post_quali_sessions(t: Tables) -> pd.Series:
    """Practice rows from sessions held after qualifying (2021-23 sprint weekends)."""
    after = t.sessions[~t.sessions["before_quali"]][["race_id", "session"]]
    keys = set(zip(after["race_id"], after["session"], strict=True))
    return pd.Series(
        [(r, s) in keys for r, s in zip(t.practice["race_id"], t.practice["session"], strict=True)],
        index=t.practice.index,
    )


def alter_after_qualifying(t: Tables, race_id: int, seed: int = 0) -> Tables:
    """Scramble everything that is only known after the event's qualifying session:
    its race result and standings, practice held after qualifying on sprint weekends,
    and every later event (qualifying, grid, results, standings, practice)."""
    rng = np.random.default_rng(seed)
    out = copy_tables(t)
    future = later(t, race_id)
    ev_or_later = future | {race_id}

    res = out.results
    m = res["race_id"].isin(ev_or_later)
    res.loc[m, "position"] = rng.permutation(res.loc[m, "position"].to_numpy(copy=True))
    res.loc[m, "points"] = rng.uniform(0, 30, m.sum()).round()
    res.loc[m, "position_text"] = res.loc[m, "position"].map(
        lambda p: "DNF" if math.isnan(p) else str(int(p))
    )
    for st in (out.driver_standings, out.constructor_standings):
        m = st["race_id"].isin(ev_or_later)
        st.loc[m, "points"] = rng.uniform(0, 500, m.sum()).round()
        st.loc[m, "position"] = rng.permutation(st.loc[m, "position"].to_numpy(copy=True))

    q = out.qualifying
    m = q["race_id"].isin(future)
    q.loc[m, "best_s"] = q.loc[m, "best_s"] * rng.uniform(0.97, 1.05, m.sum())
    q.loc[m, "position"] = rng.permutation(q.loc[m, "position"].to_numpy(copy=True))
    g = out.grid
    m = g["race_id"].isin(future)
    g.loc[m, "grid"] = rng.permutation(g.loc[m, "grid"].to_numpy(copy=True))

    p = out.practice
    m = p["race_id"].isin(future) | post_quali_sessions(out)
    p.loc[m, "time_s"] = p.loc[m, "time_s"] * rng.uniform(0.95, 1.05, m.sum())
    p.loc[m, "laps"] = rng.integers(1, 40, m.sum()).astype(float)
    return out


def alter_event_qualifying(t: Tables, race_id: int, seed: int = 1) -> Tables:
    """The event's own qualifying times and starting grid (only known after qualifying)."""
    rng = np.random.default_rng(seed)
    out = alter_after_qualifying(t, race_id, seed)
    q = out.qualifying
    m = q["race_id"] == race_id
    q.loc[m, "best_s"] = q.loc[m, "best_s"] * rng.uniform(0.98, 1.03, m.sum())
    q.loc[m, "q3_s"] = np.nan
    q.loc[m, "position"] = rng.permutation(q.loc[m, "position"].to_numpy(copy=True))
    g = out.grid
    m = g["race_id"] == race_id
    g.loc[m, "grid"] = rng.permutation(g.loc[m, "grid"].to_numpy(copy=True))
    g.loc[m, "pit_lane"] = False
    return out


def with_own_pole(t: Tables, race_id: int, factor: float) -> Tables:
    """The event's own qualifying times, each ``factor`` times as long: 0.5 puts its pole
    ratio (pole / practice lap) below every past event's, 2.0 above (a median reading it
    would move)."""
    out = copy_tables(t)
    q = out.qualifying
    m = q["race_id"] == race_id
    q.loc[m, ["best_s", "q3_s"]] *= factor
    return out


def drop_later_events(t: Tables, race_id: int) -> Tables:
    """The tables as they stood on the event's race day (the event's results included)."""
    out = copy_tables(t)
    future = later(t, race_id)
    for name in (
        "races",
        "sessions",
        "practice",
        "qualifying",
        "grid",
        "results",
        "driver_standings",
        "constructor_standings",
    ):
        frame = getattr(out, name)
        setattr(out, name, frame[~frame["race_id"].isin(future)].reset_index(drop=True))
    return out


def assert_same(a: np.ndarray, b: np.ndarray, what: str) -> None:
    assert a.shape == b.shape, what
    np.testing.assert_array_equal(a, b, err_msg=what)  # NaN == NaN here


# ----------------------------------------------------------------- leakage: real


LEAK_EVENTS = [
    (2024, "china"),  # 2024 sprint format: FP1 + sprint qualifying before qualifying
    (2024, "spain"),  # normal weekend mid-season
    (2022, "emilia-romagna"),  # 2022 sprint: FP2 ran after qualifying
    (2023, "azerbaijan"),  # 2023 sprint: the shootout ran after qualifying
    (2025, "abu-dhabi"),  # the last event in the data
]


@pytest.fixture(scope="module")
def models(tiny_models: tuple[FeatureSnapshot, Stage1Model, Stage2Model]) -> Models:
    return tiny_models[1], tiny_models[2]


@pytest.fixture(scope="module")
def baseline_features(real_tables: Tables, models: Models) -> dict[int, dict[str, np.ndarray]]:
    return {
        race_id_of(real_tables, s, gp): event_features(
            real_tables, race_id_of(real_tables, s, gp), models
        )
        for s, gp in LEAK_EVENTS
    }


@pytest.mark.parametrize(("season", "gp"), LEAK_EVENTS)
def test_features_are_not_trivial(baseline_features, real_tables, season: int, gp: str) -> None:
    """Guard for the leakage tests: the rows are real and carry history."""
    f = baseline_features[race_id_of(real_tables, season, gp)]
    x1 = f["serving1"]
    assert x1.shape[0] >= 18
    assert x1.shape[1] == len(STAGE1.names)
    hist = STAGE1.names.index("d_q_gap_ewm")
    prac = STAGE1.names.index("p_best_gap")
    assert np.isfinite(x1[:, hist]).mean() > 0.8
    assert np.isfinite(x1[:, prac]).mean() > 0.8
    assert f["train1"].shape[0] >= 18 and f["train2"].shape[0] >= 18
    champ = STAGE2.names.index("d_champ_points")
    assert (f["serving2"][:, champ] > 0).any()  # none is a season opener
    assert len(f["pole_history"]) >= 40 and len(f["pole_arrays"]) == len(f["pole_history"])
    assert 60.0 < f["pole"][0] < 120.0 and np.isfinite(f["train_pole"]).all()
    assert np.isfinite(f["answer"]).all() and len(f["answer"]) > 10 * x1.shape[0]


@pytest.mark.parametrize(("season", "gp"), LEAK_EVENTS)
def test_nothing_after_qualifying_changes_the_features(
    baseline_features, real_tables, models: Models, season: int, gp: str
) -> None:
    rid = race_id_of(real_tables, season, gp)
    base = baseline_features[rid]
    altered = event_features(alter_after_qualifying(real_tables, rid), rid, models)
    for key in (*ANSWER, "train2"):
        assert_same(base[key], altered[key], f"{season} {gp} {key}")


@pytest.mark.parametrize(("season", "gp"), LEAK_EVENTS)
def test_own_qualifying_and_grid_do_not_change_the_answer_or_its_inputs(
    baseline_features, real_tables, models: Models, season: int, gp: str
) -> None:
    """Training's Stage-2 rows read the event's own grid and gap; nothing else does."""
    rid = race_id_of(real_tables, season, gp)
    base = baseline_features[rid]
    altered = event_features(alter_event_qualifying(real_tables, rid), rid, models)
    for key in ANSWER:
        assert_same(base[key], altered[key], f"{season} {gp} {key}")


@pytest.mark.parametrize(("season", "gp"), LEAK_EVENTS)
def test_dropping_later_events_changes_nothing(
    baseline_features, real_tables, models: Models, season: int, gp: str
) -> None:
    rid = race_id_of(real_tables, season, gp)
    base = baseline_features[rid]
    cut = event_features(drop_later_events(real_tables, rid), rid, models)
    for key in (*ANSWER, "train2"):
        assert_same(base[key], cut[key], f"{season} {gp} {key}")


@pytest.mark.parametrize(("season", "gp"), LEAK_EVENTS)
def test_the_events_own_pole_does_not_move_the_answer_or_its_inputs(
    real_tables, models: Models, season: int, gp: str
) -> None:
    """The event's pole far faster, then far slower, than any before: the estimate's
    medians could miss a milder change."""
    rid = race_id_of(real_tables, season, gp)
    fast = event_features(with_own_pole(real_tables, rid, 0.5), rid, models)
    slow = event_features(with_own_pole(real_tables, rid, 2.0), rid, models)
    for key in ANSWER:
        assert_same(fast[key], slow[key], f"{season} {gp} {key}")


@pytest.mark.parametrize(("season", "gp"), [(2024, "spain"), (2022, "emilia-romagna")])
def test_positive_control_a_pole_estimate_that_reads_the_events_own_pole_is_caught(
    baseline_features, real_tables, models: Models, monkeypatch, season: int, gp: str
) -> None:
    """Proof that the checks above see the pole estimate: the pole history of a leaky
    snapshot takes in the event's own day, and the event's own qualifying then moves the
    history, the estimate and the answer."""
    pole_history, pole_arrays = FeatureSnapshot.pole_history, FeatureSnapshot.pole_arrays
    monkeypatch.setattr(FeatureSnapshot, "pole_history", lambda s, d: pole_history(s, d + 1))
    monkeypatch.setattr(FeatureSnapshot, "pole_arrays", lambda s, d: pole_arrays(s, d + 1))
    rid = race_id_of(real_tables, season, gp)
    fast = event_features(with_own_pole(real_tables, rid, 0.5), rid, models)
    slow = event_features(with_own_pole(real_tables, rid, 2.0), rid, models)
    for key in ("pole_history", "pole_arrays", "pole", "train_pole", "answer"):
        assert not np.array_equal(fast[key], slow[key], equal_nan=True), key
    for key in ("serving1", "serving2", "train1"):  # the rows do not read the pole
        assert_same(fast[key], slow[key], key)
    assert len(fast["pole_history"]) == len(baseline_features[rid]["pole_history"]) + 1


def test_post_qualifying_practice_exists_on_early_sprint_weekends(real_tables) -> None:
    """Guard: the sprint events above really have practice after qualifying to scramble."""
    after = post_quali_sessions(real_tables)
    for gp, season in (("emilia-romagna", 2022), ("azerbaijan", 2023)):
        rid = race_id_of(real_tables, season, gp)
        rows = real_tables.practice[after & (real_tables.practice["race_id"] == rid)]
        assert len(rows) >= 18, (season, gp)


@pytest.mark.parametrize(("season", "gp"), [(2024, "spain"), (2022, "emilia-romagna")])
def test_positive_control_earlier_qualifying_changes_the_features(
    baseline_features, real_tables, models: Models, season: int, gp: str
) -> None:
    """Proof that the identity checks above can fail: history from before the event counts."""
    rid = race_id_of(real_tables, season, gp)
    day = real_tables.races.loc[real_tables.races["race_id"] == rid, "date"].item()
    r = real_tables.races
    prev = int(r.loc[r["date"] < day, "race_id"].iloc[-1])
    out = copy_tables(real_tables)
    q = out.qualifying
    m = q["race_id"] == prev
    rng = np.random.default_rng(3)
    q.loc[m, "best_s"] = q.loc[m, "best_s"] * rng.uniform(1.0, 1.03, m.sum())
    altered = event_features(out, rid, models)
    base = baseline_features[rid]
    col = STAGE1.names.index("d_q_gap_ewm")
    assert not np.array_equal(base["serving1"][:, col], altered["serving1"][:, col])
    assert not np.array_equal(base["train1"], altered["train1"], equal_nan=True)
    assert not np.array_equal(base["pole_history"], altered["pole_history"], equal_nan=True)


@pytest.mark.parametrize(("season", "gp"), [(2024, "spain"), (2022, "emilia-romagna")])
def test_positive_control_earlier_poles_change_the_pole_estimate(
    baseline_features, real_tables, models: Models, season: int, gp: str
) -> None:
    """Every qualifying before the event 2 % slower: the estimate and the answer move."""
    rid = race_id_of(real_tables, season, gp)
    out = copy_tables(real_tables)
    q = out.qualifying
    q.loc[q["race_id"].isin(set(out.races["race_id"]) - later(out, rid) - {rid}), "best_s"] *= 1.02
    altered = event_features(out, rid, models)
    base = baseline_features[rid]
    for key in ("pole_history", "pole_arrays", "pole", "train_pole", "answer"):
        assert not np.array_equal(base[key], altered[key], equal_nan=True), key
    assert altered["pole"][0] == pytest.approx(base["pole"][0] * 1.02, rel=0.01)


def test_positive_control_pre_qualifying_practice_counts(
    baseline_features, real_tables, models: Models
) -> None:
    """FP1 of a 2022 sprint weekend ran before qualifying: changing it changes the rows."""
    rid = race_id_of(real_tables, 2022, "emilia-romagna")
    out = copy_tables(real_tables)
    p = out.practice
    m = (p["race_id"] == rid) & (p["session"] == "fp1")
    assert m.sum() >= 18
    p.loc[m, "time_s"] = p.loc[m, "time_s"] * np.linspace(1.0, 1.02, m.sum())
    altered = event_features(out, rid, models)
    base = baseline_features[rid]
    assert not np.array_equal(base["serving1"], altered["serving1"], equal_nan=True)
    assert not np.array_equal(base["train1"], altered["train1"], equal_nan=True)


# --------------------------------------------------------------- entries (real)


def _yaml_rounds(text) -> set[int]:
    out: set[int] = set()
    for part in str(text or "").split(","):
        if "-" in part:
            lo, hi = part.split("-")
            out |= set(range(int(lo), int(hi) + 1))
        elif part.strip():
            out.add(int(part))
    return out


def _race_folder(season: int, rnd: int) -> Path:
    return next((REAL_DATA / "seasons" / str(season) / "races").glob(f"{rnd:02d}-*"))


def _yaml_list(path: Path) -> list[dict]:
    return yaml.safe_load(path.read_text()) or []


@pytest.mark.parametrize(("season", "rnd"), [(2024, 24), (2024, 5), (2022, 4), (2025, 10)])
def test_entries_are_the_drivers_entered_for_the_round(real_snapshot, season, rnd) -> None:
    ctx = real_snapshot.event_by_round(season, rnd)
    got = {e.driver_id: e.constructor_id for e in real_snapshot.entries(ctx)}
    ent = yaml.safe_load((REAL_DATA / "seasons" / str(season) / "entrants.yml").read_text())
    expected = {
        d["driverId"]: team["constructorId"]
        for team in ent
        for d in team.get("drivers") or []
        if rnd in _yaml_rounds(d.get("rounds"))
    }
    assert got == expected
    # every car in the race is an entry; practice-only reserve drivers are not
    raced = {r["driverId"] for r in _yaml_list(_race_folder(season, rnd) / "race-results.yml")}
    assert raced <= set(got)
    fp1 = {
        r["driverId"] for r in _yaml_list(_race_folder(season, rnd) / "free-practice-1-results.yml")
    }
    assert not (fp1 - raced) & set(got)


def test_test_drivers_only_enter_rounds_they_raced(real_snapshot) -> None:
    """Abu Dhabi 2024: FP1-only test drivers are left out; Doohan (flagged as a test
    driver in F1DB, but racing that round) and Colapinto are in."""
    ctx = real_snapshot.event_by_round(2024, 24)
    ids = {e.driver_id for e in real_snapshot.entries(ctx)}
    raced = {r["driverId"] for r in _yaml_list(_race_folder(2024, 24) / "race-results.yml")}
    fp1 = {
        r["driverId"] for r in _yaml_list(_race_folder(2024, 24) / "free-practice-1-results.yml")
    }
    assert fp1 - raced, "guard: Abu Dhabi 2024 FP1 had reserve drivers"
    assert ids == raced
    assert {"jack-doohan", "franco-colapinto"} <= ids


@pytest.mark.parametrize(
    ("season", "rnd", "allowed"),
    [
        (2022, 4, {"fp1"}),
        (2023, 4, {"fp1"}),
        (2024, 5, {"fp1", "sq"}),
        (2024, 10, {"fp1", "fp2", "fp3"}),
    ],
)
def test_entries_carry_only_pre_qualifying_practice(real_snapshot, season, rnd, allowed) -> None:
    ctx = real_snapshot.event_by_round(season, rnd)
    entries = real_snapshot.entries(ctx)
    seen = set().union(*(e.practice for e in entries))
    assert seen == allowed
    assert set(real_snapshot.field_laps(ctx)) == allowed
    # the FP1 lap is the driver's FP1 time in the source file
    fp1 = {
        r["driverId"]: r["time"]
        for r in _yaml_list(_race_folder(season, rnd) / "free-practice-1-results.yml")
        if r.get("time")
    }
    from pipelines.f1db.laptime import parse_time

    checked = 0
    for e in entries:
        if e.driver_id in fp1:
            assert e.practice["fp1"] == pytest.approx(parse_time(fp1[e.driver_id]))
            checked += 1
    assert checked >= 15


def test_latest_team_is_the_team_of_the_latest_round(real_snapshot) -> None:
    """A driver who moved mid-season (Tsunoda, Lawson in 2025) is in his latest team."""
    ent = yaml.safe_load((REAL_DATA / "seasons" / "2025" / "entrants.yml").read_text())
    last: dict[str, tuple[int, str]] = {}
    for team in ent:
        for d in team.get("drivers") or []:
            rounds = _yaml_rounds(d.get("rounds"))
            if rounds and max(rounds) >= last.get(d["driverId"], (0, ""))[0]:
                last[d["driverId"]] = (max(rounds), team["constructorId"])
    moved = {"yuki-tsunoda", "liam-lawson"}
    assert moved <= set(last)
    for d, (_r, team) in last.items():
        assert real_snapshot.latest_team(d) == team, d
    assert real_snapshot.latest_team("nobody-at-all") is None


def test_names_come_from_f1db_and_unknown_ids_have_none(real_snapshot) -> None:
    assert real_snapshot.driver_name("max-verstappen") == "Max Verstappen"
    assert real_snapshot.driver_name("lewis-hamilton") == "Lewis Hamilton"
    assert real_snapshot.constructor_name("red-bull") == "Red Bull"
    assert real_snapshot.constructor_name("mclaren") == "McLaren"
    for unknown in ("jane-rookie", "car-77", "", None):
        assert real_snapshot.driver_name(unknown) is None
        assert real_snapshot.constructor_name(unknown) is None
    # a driver id is not a team name, nor the other way round
    assert real_snapshot.constructor_name("max-verstappen") is None
    assert real_snapshot.driver_name("red-bull") is None
    # every driver entered for 2025 has a name
    ctx = real_snapshot.event_by_round(2025, 8)
    assert all(real_snapshot.driver_name(e.driver_id) for e in real_snapshot.entries(ctx))


def test_names_of_the_synthetic_tree(synthetic_tables) -> None:
    _tree, tables = synthetic_tables
    snap = FeatureSnapshot.build(tables)
    assert snap.driver_name("oscar-piastri") == "Oscar Piastri"  # the tree's "name:"
    assert snap.constructor_name("mclaren") == "Mclaren"


# ------------------------------------------------------------ snapshot round trip


def test_snapshot_save_load_round_trip(real_snapshot, tmp_path: Path) -> None:
    real_snapshot.save(tmp_path / "snap")
    loaded = FeatureSnapshot.load(tmp_path / "snap")
    assert loaded.meta == real_snapshot.meta
    for season, rnd in ((2024, 5), (2025, 24), (2021, 1)):
        a_ctx = real_snapshot.event_by_round(season, rnd)
        b_ctx = loaded.event_by_round(season, rnd)
        assert a_ctx == b_ctx
        a_ent, b_ent = real_snapshot.entries(a_ctx), loaded.entries(b_ctx)
        assert a_ent == b_ent
        x1a = real_snapshot.stage1_rows(a_ctx, real_snapshot.event_field(a_ctx))
        x1b = loaded.stage1_rows(b_ctx, loaded.event_field(b_ctx))
        assert_same(x1a, x1b, "stage1")
        n = len(a_ent)
        grid, gap = np.arange(1.0, n + 1), np.linspace(0, 3, n)
        assert_same(
            real_snapshot.stage2_rows(a_ctx, a_ent, grid, gap),
            loaded.stage2_rows(b_ctx, b_ent, grid, gap),
            "stage2",
        )
    pd.testing.assert_frame_equal(
        real_snapshot.pole_history(10**6), loaded.pole_history(10**6), check_dtype=False
    )
    assert loaded.driver_name("max-verstappen") == "Max Verstappen"
    assert loaded.constructor_name("red-bull") == "Red Bull"


def test_a_snapshot_saved_before_names_is_refused_with_the_fix(
    real_snapshot, tmp_path: Path
) -> None:
    """Formats 1 and 2 had no names: loading them names `f1 refresh`, not a KeyError."""
    import json

    real_snapshot.save(tmp_path / "snap")
    (tmp_path / "snap" / "names.parquet").unlink()
    meta = json.loads((tmp_path / "snap" / "snapshot.json").read_text())
    meta["format"] = 1
    (tmp_path / "snap" / "snapshot.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format 1 is not 3; run `f1 refresh`"):
        FeatureSnapshot.load(tmp_path / "snap")


def test_snapshot_load_rejects_other_formats(real_snapshot, tmp_path: Path) -> None:
    import json

    real_snapshot.save(tmp_path / "snap")
    meta = json.loads((tmp_path / "snap" / "snapshot.json").read_text())
    meta["format"] = 999
    (tmp_path / "snap" / "snapshot.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="f1 refresh"):
        FeatureSnapshot.load(tmp_path / "snap")


def test_snapshot_meta_describes_the_data(real_tables, real_snapshot) -> None:
    meta = real_snapshot.meta
    assert meta["data_hash"] == real_tables.content_hash
    assert meta["seasons"] == [
        int(real_tables.races["season"].min()),
        int(real_tables.races["season"].max()),
    ]
    last = real_tables.races[real_tables.races["has_results"]].iloc[-1]
    assert meta["latest_event"]["season"] == last["season"]
    assert meta["latest_event"]["round"] == last["round"]


# ------------------------------------------------------------- unit: synthetic


def test_history_before_is_strictly_before() -> None:
    frame = pd.DataFrame(
        {
            "k": ["a", "a", "a", "b"],
            "day": [10, 20, 30, 15],
            "season": [1, 1, 2, 1],
            "v": [1.0, 2.0, 3.0, 9.0],
        }
    )
    h = History(frame, "k", ["v"])
    assert h.before("a", 10) is None  # same day is not "before"
    assert h.before("a", 11)[0] == 1.0
    assert h.before("a", 20)[0] == 1.0
    assert h.before("a", 21)[0] == 2.0
    assert h.before("a", 1000)[0] == 3.0
    assert h.before("a", 1000, season=1) is None  # the latest row is another season
    assert h.before("a", 25, season=1)[0] == 2.0
    assert h.before("zz", 1000) is None
    assert "b" in h and "zz" not in h


def test_stage1_practice_gaps_from_first_principles(synthetic_tables) -> None:
    tree, tables = synthetic_tables
    snap = FeatureSnapshot.build(tables)
    spec = tree.race(2023, 1)
    ctx = snap.event_by_id(spec.race_id)
    entries = snap.entries(ctx)
    x = snap.stage1_rows(ctx, snap.event_field(ctx))
    col = {f: i for i, f in enumerate(STAGE1.names)}
    for i, e in enumerate(entries):
        for s in ("fp1", "fp2", "fp3"):
            best = min(t for t, _l in spec.practice[s].values())  # the reserve counts too
            expected = (spec.practice[s][e.driver_id][0] / best - 1.0) * 100.0
            assert x[i, col[f"p_{s}_gap"]] == pytest.approx(expected)
        assert math.isnan(x[i, col["p_sq_gap"]])
        assert x[i, col["p_n_sessions"]] == 3
        assert x[i, col["p_laps"]] == sum(spec.practice[s][e.driver_id][1] for s in spec.practice)
        gaps = [x[i, col[f"p_{s}_gap"]] for s in ("fp1", "fp2", "fp3")]
        assert x[i, col["p_best_gap"]] == pytest.approx(min(gaps))
        assert x[i, col["p_last_gap"]] == pytest.approx(gaps[-1])
        assert x[i, col["d_n_events"]] == 0.0  # the first event: no history
        assert math.isnan(x[i, col["d_q_gap_ewm"]])
    assert (x[:, col["c_street"]] == 0).all()
    assert (x[:, col["c_length_km"]] == ctx.course_length).all()


def test_stage1_history_and_teammate_features(synthetic_tables) -> None:
    tree, tables = synthetic_tables
    snap = FeatureSnapshot.build(tables)
    first, second = tree.race(2023, 1), tree.race(2023, 2)
    ctx = snap.event_by_id(second.race_id)
    entries = snap.entries(ctx)
    x = snap.stage1_rows(ctx, snap.event_field(ctx))
    col = {f: i for i, f in enumerate(STAGE1.names)}
    pole = min(first.best_quali(d) for d in first.quali)
    by_driver = {e.driver_id: i for i, e in enumerate(entries)}
    for d in first.quali:
        i = by_driver[d]
        gap = (first.best_quali(d) / pole - 1.0) * 100.0
        assert x[i, col["d_q_gap_ewm"]] == pytest.approx(min(gap, 5.0))
        assert x[i, col["d_n_events"]] == 1.0
    # sprint weekend (2023): only FP1 is a feature; FP2 ran after qualifying
    assert np.isfinite(x[:, col["p_fp1_gap"]]).all()
    assert np.isnan(x[:, col["p_fp2_gap"]]).all()
    assert (x[:, col["c_sprint"]] == 1).all() and (x[:, col["c_street"]] == 1).all()
    # team-mate difference: each team's two values are opposite
    tm = x[:, col["p_tm_gap"]]
    teams: dict[str, list[int]] = {}
    for i, e in enumerate(entries):
        teams.setdefault(e.constructor_id or "", []).append(i)
    for idx in teams.values():
        assert len(idx) == 2
        assert tm[idx[0]] == pytest.approx(-tm[idx[1]])
        best = x[idx, col["p_best_gap"]]
        assert tm[idx[0]] == pytest.approx(best[0] - best[1])


def test_stage2_standings_come_from_the_previous_round(synthetic_tables) -> None:
    tree, tables = synthetic_tables
    snap = FeatureSnapshot.build(tables)
    col = {f: i for i, f in enumerate(STAGE2.names)}
    r1, r2 = tree.race(2024, 1), tree.race(2024, 2)
    ctx = snap.event_by_id(r2.race_id)
    entries = snap.entries(ctx)
    n = len(entries)
    x = snap.stage2_rows(ctx, entries, np.arange(1.0, n + 1), np.zeros(n))
    after_r1 = {d: pts for d, _p, pts in r1.results}
    leader = max(after_r1.values())
    for i, e in enumerate(entries):
        assert x[i, col["d_champ_points"]] == after_r1[e.driver_id]
        assert x[i, col["d_champ_share"]] == pytest.approx(after_r1[e.driver_id] / leader)
    assert x[:, col["grid"]].tolist() == list(range(1, n + 1))
    # the first round of a season has no standings yet (last season's do not carry over)
    ctx1 = snap.event_by_id(r1.race_id)
    x1 = snap.stage2_rows(ctx1, snap.entries(ctx1), np.arange(1.0, n + 1), np.zeros(n))
    assert (x1[:, col["d_champ_points"]] == 0).all()
    assert np.isnan(x1[:, col["d_champ_pos"]]).all()


def test_unknown_driver_and_team_get_neutral_rows(synthetic_tables) -> None:
    _tree, tables = synthetic_tables
    snap = FeatureSnapshot.build(tables)
    ctx = EventContext(season=2025, date=pd.Timestamp("2025-03-01"), circuit_id="bahrain")
    entries = [Entry("rookie-driver", "new-team"), Entry("max-verstappen", "red-bull")]
    x1 = snap.stage1_rows(ctx, EventField(entries))
    col = {f: i for i, f in enumerate(STAGE1.names)}
    assert x1[0, col["d_n_events"]] == 0.0
    assert math.isnan(x1[0, col["d_q_gap_ewm"]]) and math.isnan(x1[0, col["t_q_gap_ewm"]])
    assert x1[1, col["d_n_events"]] == len(tables.races)
    assert np.isfinite(x1[1, col["t_q_gap_ewm"]])


def test_stage_data_rows_match_sources(synthetic_tables) -> None:
    tree, tables = synthetic_tables
    snap = FeatureSnapshot.build(tables)
    s1 = stage1_data(snap, tables, 2000)
    assert len(s1.y) == sum(len(r.quali) for r in tree.races)
    for r in tree.races:
        m = s1.meta[s1.meta["race_id"] == r.race_id]
        pole = min(r.best_quali(d) for d in r.quali)
        for d, gap in zip(m["driver_id"], m["gap_pct"], strict=True):
            assert gap == pytest.approx((r.best_quali(d) / pole - 1) * 100)
    s2 = stage2_data(snap, tables, 2000)
    # non-starters (DNS) are not rows; exactly one winner per race
    n_starters = sum(1 for r in tree.races for _d, p, _pts in r.results if p != "DNS")
    assert len(s2.y) == n_starters
    assert s2.meta.groupby("race_id")["win"].sum().tolist() == [1.0] * len(tree.races)
    # each starter's finishing position (NaN: not classified), what Stage-2 learns its first
    # places from, is the race's own
    for r in tree.races:
        got = s2.meta[s2.meta["race_id"] == r.race_id].set_index("driver_id")["position"]
        want = {d: float(p) if p.isdigit() else np.nan for d, p, _pts in r.results if p != "DNS"}
        assert got.to_dict() == pytest.approx(want, nan_ok=True)
    assert ((s2.meta["position"] == 1) == (s2.meta["win"] == 1)).all()
    assert s1.seasons(2024, 2024).meta["season"].unique().tolist() == [2024]


def test_event_field_knows_when_it_is_the_datas(synthetic_tables) -> None:
    """Rows of a field exactly as in the data are memoised by event; a request's own laps
    make another field (computed, not memoised), and a given grid slot always travels
    with its entry."""
    tree, tables = synthetic_tables
    snap = FeatureSnapshot.build(tables)
    ctx = snap.event_by_id(tree.race(2023, 1).race_id)
    plain = snap.event_field(ctx)
    assert plain.as_in_data
    data = {e.driver_id: e for e in plain.entries}
    d = max(data, key=lambda k: min(data[k].practice.values()))  # the slowest in practice
    same = Entry(d, data[d].constructor_id, dict(data[d].practice), dict(data[d].laps), grid=2.0)
    with_grid = snap.event_field(ctx, [same])
    assert with_grid.as_in_data and with_grid.entries[with_grid.index([d])[0]].grid == 2.0
    np.testing.assert_array_equal(snap.stage1_rows(ctx, with_grid), snap.stage1_rows(ctx, plain))
    faster = {s: t - 5.0 for s, t in data[d].practice.items()}
    own = snap.event_field(ctx, [Entry(d, data[d].constructor_id, faster)])
    assert not own.as_in_data
    i = own.index([d])[0]
    assert snap.stage1_rows(ctx, own)[i, STAGE1.pos["p_best_gap"]] == 0.0  # now the fastest
    assert snap.stage1_rows(ctx, plain)[i, STAGE1.pos["p_best_gap"]] > 0.0


def test_memoised_form_is_per_day_and_field_and_never_written(synthetic_tables) -> None:
    """Form and standings are memoised on the day and the cars (a request's own laps do
    not change them): another day or another car list gets its own, a repeated one the
    same values as a snapshot that never memoised, and the shared arrays are read-only."""
    tree, tables = synthetic_tables
    snap = FeatureSnapshot.build(tables)
    fresh = FeatureSnapshot.build(tables)
    early, late = (
        snap.event_by_id(r.race_id) for r in sorted(tree.races, key=lambda r: r.date)[-2:]
    )
    entries = snap.event_field(late).entries
    q = np.zeros(len(entries))
    grid = np.arange(1.0, len(entries) + 1)
    first = snap.stage2_rows(late, entries, grid, q)
    snap.stage2_rows(early, entries, grid, q + 0.1)  # another day, same cars
    swapped = [Entry(entries[0].driver_id, entries[1].constructor_id), *entries[1:]]
    snap.stage2_rows(late, swapped, grid, q + 0.2)  # same day, another car list
    again = snap.stage2_rows(late, entries, grid, q + 0.3)
    expected = fresh._stage2(late, entries, grid, q + 0.3)
    np.testing.assert_array_equal(again, expected)
    form = [STAGE2.pos[n] for n in STAGE2.names if n not in ("grid", "q_gap_pct", "q_tm_gap")]
    np.testing.assert_array_equal(again[:, form], first[:, form])
    assert not np.array_equal(
        snap.stage2_rows(early, entries, grid, q)[:, form], first[:, form], equal_nan=True
    )  # the form moved between the two days
    d, tm = snap._form(entries, day_number(late.date))
    assert not d.flags.writeable and not tm.flags.writeable


def test_pole_reference_is_the_fastest_session() -> None:
    """A wet (slow) final practice does not set the pole estimate's reference."""
    laps = {"fp1": {"a": 80.2, "b": 80.5}, "fp2": {"a": 79.6}, "fp3": {"a": 88.0, "b": math.nan}}
    assert FeatureSnapshot.pole_reference(laps) == ("fp2", 79.6)
    assert FeatureSnapshot.pole_reference({"sq": {"a": 70.0}}) == ("sq", 70.0)
    session, lap = FeatureSnapshot.pole_reference({"fp1": {"a": math.nan}})
    assert session is None and math.isnan(lap)


def test_pole_history_uses_the_same_reference_rule(synthetic_tables) -> None:
    tree, tables = synthetic_tables
    snap = FeatureSnapshot.build(tables)
    hist = snap.pole_history(10**6)
    assert len(hist) == len(tree.races)
    for r, (_, h) in zip(sorted(tree.races, key=lambda r: r.date), hist.iterrows(), strict=True):
        bests = {s: min(t for t, _l in r.practice[s].values()) for s in r.before_quali}
        fastest = min(bests, key=bests.__getitem__)
        assert (h["session"], h["ref"]) == (fastest, pytest.approx(bests[fastest]))
        pole = min(r.best_quali(d) for d in r.quali)
        assert h["ratio"] == pytest.approx(pole / bests[fastest])


def test_a_team_without_history_lacks_exactly_the_team_form(real_snapshot) -> None:
    """Stage-1 is fitted with ``STAGE1_TEAM_FORM`` blanked for some teams, to stand for a
    new entrant: those must be the features serving leaves empty for one."""
    from pipelines.features.spec import STAGE1, STAGE1_TEAM_FORM

    ctx = real_snapshot.event_by_round(2025, 8)
    known = real_snapshot.entries(ctx)[0]
    new = Entry(driver_id=known.driver_id, constructor_id="a-team-never-seen")
    new.practice, new.laps = dict(known.practice), dict(known.laps)
    fld = real_snapshot.event_field(ctx, [new])
    x_new = real_snapshot.stage1_rows(ctx, fld)[fld.index([known.driver_id])][0]
    fld_known = real_snapshot.event_field(ctx)
    x_known = real_snapshot.stage1_rows(ctx, fld_known)[fld_known.index([known.driver_id])][0]
    differs = {n for n, a, b in zip(STAGE1.names, x_new, x_known, strict=True)
               if not (a == b or (math.isnan(a) and math.isnan(b)))}  # fmt: skip
    assert differs - {"p_tm_gap"} == set(STAGE1_TEAM_FORM)  # no teammate in the new team
    for name in STAGE1_TEAM_FORM:
        assert math.isnan(x_new[STAGE1.pos[name]]) and not math.isnan(x_known[STAGE1.pos[name]])


# ------------------------------------------------------------------ rules eras


def test_rules_races_count_the_races_held_under_the_current_rules(real_snapshot) -> None:
    """0 at the first race after a reset, one more per race held since; the reset
    seasons in the data start from 0, later seasons keep counting from the reset."""
    s = real_snapshot
    r22 = [s.rules_races(c) for c in s.season_events(2022)]
    assert len(r22) == 22 and r22 == [float(i) for i in range(22)]
    n22_24 = sum(len(s.season_events(y)) for y in (2022, 2023, 2024))
    assert s.rules_races(s.event_by_round(2025, 1)) == float(n22_24)
    assert s.rules_races(s.event_by_round(2025, 6)) == float(n22_24 + 5)


def test_rules_races_of_events_the_data_has_not(real_snapshot) -> None:
    """A 2026 race (new rules, no 2026 results in the data) is the first under them
    whatever its date; an era that began before the data is unknown (NaN)."""
    s = real_snapshot
    for day in ("2026-03-08", "2026-11-29"):
        ctx = EventContext(season=2026, date=pd.Timestamp(day), circuit_id="monza")
        assert s.rules_races(ctx) == 0.0
    first = int(s.events["season"].min())
    assert first == 2019  # the fixture's data starts inside the 2017 era
    assert math.isnan(s.rules_races(s.event_by_round(2019, 2)))
    assert math.isnan(s.rules_races(s.event_by_round(2021, 22)))


def test_stage2_rows_carry_the_rules_races(real_snapshot) -> None:
    ctx = real_snapshot.event_by_round(2022, 3)
    fld = real_snapshot.event_field(ctx)
    n = len(fld.entries)
    x = real_snapshot.stage2_rows(ctx, fld.entries, np.arange(1.0, n + 1), np.zeros(n))
    assert (x[:, STAGE2.pos["c_rules_races"]] == 2.0).all()


@pytest.mark.parametrize(("rnd", "races"), [(1, 0.0), (2, 1.0)])
def test_stage1_rows_carry_the_rules_races(real_snapshot, rnd: int, races: float) -> None:
    """Stage-1 reads the same count (its practice-only ensemble answers the first race
    under new rules); 2021, an era older than the fixture's data, is NaN."""
    col = STAGE1.pos["c_rules_races"]
    ctx = real_snapshot.event_by_round(2022, rnd)
    assert (real_snapshot.stage1_rows(ctx, real_snapshot.event_field(ctx))[:, col] == races).all()
    ctx = real_snapshot.event_by_round(2021, rnd)
    assert np.isnan(real_snapshot.stage1_rows(ctx, real_snapshot.event_field(ctx))[:, col]).all()


def test_an_event_not_in_the_data_reads_its_circuit_from_the_latest_visit(real_snapshot) -> None:
    """Layout, type and lap length of every circuit's latest calendar event (looked up
    without pandas per request), and nothing for a circuit the data lacks."""
    ev = real_snapshot.events
    for circuit, rows in ev.groupby("circuit_id", sort=False):
        last = rows.iloc[-1]
        ctx = real_snapshot.circuit_event(2026, str(circuit), pd.Timestamp("2026-06-07"))
        assert (ctx.layout_id, ctx.circuit_type, ctx.course_length) == (
            str(last["layout_id"]),
            str(last["circuit_type"]),
            float(last["course_length"]),
        ), circuit
        assert real_snapshot.known_circuit(str(circuit))
    assert not real_snapshot.known_circuit("atlantis")
    nowhere = real_snapshot.circuit_event(2026, "atlantis", pd.Timestamp("2026-06-07"))
    assert nowhere.layout_id is None and nowhere.circuit_id == "atlantis"


@pytest.mark.parametrize(
    ("kind", "given", "want"),
    [
        ("driver", "max-verstapen", ["max-verstappen"]),
        ("driver", "max-verstappen", []),  # a known id means what it says
        ("constructor", "ferari", ["ferrari"]),
        ("circuit", "monzza", ["monza"]),
        ("circuit", "atlantis", []),  # like nothing known: a new venue, not a typo
    ],
)
def test_similar_ids_name_the_known_id_a_typo_likely_means(
    real_snapshot, kind: IdKind, given: str, want: list[str]
) -> None:
    got = real_snapshot.similar_ids(kind, given)
    assert (got[:1] if want else got) == want, got
