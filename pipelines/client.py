"""Typed Python client for the F1 Prediction API (wraps BentoML's HTTP clients).

from pipelines.client import F1Client
with F1Client("http://localhost:3000") as f1:
    full = f1.predict_full({"event": {"season": 2025, "round": 8}})
    print(full.race_winner_predictions[0])

A server started with ``F1_API_KEY`` wants ``Authorization: Bearer <key>`` on predictions
and /model_info: pass ``token=...``, or leave it out and the client reads ``F1_API_KEY``
from the environment when it is created (the same variable the server reads).
"""

from __future__ import annotations

import json
import os
from typing import Any, TypeVar

import bentoml
import httpx
from bentoml.exceptions import BentoMLException
from pydantic import BaseModel, TypeAdapter

from pipelines.serving.schemas import (
    FullResponse,
    QualiPrediction,
    QualiRequest,
    RacePrediction,
    RaceRequest,
)

R = TypeVar("R", bound=BaseModel)
_QUALI = TypeAdapter(list[QualiPrediction])
_RACE = TypeAdapter(list[RacePrediction])


API_KEY_ENV = "F1_API_KEY"


class F1APIError(RuntimeError):
    """The server refused a request; ``detail`` lists each field and reason."""

    def __init__(self, status: int, error: str, detail: list[dict[str, Any]]) -> None:
        super().__init__(f"HTTP {status}: {error}")
        self.status = status
        self.error = error
        self.detail = detail


def _body(req: BaseModel | dict[str, Any], model: type[R]) -> dict[str, Any]:
    """Validate locally first (same models as the server), then send plain JSON."""
    obj = req if isinstance(req, model) else model.model_validate(req)
    return obj.model_dump(mode="json", exclude_none=True)


def _token(token: str | None) -> str:
    """The explicit token, else ``F1_API_KEY`` read now (not at import: a key exported
    after ``import pipelines.client`` counts), else "" (no header: BentoML's own default
    would send a BentoCloud key, ``BENTO_CLOUD_API_KEY``, to whatever server this is)."""
    if token is None:
        token = os.environ.get(API_KEY_ENV) or ""
    return token


def _get_error(resp: httpx.Response) -> F1APIError:
    try:
        payload = resp.json()
    except ValueError:
        return F1APIError(resp.status_code, resp.text or resp.reason_phrase, [])
    if not isinstance(payload, dict):
        return F1APIError(resp.status_code, str(payload), [])
    return F1APIError(
        resp.status_code,
        str(payload.get("error", resp.reason_phrase)),
        list(payload.get("detail") or []),
    )


def _get_json(resp: httpx.Response) -> dict[str, Any]:
    if resp.is_error:
        raise _get_error(resp)
    out: dict[str, Any] = resp.json()
    return out


def _api_error(exc: BentoMLException) -> F1APIError:
    status = int(getattr(exc.error_code, "value", 500))
    try:
        payload = json.loads(str(exc))
    except ValueError:
        return F1APIError(status, str(exc), [])
    if isinstance(payload, list) and payload:
        payload = payload[0]
    return F1APIError(status, str(payload.get("error", exc)), list(payload.get("detail", [])))


class F1Client:
    """Synchronous client: Pydantic models (or plain dicts) in, Pydantic models out.

    ``token``: the server's API key (``F1_API_KEY``); ``None`` reads ``F1_API_KEY``
    from the environment. It is sent as ``Authorization: Bearer`` on every request.
    """

    def __init__(
        self,
        url: str = "http://localhost:3000",
        timeout: float = 30.0,
        token: str | None = None,
    ) -> None:
        self._c = bentoml.SyncHTTPClient(url, timeout=timeout, token=_token(token))

    def __enter__(self) -> F1Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._c.close()

    def _post(self, name: str, body: dict[str, Any]) -> Any:
        try:
            return getattr(self._c, name)(body)
        except BentoMLException as exc:
            raise _api_error(exc) from None

    def predict_quali(self, req: QualiRequest | dict[str, Any]) -> list[QualiPrediction]:
        return _QUALI.validate_python(self._post("predict_quali", _body(req, QualiRequest)))

    def predict_race(self, req: RaceRequest | dict[str, Any]) -> list[RacePrediction]:
        return _RACE.validate_python(self._post("predict_race", _body(req, RaceRequest)))

    def predict_full(self, req: QualiRequest | dict[str, Any]) -> FullResponse:
        return FullResponse.model_validate(self._post("predict_full", _body(req, QualiRequest)))

    def _get(self, path: str) -> dict[str, Any]:
        # BentoML's httpx client: its default headers carry the Authorization header
        return _get_json(self._c.client.get(path))

    def health(self) -> dict[str, Any]:
        return self._get("/health")

    def model_info(self) -> dict[str, Any]:
        return self._get("/model_info")

    def is_ready(self) -> bool:
        return bool(self._c.is_ready())


class AsyncF1Client:
    """The same, for asyncio code (many requests in flight); use ``async with``."""

    def __init__(
        self,
        url: str = "http://localhost:3000",
        timeout: float = 30.0,
        token: str | None = None,
    ) -> None:
        self._c = bentoml.AsyncHTTPClient(url, timeout=timeout, token=_token(token))

    async def __aenter__(self) -> AsyncF1Client:
        await self._c.__aenter__()  # BentoML's async client opens its session here
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._c.close()

    async def _post(self, name: str, body: dict[str, Any]) -> Any:
        try:
            return await getattr(self._c, name)(body)
        except BentoMLException as exc:
            raise _api_error(exc) from None

    async def predict_quali(self, req: QualiRequest | dict[str, Any]) -> list[QualiPrediction]:
        return _QUALI.validate_python(await self._post("predict_quali", _body(req, QualiRequest)))

    async def predict_race(self, req: RaceRequest | dict[str, Any]) -> list[RacePrediction]:
        return _RACE.validate_python(await self._post("predict_race", _body(req, RaceRequest)))

    async def predict_full(self, req: QualiRequest | dict[str, Any]) -> FullResponse:
        return FullResponse.model_validate(
            await self._post("predict_full", _body(req, QualiRequest))
        )

    async def _get(self, path: str) -> dict[str, Any]:
        return _get_json(await self._c.client.get(path))

    async def health(self) -> dict[str, Any]:
        return await self._get("/health")

    async def model_info(self) -> dict[str, Any]:
        return await self._get("/model_info")

    async def is_ready(self) -> bool:
        return bool(await self._c.is_ready())
