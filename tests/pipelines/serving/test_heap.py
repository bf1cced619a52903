"""freeze_startup_heap: what is alive at start-up leaves the collected generations."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from pipelines.serving.heap import freeze_startup_heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test session collects as before


def test_startup_objects_leave_every_generation_and_later_ones_do_not(unfrozen: None) -> None:
    startup = [{"driver": i} for i in range(5000)]  # a snapshot-like heap of containers
    assert any(o is startup for o in gc.get_objects())
    frozen = freeze_startup_heap()
    assert frozen >= len(startup)
    tracked = {id(o) for o in gc.get_objects()}  # every generation the collector walks
    assert id(startup) not in tracked and id(startup[0]) not in tracked
    later = [{"request": 1}]
    assert id(later) in {id(o) for o in gc.get_objects()}
