"""The BentoML workarounds: they refuse another BentoML version; a model call that met a
stale keep-alive connection is sent once more, nothing else is; readiness asks each
model service; media types are computed once."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import aiohttp
import numpy as np
import pytest

from pipelines.serving.bentoml_fixes import (
    BENTOML_VERSION,
    check_version,
    dependencies_ready,
    fix_media_types,
    once_more_if_stale,
    stale_connection,
)

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


def test_another_bentoml_version_is_refused_at_start() -> None:
    check_version(BENTOML_VERSION)
    with pytest.raises(RuntimeError, match=r"1\.4\.41 is installed"):
        check_version("1.4.41")


class Dependency:
    """A model service as the front sees it: ``is_ready(timeout)`` answers, fails or hangs."""

    def __init__(self, answer: bool | None, fail: BaseException | None = None) -> None:
        self.answer, self.fail = answer, fail

    async def is_ready(self, timeout: float) -> bool:
        if self.fail is not None:
            raise self.fail
        if self.answer is None:
            await asyncio.sleep(60)
        return bool(self.answer)


def test_ready_only_while_every_model_service_says_so() -> None:
    def ready(*deps: object) -> bool:
        return asyncio.run(dependencies_ready(*deps, timeout_s=0.05))

    assert ready(Dependency(True), Dependency(True), object())  # in-process: nothing to ask
    assert not ready(Dependency(True), Dependency(False))
    assert not ready(Dependency(None), Dependency(True))  # hung: not ready, promptly
    assert not ready(Dependency(True, RuntimeError("dead")))


def test_media_types_are_computed_once() -> None:
    class Spec:
        media_type = None

        def mime_type(self) -> str:
            return "application/json"

    class Api:
        output_spec = Spec()

    api = Api()
    fix_media_types(SimpleNamespace(apis={"predict": api}))
    assert api.output_spec.media_type == "application/json"
