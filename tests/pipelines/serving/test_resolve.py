"""Request resolution: the warnings a forecast carries early under new rules and for a
driver or team without results before the event."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipelines.models.stage1 import Stage1Config
from pipelines.models.stage2 import Stage2Config
from pipelines.serving.errors import RequestError
from pipelines.serving.resolve import (
    LAST_ROUND,
    FittedOn,
    ServedModels,
    fitted_on_warning,
    resolve_request,
    rules_reset_warning,
)
from pipelines.serving.schemas import DriverInput, EventInput

LEAN = Stage2Config(grid_coef=[-1.0], grid_mean=[2.0])


def models(practice: bool = False, fitted: FittedOn | None = None) -> ServedModels:
    """Served models with a grid lean (``LEAN``), with or without Stage-1's practice-only
    ensemble, fitted on ``fitted``."""
    return ServedModels(Stage1Config(practice_model=practice), LEAN, fitted)


@pytest.mark.parametrize(
    ("rnd", "share"), [(1, "100%"), (2, "75%"), (4, "25%"), (5, None), (12, None)]
)
def test_the_warning_gives_the_share_the_grid_takes(real_snapshot, rnd: int, share) -> None:
    ctx = real_snapshot.event_by_round(2022, rnd)
    note = rules_reset_warning(ctx, LEAN, real_snapshot.rules_races(ctx))
    if share is None:
        assert note is None
    else:
        assert note is not None and f"{rnd - 1} race(s)" in note and f"takes {share}" in note


def test_no_warning_without_a_grid_logit_or_for_qualifying(real_snapshot) -> None:
    ctx = real_snapshot.event_by_round(2022, 1)
    assert (
        rules_reset_warning(ctx, Stage2Config(), real_snapshot.rules_races(ctx)) is None
    )  # not fitted
    assert (
        rules_reset_warning(
            ctx, Stage2Config(grid_coef=[-1.0], reset_weight=0.0), real_snapshot.rules_races(ctx)
        )
        is None
    )
    event = EventInput(season=2022, round=1)
    assert not any(
        "technical rules" in w for w in resolve_request(real_snapshot, event, None).warnings
    )
    with_lean = resolve_request(real_snapshot, event, None, models(), race=True).warnings
    assert [w for w in with_lean if "technical rules" in w] == [
        rules_reset_warning(ctx, LEAN, real_snapshot.rules_races(ctx))
    ]


def _practice_alone(warnings: list[str]) -> list[str]:
    return [w for w in warnings if "come from practice alone" in w]


@pytest.mark.parametrize(("rnd", "warned"), [(1, True), (2, False)])
def test_the_first_race_under_new_rules_says_qualifying_reads_practice(
    real_snapshot, rnd: int, warned: bool
) -> None:
    """With a practice-only Stage-1, the first race under new rules (2022 round 1, its
    practice in the data) says so; the second race, or a Stage-1 without it, does not."""
    event = EventInput(season=2022, round=rnd)
    notes = _practice_alone(
        resolve_request(real_snapshot, event, None, models(practice=True)).warnings
    )
    assert notes == (
        [
            "2022: the first race under new technical rules in the data: the qualifying "
            "gaps of cars with a practice lap come from practice alone (form from before "
            "the rules changed is about cars that no longer race)"
        ]
        if warned
        else []
    )
    assert not _practice_alone(
        resolve_request(real_snapshot, event, None, models(), race=True).warnings
    )


def test_a_2026_event_reads_practice_alone_once_laps_are_given(real_snapshot) -> None:
    """Every 2026 event is the first under its rules while the data ends in 2025: without
    a lap the forecast is form's (the no-practice warning), with laps it is practice's."""
    event = EventInput(season=2026, circuit_id="monza", date="2026-09-06")
    cars = [{"driver_id": "max-verstappen"}, {"driver_id": "lando-norris"}]
    no_laps = [DriverInput.model_validate(c) for c in cars]
    ahead = resolve_request(real_snapshot, event, no_laps, models(practice=True)).warnings
    assert not _practice_alone(ahead) and any("no practice laps" in w for w in ahead)
    laps = [DriverInput.model_validate(cars[0] | {"practice": {"fp3": "1:19.9"}}), no_laps[1]]
    given = resolve_request(real_snapshot, event, laps, models(True), race=True).warnings
    assert len(_practice_alone(given)) == 1 and "2026" in _practice_alone(given)[0]
    assert any("takes 100% of its log-odds from the grid" in w for w in given)


# ------------------------------------------------------------- no form before the event


def _no_form(warnings: list[str]) -> list[str]:
    return [w for w in warnings if "no results in the data before this event" in w]


def test_the_entry_list_names_the_drivers_without_results_before_the_event(real_snapshot) -> None:
    """Point in time: 2025's three rookies are named at their first race, not at the
    second; the data's own entry list gets one line for them."""
    first = resolve_request(real_snapshot, EventInput(season=2025, round=1), None).warnings
    assert _no_form(first) == [
        'no results in the data before this event for driver(s) "kimi-antonelli", '
        '"gabriel-bortoleto", "isack-hadjar": predicted without their form'
    ]
    second = resolve_request(real_snapshot, EventInput(season=2025, round=2), None).warnings
    assert _no_form(second) == []


def test_given_drivers_and_teams_without_results_are_named_by_index(real_snapshot) -> None:
    """A team new to the data (Cadillac in 2026) is warned about, a renamed one that
    carries its predecessor's results (Audi, Sauber's lineage) is not; an id F1DB does
    not know gets the driver and no-team lines; a car number no one raced with its own
    line instead of the driver one; text from the request is quoted."""
    event = EventInput(season=2026, circuit_id="monza", date="2026-09-06")
    unused = next(n for n in range(100) if real_snapshot.driver_for_number(n, 2026) is None)
    drivers = [
        DriverInput(driver_id="sergio-perez", constructor_id="cadillac"),
        DriverInput(driver_id="nico-hulkenberg", constructor_id="audi"),
        DriverInput(driver_id="jane-doe"),
        DriverInput(driver_id=unused),
        DriverInput(driver_id="max-verstappen"),
    ]
    warnings = resolve_request(real_snapshot, event, drivers).warnings
    assert sorted(w for w in warnings if w.startswith("drivers[")) == [
        'drivers[0]: team "cadillac" has no results in the data before this event: '
        "team form unknown",
        'drivers[2]: driver "jane-doe" has no results in the data before this event: '
        "predicted without form",
        'drivers[2]: no team known for "jane-doe": team form unknown',
        f"drivers[3]: no driver raced with number {unused}: predicted without history",
        f'drivers[3]: no team known for "car-{unused}": team form unknown',
    ]


def test_a_driver_has_no_results_before_his_first_event(real_snapshot) -> None:
    """The same driver, asked about his first race and his second (given by id)."""
    asked = [DriverInput(driver_id="kimi-antonelli")]
    for rnd, expected in ((1, 1), (2, 0)):
        warnings = resolve_request(real_snapshot, EventInput(season=2025, round=rnd), asked)
        assert len(_no_form(warnings.warnings)) == expected


def test_a_field_without_practice_laps_is_said_to_be_forecast_from_form(real_snapshot) -> None:
    def no_practice(event: EventInput, drivers: list[DriverInput] | None) -> bool:
        warnings = resolve_request(real_snapshot, event, drivers).warnings
        return any(w.startswith("no practice laps for this event") for w in warnings)

    ahead = EventInput(season=2026, circuit_id="monza", date="2026-09-06")
    assert no_practice(ahead, [DriverInput(driver_id="max-verstappen")])
    timed = DriverInput.model_validate({"driver_id": "max-verstappen", "practice": {"fp1": 81.2}})
    assert not no_practice(ahead, [timed])
    assert not no_practice(EventInput(season=2025, round=8), None)


# ------------------------------------------------------------- which event is meant


def test_an_event_in_the_data_named_by_circuit_and_date_is_that_event(real_snapshot) -> None:
    """Monaco 2025 given as circuit + race date is round 8, with its entry list and
    practice (it was read as an unknown event: no entry list, a 422 without drivers)."""
    by_round = resolve_request(real_snapshot, EventInput(season=2025, round=8), None)
    by_place = resolve_request(
        real_snapshot, EventInput(season=2025, circuit_id="monaco", date="2025-05-25"), None
    )
    assert (by_place.event.round, by_place.event.race_id) == (8, by_round.event.race_id)
    assert by_place.field.entries == by_round.field.entries
    assert any(e.practice for e in by_place.field.entries)
    # a day later at the same circuit is not that event: an event the data does not have
    other = EventInput(season=2025, circuit_id="monaco", date="2025-05-26")
    assert (
        resolve_request(real_snapshot, other, [DriverInput(driver_id="lando-norris")]).event.race_id
        is None
    )


@pytest.mark.parametrize(
    ("circuit", "meant"),
    [("silverston", '"silverstone"'), ("yas-marin", '"yas-marina"'), ("atlantis", None)],
)
def test_an_unknown_circuit_is_forecast_with_a_warning_naming_a_likely_typo(
    real_snapshot, circuit: str, meant: str | None
) -> None:
    """A circuit the data does not know may be a new venue (forecast, warned) or a typo:
    the warning then names the known id spelt like it."""
    event = EventInput(season=2026, circuit_id=circuit, date="2026-07-05")
    res = resolve_request(real_snapshot, event, [DriverInput(driver_id="lando-norris")])
    (w,) = [w for w in res.warnings if w.startswith(f'circuit "{circuit}" is not in the data')]
    assert ("did you mean" in w) == (meant is not None), w
    if meant is not None:
        assert w.endswith(f"(did you mean {meant}?)"), w


@pytest.mark.parametrize(
    ("driver", "team", "want"),
    [
        ("lando-noris", None, 'driver "lando-noris" has no results'),
        ("lando-norris", "mclarn", 'team "mclarn" has no results'),
    ],
)
def test_an_unknown_driver_or_team_id_is_warned_with_the_known_id_spelt_like_it(
    real_snapshot, driver: str, team: str | None, want: str
) -> None:
    """A typo in an id reads as a newcomer without form, a far worse forecast: the warning
    names the F1DB id it is likely to mean."""
    event = EventInput(season=2025, round=8)
    asked = DriverInput.model_validate({"driver_id": driver, "constructor_id": team})
    (w,) = [w for w in resolve_request(real_snapshot, event, [asked]).warnings if want in w]
    assert w.endswith(
        '(did you mean "lando-norris"?)' if team is None else '(did you mean "mclaren"?)'
    )


@pytest.mark.parametrize("driver", ["someone-new", "kimi-antonelli"])
def test_a_newcomer_is_warned_without_a_hint(real_snapshot, driver: str) -> None:
    """An id F1DB does not know and spells like no other, or a known driver's first race
    (Antonelli, 2025 round 1): no form, and no "did you mean"."""
    first = resolve_request(
        real_snapshot, EventInput(season=2025, round=1), [DriverInput(driver_id=driver)]
    )
    (w,) = [w for w in first.warnings if f'driver "{driver}" has no results' in w]
    assert "did you mean" not in w, w


def test_a_malformed_circuit_id_is_refused_saying_what_an_id_looks_like() -> None:
    with pytest.raises(ValidationError, match="lower-case letters, digits and hyphens"):
        EventInput.model_validate(
            {"season": 2026, "circuit_id": "Albert Park", "date": "2026-03-08"}
        )


@pytest.mark.parametrize(
    ("extra", "loc"),
    [
        ({"circuit_id": "spa-francorchamps"}, ["event", "circuit_id"]),
        ({"date": "2025-05-26"}, ["event", "date"]),
    ],
)
def test_a_circuit_or_date_beside_a_round_must_be_that_rounds(real_snapshot, extra, loc) -> None:
    event = EventInput(season=2025, round=8, **extra)
    with pytest.raises(RequestError) as err:
        resolve_request(real_snapshot, event, None)
    (detail,) = err.value.detail
    assert detail["loc"] == ["body", *loc] and "round 8" in detail["msg"]
    same = EventInput(season=2025, round=8, circuit_id="monaco", date="2025-05-25")
    assert resolve_request(real_snapshot, same, None).event.round == 8


def test_a_date_outside_its_season_is_refused() -> None:
    with pytest.raises(ValidationError, match="not in season 2026"):
        EventInput(season=2026, circuit_id="monaco", date="2025-06-07")


def test_an_event_long_after_the_latest_results_says_how_old_its_form_is(real_snapshot) -> None:
    """The data ends with 2025's last race (7 December): the first race of 2026, after the
    winter break, says nothing; an event in June says its form is 182 days old."""

    def stale(date: str) -> list[str]:
        event = EventInput(season=2026, circuit_id="monaco", date=date)
        ws = resolve_request(real_snapshot, event, [DriverInput(driver_id="lando-norris")])
        return [w for w in ws.warnings if "form and standings are as of then" in w]

    assert stale("2026-03-08") == []
    assert stale("2026-06-07") == [
        "the data's latest results (2025 round 24, 2025-12-07) are 182 days before this "
        "event: form and standings are as of then"
    ]
    assert stale("2026-06-07") != stale("2026-07-07")  # the age is the event's own
    past = resolve_request(real_snapshot, EventInput(season=2025, round=8), None).warnings
    assert not [w for w in past if "as of then" in w]


# ------------------------------------------- events the served models were fitted on

SERVED = FittedOn(first_season=2014, stage1_through=(2025, 24), stage2_last=2025)


def test_fitted_on_is_read_from_the_models_metadata() -> None:
    meta1 = {"training_seasons": [2014, 2025], "fitted_through": {"season": 2026, "round": 2}}
    got = FittedOn.of(meta1, {"training_seasons": [2014, 2025]})
    assert got == FittedOn(2014, (2026, 2), 2025)
    # a Stage-1 saved before fitted_through was recorded: through its last training season
    old = FittedOn.of({"training_seasons": [2014, 2024]}, {"training_seasons": [2014, 2024]})
    assert old == FittedOn(2014, (2024, LAST_ROUND), 2024)
    assert FittedOn.of({}, {"training_seasons": [2014, 2025]}) is None


@pytest.mark.parametrize(
    ("season", "rnd", "fitted", "race", "says"),
    [
        (2025, 8, SERVED, True, "Stage-1 fitted through 2025 round 24, Stage-2 on 2014-2025"),
        (2025, 8, SERVED, False, "Stage-1 fitted through 2025 round 24)"),
        (2021, 1, SERVED, True, "Stage-1 fitted through 2025 round 24, Stage-2 on 2014-2025"),
        (2021, 5, FittedOn(2022, (2025, 24), 2025), True, None),  # before the first season
        (2025, 8, None, True, None),  # metadata silent
        # Stage-1 refitted through 2025 round 5, Stage-2 fitted through 2024
        (2025, 5, FittedOn(2014, (2025, 5), 2024), False, "(Stage-1 fitted through 2025 round 5)"),
        (2025, 6, FittedOn(2014, (2025, 5), 2024), True, None),
        (2024, 24, FittedOn(2014, (2024, LAST_ROUND), 2024), False, "fitted through 2024)"),
    ],
)
def test_an_event_the_models_were_fitted_on_says_so(
    real_snapshot, season: int, rnd: int, fitted: FittedOn | None, race: bool, says: str | None
) -> None:
    """A past event in the models' training data is answered by models that know how it
    went: the warning says which stage saw it; an event after (or before) does not warn."""
    ctx = real_snapshot.event_by_round(season, rnd)
    note = fitted_on_warning(ctx, fitted, race)
    if says is None:
        assert note is None
    else:
        assert note is not None and f"{season} round {rnd} is in the served" in note
        assert says in note and "knows how the event went" in note


def test_only_events_in_the_data_can_have_been_fitted_on(real_snapshot) -> None:
    """A made-up event (not in the data) was never a training row, whatever its date;
    the data's own event named by circuit and date was."""
    made_up = EventInput(season=2025, circuit_id="monza", date="2025-06-01")
    drivers = [DriverInput.model_validate({"driver_id": "max-verstappen"})]
    res = resolve_request(real_snapshot, made_up, drivers, models(fitted=SERVED), race=True)
    assert not res.fitted_on_event and not any("training data" in w for w in res.warnings)
    monaco = real_snapshot.event_by_round(2025, 8)
    named = EventInput(season=2025, circuit_id=monaco.circuit_id, date=monaco.date.date())
    res = resolve_request(real_snapshot, named, None, models(fitted=SERVED), race=True)
    assert res.fitted_on_event
    assert [w for w in res.warnings if "training data" in w] == [
        fitted_on_warning(monaco, SERVED, True)
    ]
