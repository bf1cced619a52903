"""Request resolution: the warning a win forecast carries early under new rules."""

from __future__ import annotations

import pytest

from pipelines.models.stage2 import Stage2Config
from pipelines.serving.resolve import resolve_request, rules_reset_warning
from pipelines.serving.schemas import EventInput

LEAN = Stage2Config(grid_coef=[-1.0], grid_mean=[2.0])


@pytest.mark.parametrize(
    ("rnd", "share"), [(1, "100%"), (2, "75%"), (4, "25%"), (5, None), (12, None)]
)
def test_the_warning_gives_the_share_the_grid_takes(real_snapshot, rnd: int, share) -> None:
    ctx = real_snapshot.event_by_round(2022, rnd)
    note = rules_reset_warning(real_snapshot, ctx, LEAN)
    if share is None:
        assert note is None
    else:
        assert note is not None and f"{rnd - 1} race(s)" in note and f"takes {share}" in note


def test_no_warning_without_a_grid_logit_or_for_qualifying(real_snapshot) -> None:
    ctx = real_snapshot.event_by_round(2022, 1)
    assert rules_reset_warning(real_snapshot, ctx, Stage2Config()) is None  # not fitted
    assert (
        rules_reset_warning(real_snapshot, ctx, Stage2Config(grid_coef=[-1.0], reset_weight=0.0))
        is None
    )
    event = EventInput(season=2022, round=1)
    assert not any(
        "technical rules" in w for w in resolve_request(real_snapshot, event, None).warnings
    )
    with_lean = resolve_request(real_snapshot, event, None, LEAN).warnings
    assert [w for w in with_lean if "technical rules" in w] == [
        rules_reset_warning(real_snapshot, ctx, LEAN)
    ]
