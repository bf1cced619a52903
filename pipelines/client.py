"""Typed Python client for the F1 Prediction API (httpx, sync and async). A request is
checked locally with the server's own models first. Errors derive from ``F1Error``:
``F1APIError`` (refused), ``F1ConnectionError`` (no server answered). ``token`` (default:
the environment's ``F1_API_KEY``) is sent as ``Authorization: Bearer``."""

from __future__ import annotations

import os
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from pipelines.serving.schemas import (
    FullResponse,
    QualiPrediction,
    QualiRequest,
    RacePrediction,
    RaceRequest,
)

H = TypeVar("H", httpx.Client, httpx.AsyncClient)
_QUALI = TypeAdapter(list[QualiPrediction])
_RACE = TypeAdapter(list[RacePrediction])

API_KEY_ENV = "F1_API_KEY"
DEFAULT_URL = "http://localhost:3000"


class F1Error(RuntimeError):
    """Anything the client raises about a call: catch this to catch them all."""


class F1APIError(F1Error):
    """Refused: the HTTP status, the error, ``detail`` (each field and reason), the request
    id and the parsed body (refused locally: status 400, the server's detail, no id)."""

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


def _body(req: Any, model: type[BaseModel]) -> dict[str, Any]:
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


class _Client(Generic[H]):
    """The URL and the HTTP client, with the API key as a bearer token."""

    _http_class: type[H]

    def __init__(
        self, url: str = DEFAULT_URL, timeout: float = 30.0, token: str | None = None
    ) -> None:
        self.url = url.rstrip("/")
        if token is None:  # read now, not at import: a key exported after the import counts
            token = os.environ.get(API_KEY_ENV) or ""
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        self._http: H = self._http_class(base_url=self.url, timeout=timeout, headers=auth)


class F1Client(_Client[httpx.Client]):
    """Synchronous client: Pydantic models (or plain dicts) in, Pydantic models out."""

    _http_class = httpx.Client

    def __enter__(self) -> F1Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, path: str, req: Any = None, model: type[BaseModel] | None = None) -> Any:
        body = None if model is None else _body(req, model)
        try:
            resp = self._http.request("GET" if body is None else "POST", path, json=body)
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from None
        return _json(resp)

    def predict_quali(self, req: QualiRequest | dict[str, Any]) -> list[QualiPrediction]:
        return _QUALI.validate_python(self._send("/predict_quali", req, QualiRequest))

    def predict_race(self, req: RaceRequest | dict[str, Any]) -> list[RacePrediction]:
        return _RACE.validate_python(self._send("/predict_race", req, RaceRequest))

    def predict_full(self, req: QualiRequest | dict[str, Any]) -> FullResponse:
        return FullResponse.model_validate(self._send("/predict_full", req, QualiRequest))

    def health(self) -> dict[str, Any]:
        return dict(self._send("/health"))

    def model_info(self) -> dict[str, Any]:
        return dict(self._send("/model_info"))

    def is_ready(self) -> bool:
        """True when the server answers /readyz with 200; False otherwise, also when no
        server answers at all (a probe, not a call)."""
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False


class AsyncF1Client(_Client[httpx.AsyncClient]):
    """The same, for asyncio code (many requests in flight); use ``async with``."""

    _http_class = httpx.AsyncClient

    async def __aenter__(self) -> AsyncF1Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _send(self, path: str, req: Any = None, model: type[BaseModel] | None = None) -> Any:
        body = None if model is None else _body(req, model)
        try:
            resp = await self._http.request("GET" if body is None else "POST", path, json=body)
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from None
        return _json(resp)

    async def predict_quali(self, req: QualiRequest | dict[str, Any]) -> list[QualiPrediction]:
        return _QUALI.validate_python(await self._send("/predict_quali", req, QualiRequest))

    async def predict_race(self, req: RaceRequest | dict[str, Any]) -> list[RacePrediction]:
        return _RACE.validate_python(await self._send("/predict_race", req, RaceRequest))

    async def predict_full(self, req: QualiRequest | dict[str, Any]) -> FullResponse:
        return FullResponse.model_validate(await self._send("/predict_full", req, QualiRequest))

    async def health(self) -> dict[str, Any]:
        return dict(await self._send("/health"))

    async def model_info(self) -> dict[str, Any]:
        return dict(await self._send("/model_info"))

    async def is_ready(self) -> bool:
        """True when the server answers /readyz with 200; False otherwise."""
        try:
            return (await self._http.get("/readyz")).status_code == 200
        except httpx.TransportError:
            return False
