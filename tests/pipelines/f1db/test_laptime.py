"""parse_time: F1DB lap / race time strings to seconds."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.f1db.laptime import parse_time


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1:29.374", 60 + 29.374),
        ("29.1", 29.1),
        ("1:28:51.587", 3600 + 28 * 60 + 51.587),
        ("0:59.999", 59.999),
        ("  1:01.000 ", 61.0),
        ("2:00", 120.0),
    ],
)
def test_strings_are_seconds(text: str, expected: float) -> None:
    assert parse_time(text) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(("value", "expected"), [(90, 90.0), (83.456, 83.456), (0, 0.0)])
def test_numbers_are_already_seconds(value: float, expected: float) -> None:
    out = parse_time(value)
    assert isinstance(out, float)
    assert out == expected


@pytest.mark.parametrize("value", [None, "", "   "])
def test_empty_values_are_nan(value: object) -> None:
    assert math.isnan(parse_time(value))


@pytest.mark.parametrize(
    "value",
    ["garbage", "1:2x.3", "+0.322", "-1:29.374", "DNF", "1:29:374:1", "1.2.3", True],
)
def test_garbage_raises(value: object) -> None:
    with pytest.raises(ValueError, match="not a time"):
        parse_time(value)


@pytest.mark.parametrize("text", ["1:75.0", "1:60.000", "1:28:75.000", "1:61:00.000"])
def test_out_of_range_parts_raise(text: str) -> None:
    """A seconds (or minutes, after hours) part of 60 or more is not a clock time."""
    with pytest.raises(ValueError, match=">= 60"):
        parse_time(text)


@settings(derandomize=True)  # the same cases every run
@given(
    hours=st.integers(0, 3),
    minutes=st.integers(0, 59),
    millis=st.integers(0, 59_999),
)
def test_formatted_times_round_trip(hours: int, minutes: int, millis: int) -> None:
    seconds = millis / 1000
    expected = minutes * 60 + seconds
    assert parse_time(f"{minutes}:{seconds:06.3f}") == pytest.approx(expected, abs=1e-9)
    if hours:
        text = f"{hours}:{minutes:02d}:{seconds:06.3f}"
        assert parse_time(text) == pytest.approx(hours * 3600 + expected, abs=1e-9)
