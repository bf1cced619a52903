"""A season under way, as the data will show 2026: the whole calendar and entry list,
results for the first rounds, practice for the next (``write_season_under_way``: the
real data plus 2025's first rounds re-dated a year on)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from pipelines.features.spec import STAGE1, STAGE2
from tests.fakes import UNDER_WAY_SEASON

S = UNDER_WAY_SEASON


@pytest.fixture(scope="module")
def under_way(season_under_way: Path, tmp_path_factory: pytest.TempPathFactory):
    from pipelines.f1db.parse import load_tables
    from pipelines.features.snapshot import FeatureSnapshot

    tables = load_tables(season_under_way, tmp_path_factory.mktemp("cache"), min_season=2022)
    return tables, FeatureSnapshot.build(tables)


def test_the_calendar_runs_on_and_the_next_event_follows_the_results(under_way) -> None:
    tables, snap = under_way
    assert len(snap.season_events(S)) == 24
    assert snap.meta["latest_event"]["season"] == S and snap.meta["latest_event"]["round"] == 2
    nxt = snap.next_event()
    assert nxt is not None and (nxt.season, nxt.round) == (S, 3)
    held = tables.results.merge(tables.races[["race_id", "season", "round"]], on="race_id")
    assert sorted(set(held.loc[held["season"] == S, "round"])) == [1, 2]


def test_races_under_the_new_rules_count_from_the_season_start(under_way) -> None:
    _, snap = under_way
    counts = [snap.rules_races(snap.event_by_round(S, r)) for r in (1, 2, 3, 4, 24)]
    assert counts == [0.0, 1.0, 2.0, 2.0, 2.0]  # round 4 on: only two races in the data


def test_the_next_event_has_its_entry_list_and_practice(under_way) -> None:
    _, snap = under_way
    ctx = snap.event_by_round(S, 3)
    entries = {e.driver_id: e for e in snap.entries(ctx)}
    assert len(entries) == 22
    assert {entries[d].constructor_id for d in ("sergio-perez", "valtteri-bottas")} == {"cadillac"}
    assert entries["nico-hulkenberg"].constructor_id == "audi"
    assert all(e.practice and set(e.practice) <= {"fp1", "fp2", "fp3"} for e in entries.values())


def test_a_renamed_team_keeps_its_form_and_a_new_one_has_none(under_way) -> None:
    """Audi is Sauber's lineage (F1DB's chronology): its cars read Kick Sauber's team
    form; Cadillac's are empty at the first race and filled once it has raced."""
    _, snap = under_way
    assert snap.lineage["audi"] == snap.lineage["kick-sauber"]
    t_gap = STAGE1.pos["t_q_gap_ewm"]
    for rnd, cadillac_known in ((1, False), (3, True)):
        ctx = snap.event_by_round(S, rnd)
        fld = snap.event_field(ctx)
        x = snap.stage1_rows(ctx, fld)
        ids = [e.driver_id for e in fld.entries]
        driver_ok, team_ok = snap.has_form(ctx, fld.entries)
        for d in ("nico-hulkenberg", "gabriel-bortoleto"):
            assert not math.isnan(x[ids.index(d), t_gap]) and team_ok[ids.index(d)]
        for d in ("sergio-perez", "valtteri-bottas"):
            assert math.isnan(x[ids.index(d), t_gap]) != cadillac_known
            assert team_ok[ids.index(d)] == cadillac_known and driver_ok[ids.index(d)]


def test_training_rows_take_the_rounds_held_and_nothing_after(under_way) -> None:
    from training.datasets import stage1_data, stage2_data

    tables, snap = under_way
    s1, s2 = stage1_data(snap, tables, S), stage2_data(snap, tables, S)
    assert sorted(set(s1.meta["round"])) == [1, 2] and sorted(set(s2.meta["round"])) == [1, 2]
    rules = s2.x[:, STAGE2.pos["c_rules_races"]]
    assert set(rules[s2.meta["round"].to_numpy() == 1]) == {0.0}
    assert set(rules[s2.meta["round"].to_numpy() == 2]) == {1.0}
    assert np.isfinite(s1.y).all() and s2.y.sum() == 2  # one winner per race held


def test_an_event_past_results_missing_from_the_data_is_said_to_read_old_form(under_way) -> None:
    """Round 5 while the data has results for rounds 1-2: rounds 3 and 4 are missing, and
    the answer says its form and standings stop at round 2; the next event (round 3) and
    the rounds with results say nothing of it."""
    from pipelines.serving.resolve import resolve_request
    from pipelines.serving.schemas import EventInput

    _, snap = under_way

    def stale(rnd: int) -> list[str]:
        ws = resolve_request(snap, EventInput(season=S, round=rnd), None).warnings
        return [w for w in ws if "form and standings are as of then" in w]

    assert stale(5) == [
        "2 event(s) of the calendar before this one have no results in the data (latest "
        f"results: {S} round 2, {snap.meta['latest_event']['date']}): form and standings "
        "are as of then"
    ]
    assert stale(4)[0].startswith("1 event(s)")
    assert stale(3) == stale(2) == stale(1) == []
