"""Calls from the front to a model service (a hop costs far more than the model): merged
across requests, and bounded."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import numpy as np

from pipelines.serving.errors import StageUnavailable

RowsFn = Callable[[np.ndarray], Awaitable[np.ndarray]]
"""A model call: feature rows in, one row of output per row out."""
logger = logging.getLogger("f1.service")


class Coalescer:
    """``await coalescer(rows)``: like ``await fn(rows)``, but while one call is in flight
    later callers queue their rows, sent as one call when it returns (a lone caller never
    waits). A failed call fails only its own callers; a cancelled caller disturbs none."""

    def __init__(self, fn: RowsFn, max_rows: int = 640) -> None:
        self.fn = fn
        self.max_rows = max_rows
        self._pending: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = []
        self._draining = False
        self.calls = 0
        self.rows = 0

    async def __call__(self, rows: np.ndarray) -> np.ndarray:
        fut: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._pending.append((rows, fut))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = []
                n = 0
                while self._pending and (
                    not batch or n + len(self._pending[0][0]) <= self.max_rows
                ):
                    rows, fut = self._pending.pop(0)
                    if not fut.done():  # else the caller was cancelled while queued
                        batch.append((rows, fut))
                        n += len(rows)
                if not batch:
                    continue
                merged = np.vstack([rows for rows, _ in batch])
                self.calls += 1
                self.rows += len(merged)
                try:
                    out = np.asarray(await self.fn(merged))
                    if len(out) != len(merged):
                        raise RuntimeError(
                            f"model service returned {len(out)} rows for {len(merged)}"
                        )
                except BaseException as exc:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                ends = np.cumsum([len(rows) for rows, _ in batch])[:-1]
                for (_, fut), part in zip(batch, np.split(out, ends), strict=True):
                    if not fut.done():
                        fut.set_result(part)
        finally:
            self._draining = False


def with_deadline(stage: str, call: RowsFn, timeout_s: float) -> RowsFn:
    """``call`` with a deadline: a hung or dead model service is a prompt 503
    (``StageUnavailable``); a call that met a stale connection is sent once more."""
    from pipelines.serving.bentoml_fixes import once_more_if_stale

    def retried(exc: BaseException) -> None:
        logger.warning(
            "%s model service: the connection closed under the call (%s): sent again",
            stage,
            type(exc).__name__,
        )

    async def guarded(rows: np.ndarray) -> np.ndarray:
        try:
            async with asyncio.timeout(timeout_s):  # no task per call
                out = await once_more_if_stale(lambda: call(rows), retried)
            return np.asarray(out)
        except TimeoutError as exc:
            logger.error("%s model service: no answer in %.1f s", stage, timeout_s)
            raise StageUnavailable(stage) from exc
        except Exception as exc:
            logger.exception("%s model service call failed", stage)
            raise StageUnavailable(stage) from exc

    return guarded
