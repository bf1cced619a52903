"""Every workaround of a BentoML behaviour, in one place, for BentoML 1.4.40 only.

| workaround | upstream behaviour (file in bentoml) | upstream report |
|---|---|---|
| ``MODEL_SERVICE["runner_connection"]`` | the client a service calls a dependency with replaces its session every 100 calls or 300 s and closes the old one under calls still in flight (``_bentoml_impl/client/proxy2.py``, ``SessionManager``; 1.4.30 on) | bentoml/BentoML#5544, #5540 |
| ``once_more_if_stale`` | that client keeps idle connections 15 s, the called service's uvicorn closes them after 5 s: a call on a just-closed one fails before any answer | bentoml/BentoML#4971 (fix proposed in #5698) |
| ``FRONT_SERVICE["runner_probe"]`` off, ``dependencies_ready`` | /readyz asks each dependency with a 5 s timeout (``_bentoml_impl/server/app.py``): a dead model service can hold it until the traffic timeout | bentoml/BentoML#3077 (probe timeout not configurable) |
| ``TRACING`` | every route is traced unless excluded, at a cost per request in every process | a cost, not a bug: ``excluded_urls``, bentoml/BentoML#2829 |
| ``fix_media_types`` | a root IO model's media type is derived from its JSON schema on every response (``_bentoml_sdk/io_models.py``, ``IOMixin.mime_type``) | none found: the schema never changes, so it is computed once |

Importing this module raises on any other BentoML version: check each workaround
against that version's code, then change ``BENTOML_VERSION``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import bentoml

from pipelines.serving.middleware import PREDICT_PATHS, QUIET_PATHS

T = TypeVar("T")
BENTOML_VERSION = "1.4.40"


def check_version(installed: str = bentoml.__version__) -> None:
    """Raise unless BentoML is the version these workarounds were written for."""
    if installed != BENTOML_VERSION:
        raise RuntimeError(
            f"BentoML {installed} is installed; pipelines/serving/bentoml_fixes.py works around "
            f"BentoML {BENTOML_VERSION}: check each workaround against the new version"
        )


check_version()

MODEL_ROUTES = frozenset({"/predict_gap", "/predict_logit", "/explain_gap", "/explain_logit"})
TRACING = {"excluded_urls": sorted(PREDICT_PATHS | MODEL_ROUTES | QUIET_PATHS | {"/health", "/"})}
"""Routes kept out of OpenTelemetry: every API route and probe."""

MODEL_SERVICE: dict[str, Any] = {
    "tracing": TRACING,
    "runner_connection": {"max_requests": 10**9, "max_age": 1e9},  # never recycle
}
"""Settings for a service other services call."""

FRONT_SERVICE: dict[str, Any] = {"tracing": TRACING, "runner_probe": {"enabled": False}}
"""Settings for the front service: readiness comes from ``dependencies_ready``."""


def stale_connection(exc: BaseException) -> bool:
    """The connection failed under the call (closed, reset, refused), not a timeout: the
    service never saw the call or never answered it, so sending it again is safe."""
    return isinstance(exc, aiohttp.ClientConnectionError) and not isinstance(exc, TimeoutError)


async def once_more_if_stale(
    call: Callable[[], Awaitable[T]], on_retry: Callable[[BaseException], None] | None = None
) -> T:
    """``await call()``, once more if the first attempt met a stale connection (a model
    call is a pure function of its rows; ``on_retry`` is told the error first)."""
    try:
        return await call()
    except Exception as exc:
        if not stale_connection(exc):
            raise
        if on_retry is not None:
            on_retry(exc)
    return await call()


async def dependencies_ready(*deps: Any, timeout_s: float = 1.0) -> bool:
    """Each model service answers its own /readyz within ``timeout_s`` (a dependency
    composed in-process, as in tests, has nothing to probe)."""
    for dep in deps:
        probe = getattr(dep, "is_ready", None)
        if probe is None:
            continue
        try:
            ask = functools.partial(probe, timeout_s)
            if not await asyncio.wait_for(once_more_if_stale(ask), timeout=timeout_s + 0.5):
                return False
        except Exception:
            return False
    return True


def fix_media_types(*services: Any) -> None:
    """Compute each API's response media type once, instead of on every response."""
    for svc in services:
        for api in svc.apis.values():
            spec = api.output_spec
            if spec.media_type is None:
                spec.media_type = spec.mime_type()
