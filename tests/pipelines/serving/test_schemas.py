"""The request models accept exactly what their published JSON schema allows: a value of
another type is refused (no lax conversion), and each two-form field (a lap, a driver)
takes the forms its schema states and nothing else."""

from __future__ import annotations

import functools
from datetime import date
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from pipelines.serving.schemas import (
    DRIVER_PATTERN,
    LAP_PATTERN,
    DriverInput,
    EventInput,
    PracticeTimes,
    QualiRequest,
    RaceRequest,
)

MONACO = {"season": 2025, "round": 8}

# (what, body, where the error is): values pydantic's lax mode used to convert
OTHER_TYPES = [
    ("explain 0", {"event": MONACO, "explain": 0}, ("explain",)),
    ("explain 'true'", {"event": MONACO, "explain": "true"}, ("explain",)),
    ("season '2025'", {"event": {"season": "2025", "round": 8}}, ("event", "season")),
    ("round 8.0", {"event": {"season": 2025, "round": 8.0}}, ("event", "round")),
    ("grid_position 1.0", {"event": MONACO, "drivers": [{"driver_id": 1, "grid_position": 1.0}]},
     ("drivers", 0, "grid_position")),
    ("grid_position '1'", {"event": MONACO, "drivers": [{"driver_id": 1, "grid_position": "1"}]},
     ("drivers", 0, "grid_position")),
    ("temperature '25'", {"drivers": [{"driver_id": 1, "temperature": "25"}]},
     ("drivers", 0, "temperature")),
    ("date as a timestamp", {"event": {"season": 1970, "circuit_id": "monaco", "date": 0}},
     ("event", "date")),
]  # fmt: skip


@pytest.mark.parametrize("model", [QualiRequest, RaceRequest])
@pytest.mark.parametrize(("what", "body", "loc"), OTHER_TYPES, ids=[c[0] for c in OTHER_TYPES])
def test_a_value_of_another_type_is_refused_naming_the_field(
    model: type[BaseModel], what: str, body: dict[str, Any], loc: tuple[str | int, ...]
) -> None:
    with pytest.raises(ValidationError) as err:
        model.model_validate(body)
    assert [e["loc"] for e in err.value.errors()] == [loc], what


def test_the_same_values_of_the_right_type_are_accepted() -> None:
    ok = RaceRequest.model_validate(
        {"event": MONACO, "explain": True, "drivers": [{"driver_id": 1, "grid_position": 1}]}
    )
    assert ok.explain is True and ok.event is not None and ok.event.round == 8
    assert ok.drivers is not None and ok.drivers[0].grid_position == 1


LAPS_OK = [(71.2, 71.2), (20, 20.0), (300, 300.0), ("1:11.2", 71.2), ("0:20", 20.0),
           ("4:59.999", 299.999), ("5:00.000", 300.0), (None, None)]  # fmt: skip
LAPS_REFUSED = ["71.2", "", " 1:11.2", "1:11.2\n", "1:5.3", "0:19.999", "5:00.001",
                "1:11.2345", "0:1:11.2", "NaN", 19.99, 300.01, -80, True, 10**400,
                float("inf"), [71.2], {"s": 71.2}]  # fmt: skip


@pytest.mark.parametrize(("given", "seconds"), LAPS_OK)
def test_a_lap_is_seconds_or_m_ss_fff(given: Any, seconds: float | None) -> None:
    assert PracticeTimes.model_validate({"fp3": given}).fp3 == seconds


@pytest.mark.parametrize("given", LAPS_REFUSED, ids=lambda v: repr(v)[:24])
def test_a_lap_in_any_other_form_is_refused(given: Any) -> None:
    with pytest.raises(ValidationError) as err:
        DriverInput.model_validate({"driver_id": 1, "practice": {"fp1": given}})
    assert err.value.errors()[0]["loc"] == ("practice", "fp1")


DRIVERS_OK = [("max-verstappen", "max-verstappen"), (1, 1), (0, 0), (99, 99), ("16", 16),
              ("07", 7), ("x", "x"), ("3-d", "3-d"), ("a" * 64, "a" * 64)]  # fmt: skip
DRIVERS_REFUSED = ["Max", " max-verstappen", "max-verstappen\n", "max_verstappen", "-max",
                   "123", "", "a" * 65, "max-verstäppen", 100, -1, True, 1.0, None]  # fmt: skip


@pytest.mark.parametrize(("given", "resolved"), DRIVERS_OK)
def test_a_driver_is_an_f1db_id_or_a_car_number(given: Any, resolved: Any) -> None:
    assert DriverInput.model_validate({"driver_id": given}).driver_id == resolved


@pytest.mark.parametrize("given", DRIVERS_REFUSED, ids=repr)
def test_a_driver_in_any_other_form_is_refused(given: Any) -> None:
    with pytest.raises(ValidationError) as err:
        DriverInput.model_validate({"driver_id": given})
    assert err.value.errors()[0]["loc"] == ("driver_id",)


def test_python_callers_may_pass_a_date_object_or_iso_text() -> None:
    as_text = EventInput(season=2026, circuit_id="monza", date="2026-09-06")
    as_date = EventInput(season=2026, circuit_id="monza", date=date(2026, 9, 6))
    assert as_text == as_date
    for bad in ("2026-09-06T00:00:00", "6.9.2026", "2026-02-30", 1788652800):
        with pytest.raises(ValidationError):
            EventInput.model_validate({"season": 2026, "circuit_id": "monza", "date": bad})


# -------------------------------------------- the schema and the model agree


@functools.cache
def _validator(model: type[BaseModel], field: str) -> Any:
    """The field's published schema, read as OpenAPI 3.0 reads it (JSON Schema draft 4:
    1.0 is not an integer)."""
    schema = model.model_json_schema()
    prop = {"$defs": schema.get("$defs", {}), **schema["properties"][field]}
    return jsonschema_rs.Draft4Validator(prop, validate_formats=True)


def _schema_allows(model: type[BaseModel], field: str, value: Any) -> bool:
    return bool(_validator(model, field).is_valid(value))


def _model_allows(model: type[BaseModel], body: dict[str, Any]) -> bool:
    try:
        model.model_validate(body)
    except ValidationError:
        return False
    return True


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=70),
)
LAP_TEXT = st.from_regex(LAP_PATTERN, fullmatch=True)
DRIVER_TEXT = st.from_regex(DRIVER_PATTERN, fullmatch=True)
NEAR_LAPS = st.one_of(
    st.floats(min_value=0, max_value=400),
    st.integers(min_value=0, max_value=400),
    LAP_TEXT,
    LAP_TEXT.map(lambda s: s + "0"),
    LAP_TEXT.map(lambda s: " " + s),
)


@settings(max_examples=400, deadline=None)
@given(value=st.one_of(JSON_SCALARS, NEAR_LAPS))
def test_a_lap_is_accepted_exactly_when_its_schema_allows_it(value: Any) -> None:
    assert _model_allows(PracticeTimes, {"fp2": value}) == _schema_allows(
        PracticeTimes, "fp2", value
    )


@settings(max_examples=400, deadline=None)
@given(
    value=st.one_of(
        JSON_SCALARS,
        DRIVER_TEXT,
        st.integers(min_value=-5, max_value=105),
        st.text(alphabet="abz019-_ ", max_size=6),
    )
)
def test_a_driver_is_accepted_exactly_when_its_schema_allows_it(value: Any) -> None:
    assert _model_allows(DriverInput, {"driver_id": value}) == _schema_allows(
        DriverInput, "driver_id", value
    )


@settings(max_examples=200, deadline=None)
@given(
    field=st.sampled_from(["grid_position", "temperature", "constructor_id"]),
    value=st.one_of(JSON_SCALARS, st.integers(min_value=-2, max_value=33)),
)
def test_the_other_driver_fields_agree_with_their_schema(field: str, value: Any) -> None:
    body = {"driver_id": 1, field: value}
    assert _model_allows(DriverInput, body) == _schema_allows(DriverInput, field, value)


@settings(max_examples=100, deadline=None)
@given(value=JSON_SCALARS)
def test_explain_agrees_with_its_schema(value: Any) -> None:
    for model in (QualiRequest, RaceRequest):
        allowed = _model_allows(model, {"event": MONACO, "explain": value})
        assert allowed == _schema_allows(model, "explain", value)
