"""Calls from the front to a model service, sent once more when the connection was stale.

BentoML's client keeps idle connections to a model service for 15 s (aiohttp's default)
while the service's uvicorn closes them after 5 s of quiet (its default; BentoML offers
no setting for a dependency). A call made just as the service closes the connection it
picked fails before any answer: "Can not write request body" / "Server disconnected"
(seen in CI: one request of ~240 answered 503 in the quick benchmark, after a pause of a
few seconds). A model call is a pure function of its rows (and a readiness probe reads
only), so such a call is sent once more, on a new connection; a second failure, or any
other error, is the caller's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp

T = TypeVar("T")


def stale_connection(exc: BaseException) -> bool:
    """The connection failed under the call (closed, reset, refused), not a timeout: the
    service never saw the call or never answered it, so sending it again is safe."""
    return isinstance(exc, aiohttp.ClientConnectionError) and not isinstance(exc, TimeoutError)


async def once_more_if_stale(
    call: Callable[[], Awaitable[T]], on_retry: Callable[[BaseException], None] | None = None
) -> T:
    """``await call()``, once more if the first attempt met a stale connection
    (``on_retry`` is told the error first: a warning, not an error, in the logs)."""
    try:
        return await call()
    except Exception as exc:
        if not stale_connection(exc):
            raise
        if on_retry is not None:
            on_retry(exc)
    return await call()
