"""A model call that met a stale keep-alive connection is sent once more; nothing else is."""

from __future__ import annotations

import asyncio

import aiohttp
import numpy as np
import pytest

from pipelines.serving.hops import once_more_if_stale, stale_connection

ROWS = np.arange(6.0).reshape(3, 2)


class Service:
    """A model service reached over a connection: the first ``failures`` calls raise."""

    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self, rows: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return rows.sum(axis=1)


def _closing() -> list[BaseException]:
    """What aiohttp raises when the connection it reused was being closed (seen in CI)."""
    return [
        aiohttp.ClientOSError(None, "Can not write request body for http://127.0.0.1:3000/x"),
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientConnectionResetError("Cannot write to closing transport"),
    ]


@pytest.mark.parametrize("exc", _closing(), ids=lambda e: type(e).__name__)
def test_a_stale_connection_is_sent_once_more_and_said(exc: BaseException) -> None:
    svc, told = Service([exc]), []
    out = asyncio.run(once_more_if_stale(lambda: svc(ROWS), told.append))
    np.testing.assert_array_equal(out, [1.0, 5.0, 9.0])
    assert svc.calls == 2 and told == [exc]


def test_a_second_failure_is_the_callers() -> None:
    first, second = _closing()[:2]
    svc = Service([first, second])
    with pytest.raises(aiohttp.ServerDisconnectedError):
        asyncio.run(once_more_if_stale(lambda: svc(ROWS)))
    assert svc.calls == 2


@pytest.mark.parametrize(
    "exc",
    [
        aiohttp.ServerTimeoutError("read timed out"),  # the service may still be working
        ValueError("bad rows"),
        RuntimeError("model service returned 2 rows for 3"),
        TimeoutError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_anything_else_is_not_sent_again(exc: BaseException) -> None:
    svc = Service([exc])
    with pytest.raises(type(exc)):
        asyncio.run(once_more_if_stale(lambda: svc(ROWS)))
    assert svc.calls == 1 and not stale_connection(exc)


def test_a_healthy_call_is_made_once() -> None:
    svc = Service([])
    np.testing.assert_array_equal(
        asyncio.run(once_more_if_stale(lambda: svc(ROWS))), [1.0, 5.0, 9.0]
    )
    assert svc.calls == 1
