"""Lap and race time strings ("1:29.374", "29.1", "1:28:51.587") to seconds."""

from __future__ import annotations

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
    a, b, sec = m.groups()
    parts = [int(p) for p in (a, b) if p is not None]
    seconds = float(sec)
    if parts and seconds >= 60:
        raise ValueError(f"not a time: {value!r} (seconds part >= 60)")
    if len(parts) == 2:
        if parts[1] >= 60:
            raise ValueError(f"not a time: {value!r} (minutes part >= 60)")
        return parts[0] * 3600 + parts[1] * 60 + seconds
    if len(parts) == 1:
        return parts[0] * 60 + seconds
    return seconds
