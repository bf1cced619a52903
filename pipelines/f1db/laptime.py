"""Lap and race time strings ("1:29.374", "29.1", "1:28:51.587") to seconds."""

from __future__ import annotations

import functools
import math
import re

_TIME_RE = re.compile(r"^(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d+)?)$")


def parse_time(value: object) -> float:
    """Seconds from a number or an "[h:][m:]s.fff" string; NaN for empty values.
    Raises ValueError on text that is not a time."""
    if value is None:
        return math.nan
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    if not text:
        return math.nan
    m = _TIME_RE.match(text)
    if not m:
        raise ValueError(f"not a time: {value!r} (expected seconds or m:ss.fff)")
    parts = [float(p) for p in m.groups() if p is not None]  # [hours, minutes,] seconds
    if any(part >= 60 for part in parts[1:]):
        raise ValueError(f"not a time: {value!r} (a minutes or seconds part >= 60)")
    return functools.reduce(lambda total, part: total * 60 + part, parts)
