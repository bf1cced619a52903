"""The served-path evaluation's request shapes, on the real snapshot."""

from __future__ import annotations

import numpy as np

from pipelines.models.stage1 import no_practice, without_practice
from training.evaluate import before_practice


def test_a_weekend_ahead_is_the_field_without_a_lap(real_snapshot) -> None:
    """The ahead forecast asks the event's cars with no practice: Stage-1 rows the
    same as the data's in everything but practice, which is what the form-only
    ensemble is fitted on (``without_practice``)."""
    snap = real_snapshot
    ctx = snap.event_by_round(2025, 8)
    fld = snap.event_field(ctx)
    ahead = before_practice(fld)
    assert [e.driver_id for e in ahead.entries] == [e.driver_id for e in fld.entries]
    assert [e.constructor_id for e in ahead.entries] == [e.constructor_id for e in fld.entries]
    assert not ahead.laps and not any(e.practice or e.laps for e in ahead.entries)
    assert fld.laps and all(e.practice for e in fld.entries)  # Monaco 2025 had practice
    x = snap.stage1_rows(ctx, fld)
    x_ahead = snap.stage1_rows(ctx, ahead)
    assert no_practice(x_ahead).all() and not no_practice(x).any()
    np.testing.assert_array_equal(x_ahead, without_practice(x))
    # and the data's rows are untouched by it (the memoised field is not the ahead one)
    np.testing.assert_array_equal(snap.stage1_rows(ctx, snap.event_field(ctx)), x)
