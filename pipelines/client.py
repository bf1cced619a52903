"""Typed Python client for the F1 Prediction API (httpx, sync and async).

from pipelines.client import F1Client
with F1Client("http://localhost:3000") as f1:
    full = f1.predict_full({"event": {"season": 2025, "round": 8}})
    print(full.race_winner_predictions[0])

A request is checked locally with the server's own models first, so what the server
would refuse (a wrong type, a field out of range) raises before anything is sent.
Errors:

- ``F1APIError``: the request was refused (status, error, detail, request id, body).
- ``F1ConnectionError``: no server answered at the URL (nothing listening, timeout).

Both derive from ``F1Error``. A server started with ``F1_API_KEY`` wants
``Authorization: Bearer <key>`` on predictions and /model_info: pass ``token=...``, or
leave it out and the client reads ``F1_API_KEY`` from the environment when it is created.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

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
DEFAULT_URL = "http://localhost:3000"


class F1Error(RuntimeError):
    """Anything the client raises about a call: catch this to catch them all."""


class F1APIError(F1Error):
    """The request was refused: HTTP status, the error, ``detail`` (each field and
    reason), the server's request id and the parsed body.

    A request the server would refuse (a wrong type, a value out of range) is refused
    before it is sent: status 400, the detail the server would give, no request id.
    """

    def __init__(
        self,
        status: int,
        error: str,
        detail: list[dict[str, Any]],
        request_id: str | None = None,
        body: Any = None,
    ) -> None:
        where = f" (request id {request_id})" if request_id else ""
        super().__init__(f"HTTP {status}: {error}{where}")
        self.status = status
        self.error = error
        self.detail = detail
        self.request_id = request_id
        self.body = body


class F1ConnectionError(F1Error, ConnectionError):
    """No F1 Predictor answered at the URL: nothing listening, or no answer in time."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(reason)
        self.url = url


def _token(token: str | None) -> str:
    """The explicit token, else ``F1_API_KEY`` read now (not at import: a key exported
    after ``import pipelines.client`` counts), else "" (no header)."""
    if token is None:
        token = os.environ.get(API_KEY_ENV) or ""
    return token


def _http_args(url: str, timeout: float, token: str | None) -> dict[str, Any]:
    key = _token(token)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return {"base_url": url, "timeout": timeout, "headers": headers}


def _body(req: BaseModel | dict[str, Any], model: type[R]) -> dict[str, Any]:
    """Validate locally with the server's models, then send plain JSON."""
    try:
        obj = req if isinstance(req, model) else model.model_validate(req)
    except ValidationError as exc:
        detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        n = exc.error_count()
        error = f"{n} validation error{'s' if n > 1 else ''} in the request body"
        raise F1APIError(400, error, detail, body={"error": error, "detail": detail}) from None
    return obj.model_dump(mode="json", exclude_none=True)


def _api_error(resp: httpx.Response) -> F1APIError:
    """The error the server sent: its ``{"error", "detail"}`` body, status and request id."""
    rid = resp.headers.get("x-request-id")
    try:
        body: Any = resp.json()
    except ValueError:
        return F1APIError(resp.status_code, resp.text or resp.reason_phrase, [], rid, resp.text)
    if not isinstance(body, dict):
        return F1APIError(resp.status_code, str(body), [], rid, body)
    detail = body.get("detail")
    return F1APIError(
        resp.status_code,
        str(body.get("error") or resp.reason_phrase),
        detail if isinstance(detail, list) else [],
        rid,
        body,
    )


def _json(resp: httpx.Response) -> Any:
    if resp.is_error:
        raise _api_error(resp)
    return resp.json()


def _unreachable(url: str, exc: httpx.TransportError) -> F1ConnectionError:
    if isinstance(exc, httpx.ConnectError):
        reason = f"no F1 Predictor answering at {url}: start it with `make serve`"
    elif isinstance(exc, httpx.TimeoutException):
        reason = f"the F1 Predictor at {url} did not answer in time ({type(exc).__name__})"
    else:
        reason = f"the connection to the F1 Predictor at {url} failed ({type(exc).__name__})"
    return F1ConnectionError(url, reason)


class F1Client:
    """Synchronous client: Pydantic models (or plain dicts) in, Pydantic models out.

    ``token``: the server's API key (``F1_API_KEY``); ``None`` reads ``F1_API_KEY``
    from the environment. It is sent as ``Authorization: Bearer`` on every request.
    """

    def __init__(
        self, url: str = DEFAULT_URL, timeout: float = 30.0, token: str | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(**_http_args(self.url, timeout, token))

    def __enter__(self) -> F1Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            resp = self._http.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from None
        return _json(resp)

    def predict_quali(self, req: QualiRequest | dict[str, Any]) -> list[QualiPrediction]:
        body = _body(req, QualiRequest)
        return _QUALI.validate_python(self._send("POST", "/predict_quali", body))

    def predict_race(self, req: RaceRequest | dict[str, Any]) -> list[RacePrediction]:
        body = _body(req, RaceRequest)
        return _RACE.validate_python(self._send("POST", "/predict_race", body))

    def predict_full(self, req: QualiRequest | dict[str, Any]) -> FullResponse:
        body = _body(req, QualiRequest)
        return FullResponse.model_validate(self._send("POST", "/predict_full", body))

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = self._send("GET", "/health")
        return out

    def model_info(self) -> dict[str, Any]:
        out: dict[str, Any] = self._send("GET", "/model_info")
        return out

    def is_ready(self) -> bool:
        """True when the server answers /readyz with 200; False otherwise, also when no
        server answers at all (a probe, not a call)."""
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False


class AsyncF1Client:
    """The same, for asyncio code (many requests in flight); use ``async with``."""

    def __init__(
        self, url: str = DEFAULT_URL, timeout: float = 30.0, token: str | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(**_http_args(self.url, timeout, token))

    async def __aenter__(self) -> AsyncF1Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            resp = await self._http.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from None
        return _json(resp)

    async def predict_quali(self, req: QualiRequest | dict[str, Any]) -> list[QualiPrediction]:
        body = _body(req, QualiRequest)
        return _QUALI.validate_python(await self._send("POST", "/predict_quali", body))

    async def predict_race(self, req: RaceRequest | dict[str, Any]) -> list[RacePrediction]:
        body = _body(req, RaceRequest)
        return _RACE.validate_python(await self._send("POST", "/predict_race", body))

    async def predict_full(self, req: QualiRequest | dict[str, Any]) -> FullResponse:
        body = _body(req, QualiRequest)
        return FullResponse.model_validate(await self._send("POST", "/predict_full", body))

    async def health(self) -> dict[str, Any]:
        out: dict[str, Any] = await self._send("GET", "/health")
        return out

    async def model_info(self) -> dict[str, Any]:
        out: dict[str, Any] = await self._send("GET", "/model_info")
        return out

    async def is_ready(self) -> bool:
        """True when the server answers /readyz with 200; False otherwise."""
        try:
            return (await self._http.get("/readyz")).status_code == 200
        except httpx.TransportError:
            return False
