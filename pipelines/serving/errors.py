"""Typed errors: an answer other than 200, carrying its status, body and headers (each
records itself for ``ErrorBodyMiddleware``: BentoML answers with a bare status)."""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from bentoml.exceptions import BentoMLException

if TYPE_CHECKING:
    from fastapi import FastAPI

RAISED: contextvars.ContextVar[list[ApiError] | None] = contextvars.ContextVar(
    "f1_raised", default=None
)
"""The errors created while handling the current request (set by ErrorBodyMiddleware)."""


class ApiError(BentoMLException):
    """A refused or failed request: status, a message, where (``detail``), headers."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: Sequence[dict[str, Any]] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.error_code = HTTPStatus(status)  # the status BentoML answers with
        self.status = status
        self.error = error
        self.detail = list(detail)
        self.headers = dict(headers or {})
        raised = RAISED.get()
        if raised is not None:
            raised.append(self)

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "detail": self.detail}


class RequestError(ApiError):
    """A well-formed request that cannot be answered (HTTP 422), naming the field."""

    def __init__(self, loc: Sequence[str | int], msg: str) -> None:
        where = ".".join(map(str, loc))
        super().__init__(422, f"{where}: {msg}", [{"loc": ["body", *loc], "msg": msg}])


class StageUnavailable(ApiError):
    """A model service did not answer (restarting, crashed, hung): retry shortly."""

    def __init__(self, stage: str, retry_after_s: int = 2) -> None:
        super().__init__(
            503,
            f"the {stage} model service is unavailable: try again shortly",
            headers={"Retry-After": str(retry_after_s)},
        )


def add_error_handlers(app: FastAPI) -> None:
    """The GET routes' errors in the same shape: an ``ApiError`` its own body, a bad
    query or path parameter 400 naming it."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        detail = [{"loc": list(e.get("loc", [])), "msg": str(e.get("msg", ""))} for e in errors]
        return JSONResponse(
            {"error": "invalid request parameter", "detail": detail}, status_code=400
        )
