"""A driver's forecast never depends on who else is in the request.

For events in the data, any subset of the field gets exactly the Stage-1 gap and the
Stage-2 logit (before the softmax) that the same drivers get in the full request, and
so the same grid slots and probabilities (win, podium, points: they are the field's),
the same explanations and the same names. Nor does it depend on what was asked before:
subsets asked first on a cold cache, or after a request that brought its own laps, get
the same. Real data, real trained models, the request path (resolve -> TwoStage ->
answers) the service runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from pipelines.features.snapshot import FeatureSnapshot
from pipelines.serving.orchestrator import Forecast, TwoStage, run
from pipelines.serving.resolve import resolve_request
from pipelines.serving.responses import quali_predictions, race_predictions
from pipelines.serving.schemas import DriverInput, EventInput, PracticeTimes

pytestmark = pytest.mark.slow

EVENTS = [(2022, 1), (2022, 14), (2023, 6), (2024, 5), (2024, 21), (2025, 8), (2025, 19)]
"""Normal and sprint weekends, 2022-2025 (2024 round 5 and 2025 round 19: sprints)."""
SIZES = [1, 3, 10]
SEED = 20261202


@pytest.fixture(scope="module")
def flow(trained: Any) -> TwoStage:
    return TwoStage.local(trained.snapshot, trained.stage1, trained.stage2)


@pytest.fixture(scope="module")
def cold_flow(trained: Any, tmp_path_factory: pytest.TempPathFactory) -> Callable[[], TwoStage]:
    """Makes flows on a fresh copy of the snapshot, nothing memoised (as a service
    process starts)."""
    saved = tmp_path_factory.mktemp("snapshot") / "features"
    trained.snapshot.save(saved)

    def make() -> TwoStage:
        return TwoStage.local(FeatureSnapshot.load(saved), trained.stage1, trained.stage2)

    return make


def _ask(
    flow: TwoStage,
    season: int,
    rnd: int,
    drivers: list[str] | None,
    explain: bool = True,
    laps: dict[str, PracticeTimes] | None = None,
) -> Forecast:
    """``laps``: the practice laps the request gives, by driver (others: the data's)."""
    given = None
    if drivers is not None:
        given = [DriverInput(driver_id=d, practice=(laps or {}).get(d)) for d in drivers]
    res = resolve_request(flow.snapshot, EventInput(season=season, round=rnd), given)
    return run(flow.full(res.event, res.field, res.rows, explain))


def _by_driver(fc: Forecast) -> dict[str, tuple[Any, ...]]:
    """Every number of a driver's forecast, and the driver's two answers as JSON."""
    assert fc.race is not None
    quali = {p.driver_id: p.model_dump_json() for p in quali_predictions(fc)}
    race = {p.driver_id: p.model_dump_json() for p in race_predictions(fc)}
    out = {}
    for i in fc.rows:
        d = fc.field.entries[i].driver_id
        out[d] = (
            float(fc.quali.gap_raw[i]),
            float(fc.race.logit[i]),
            float(fc.quali.grid[i]),
            float(fc.race.grid[i]),
            float(fc.quali.pole_prob[i]),
            float(fc.race.win_prob[i]),
            float(fc.race.podium_prob[i]),
            float(fc.race.points_prob[i]),
            None if fc.quali.contrib is None else fc.quali.contrib[i].tolist(),
            None if fc.race.contrib is None else fc.race.contrib[i].tolist(),
            quali[d],
            race[d],
        )
    return out


@pytest.mark.parametrize(("season", "rnd"), EVENTS)
def test_any_subset_gets_the_full_requests_numbers(flow: TwoStage, season: int, rnd: int) -> None:
    full = _by_driver(_ask(flow, season, rnd, None))
    ids = sorted(full)
    assert len(ids) >= 18
    rng = np.random.default_rng([SEED, season, rnd])
    for size in SIZES:
        for _ in range(3):
            subset = list(rng.choice(ids, size=size, replace=False))
            got = _by_driver(_ask(flow, season, rnd, subset))
            assert set(got) == set(subset)
            for d in subset:
                assert got[d] == full[d], (season, rnd, size, d)


@pytest.mark.parametrize(("season", "rnd"), EVENTS)
def test_subsets_asked_first_on_a_cold_cache_get_the_full_requests_numbers(
    flow: TwoStage, cold_flow: Callable[[], TwoStage], season: int, rnd: int
) -> None:
    """Once asked, the full field's rows are cached: subsets asked before it, or after a
    request with laps of its own, must compute or find the same numbers."""
    full_fc = _ask(cold_flow(), season, rnd, None)
    full = _by_driver(full_fc)
    ids = sorted(full)
    rng = np.random.default_rng([SEED, season, rnd, 1])
    for size in SIZES:
        subset = [str(d) for d in rng.choice(ids, size=size, replace=False)]
        got = _by_driver(_ask(cold_flow(), season, rnd, subset))
        for d in subset:
            assert got[d] == full[d], ("cold", season, rnd, size, d)
    # a request in which one driver beats the field's best lap of a session by 0.5 s
    session, best = min((s, min(t.values())) for s, t in full_fc.field.laps.items())
    laps = {ids[0]: PracticeTimes(**{session: best - 0.5})}
    asked = [ids[0], *(str(d) for d in rng.choice(ids[1:], size=2, replace=False))]
    after_laps = cold_flow()
    own = _by_driver(_ask(after_laps, season, rnd, asked, laps=laps))
    assert own[ids[0]][0] != full[ids[0]][0], "the request's own laps changed nothing"
    assert _by_driver(_ask(flow, season, rnd, None)) == full  # the warm flow: all cached
    assert own == _by_driver(_ask(flow, season, rnd, asked, laps=laps)), "cold != warm"
    for size in SIZES:
        subset = [str(d) for d in rng.choice(ids, size=size, replace=False)]
        got = _by_driver(_ask(after_laps, season, rnd, subset))
        for d in subset:
            assert got[d] == full[d], ("after a request's own laps", season, rnd, size, d)
    assert _by_driver(_ask(after_laps, season, rnd, None)) == full


def test_the_issues_example_no_longer_moves(flow: TwoStage) -> None:
    """2025 round 8: Norris and Verstappen alone, with 3 others, in the full field."""
    full = _by_driver(_ask(flow, 2025, 8, None))
    pair = _by_driver(_ask(flow, 2025, 8, ["lando-norris", "max-verstappen"]))
    five = _by_driver(
        _ask(
            flow,
            2025,
            8,
            [
                "lando-norris",
                "max-verstappen",
                "charles-leclerc",
                "oscar-piastri",
                "george-russell",
            ],
        )
    )
    alone = _by_driver(_ask(flow, 2025, 8, ["max-verstappen"]))
    for d in ("lando-norris", "max-verstappen"):
        assert pair[d] == five[d] == full[d]
    assert alone["max-verstappen"] == full["max-verstappen"]


def test_explaining_changes_no_number(flow: TwoStage) -> None:
    told = _by_driver(_ask(flow, 2025, 8, None, explain=True))
    plain = _by_driver(_ask(flow, 2025, 8, None, explain=False))
    assert set(told) == set(plain)
    for d in told:
        assert told[d][:8] == plain[d][:8], d
        assert plain[d][8] is None and plain[d][9] is None
        assert '"explanation":null' in plain[d][10] and '"explanation":{' in told[d][10]


def test_request_order_does_not_matter(flow: TwoStage) -> None:
    ids = ["oscar-piastri", "lando-norris", "max-verstappen", "yuki-tsunoda"]
    a = _by_driver(_ask(flow, 2025, 8, ids))
    b = _by_driver(_ask(flow, 2025, 8, ids[::-1]))
    assert a == b
