"""Request merging: each caller gets its own rows and its own error."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from pipelines.serving.coalesce import Coalescer


class FakeService:
    """Doubles its input; records each call's size; can be told to fail a call."""

    def __init__(self, delay: float = 0.01) -> None:
        self.delay = delay
        self.calls: list[int] = []
        self.fail_when: set[int] = set()

    async def __call__(self, rows: np.ndarray) -> np.ndarray:
        self.calls.append(len(rows))
        await asyncio.sleep(self.delay)
        if len(self.calls) in self.fail_when:
            raise RuntimeError(f"call {len(self.calls)} failed")
        return rows[:, 0] * 2.0


def _rows(i: int, n: int) -> np.ndarray:
    return np.full((n, 3), float(i))


def test_concurrent_callers_get_their_own_rows_in_few_calls() -> None:
    svc = FakeService()
    co = Coalescer(svc)

    async def main() -> list[np.ndarray]:
        return await asyncio.gather(*[co(_rows(i, 1 + i % 4)) for i in range(40)])

    outs = asyncio.run(main())
    for i, out in enumerate(outs):
        np.testing.assert_array_equal(out, np.full(1 + i % 4, 2.0 * i))
    assert sum(svc.calls) == sum(1 + i % 4 for i in range(40))
    assert len(svc.calls) <= 3  # the first alone, then everything that queued meanwhile


def test_a_lone_caller_is_sent_at_once() -> None:
    svc = FakeService(delay=0.0)
    co = Coalescer(svc)
    out = asyncio.run(co(_rows(7, 5)))
    np.testing.assert_array_equal(out, np.full(5, 14.0))
    assert svc.calls == [5]


def test_a_failed_call_fails_only_its_callers() -> None:
    svc = FakeService()
    svc.fail_when = {2}  # the merged call of everyone who queued behind the first
    co = Coalescer(svc)

    async def main() -> list[object]:
        first = asyncio.create_task(co(_rows(0, 2)))
        await asyncio.sleep(0)
        queued = [asyncio.create_task(co(_rows(i, 2))) for i in (1, 2, 3)]
        done = await asyncio.gather(first, *queued, return_exceptions=True)
        later = await co(_rows(9, 2))  # the coalescer keeps working after a failure
        return [*done, later]

    first, *queued, later = asyncio.run(main())
    np.testing.assert_array_equal(first, np.zeros(2))
    assert all(isinstance(q, RuntimeError) and "call 2" in str(q) for q in queued)
    np.testing.assert_array_equal(later, np.full(2, 18.0))


def test_max_rows_splits_merged_calls() -> None:
    svc = FakeService()
    co = Coalescer(svc, max_rows=10)

    async def main() -> None:
        await asyncio.gather(*[co(_rows(i, 4)) for i in range(9)])

    asyncio.run(main())
    assert max(svc.calls) <= 10 and sum(svc.calls) == 36


def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    svc = FakeService(delay=0.02)
    co = Coalescer(svc)

    async def main() -> tuple[np.ndarray, np.ndarray]:
        a = asyncio.create_task(co(_rows(1, 1)))
        await asyncio.sleep(0)
        b = asyncio.create_task(co(_rows(2, 1)))
        c = asyncio.create_task(co(_rows(3, 1)))
        await asyncio.sleep(0)
        b.cancel()
        return await a, await c

    a, c = asyncio.run(main())
    np.testing.assert_array_equal(a, [2.0])
    np.testing.assert_array_equal(c, [6.0])
    assert svc.calls == [1, 1]  # b was dropped from the merged call


def test_wrong_row_count_from_the_service_is_an_error() -> None:
    async def bad(rows: np.ndarray) -> np.ndarray:
        return rows[:1, 0]

    co = Coalescer(bad)
    with pytest.raises(RuntimeError, match="returned 1 rows for 3"):
        asyncio.run(co(_rows(1, 3)))
