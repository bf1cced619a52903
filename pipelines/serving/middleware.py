"""ASGI middlewares for the public front service: who may call, how much, and what an
error body may say. Pure ASGI (no framework state), so each is tested on a tiny app."""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from pipelines.serving.text import quote

if TYPE_CHECKING:
    from pipelines.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PREDICT_PATHS = frozenset({"/predict_quali", "/predict_race", "/predict_full"})
QUIET_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics"})  # probes: no access line
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
access_log = logging.getLogger("f1.access")
ERROR_KEY = "f1.error"
"""Scope key where a middleware leaves an error response's reason for the access line."""


def _escape(text: str, limit: int = 200) -> str:
    """Text from a request (a path, a reason quoting it) made safe for one log line."""
    return quote(text, limit)[1:-1]


def _reason(body: dict[str, Any]) -> str:
    """One line saying why a request was refused: the error and the first field named."""
    reason = str(body.get("error", ""))
    detail = body.get("detail")
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        loc = ".".join(str(p) for p in detail[0].get("loc", []))
        reason += f" [{loc}: {detail[0].get('msg', '')}]"
    return reason


async def _json(
    scope: Scope,
    send: Send,
    status: int,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> None:
    scope[ERROR_KEY] = _reason(body)
    raw = json.dumps(body).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    hdrs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": raw})


async def _refuse(
    scope: Scope,
    send: Send,
    status: int,
    error: str,
    loc: list[str],
    msg: str,
    headers: dict[str, str] | None = None,
) -> None:
    """An error answer whose detail names one place in the request (``loc``)."""
    body = {"error": error, "detail": [{"loc": loc, "msg": msg}]}
    await _json(scope, send, status, body, headers)


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k.lower() == name:
            return str(v.decode("latin-1"))
    return None


class _Middleware:
    """Pure ASGI around ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app


class RequestIdMiddleware(_Middleware):
    """Give every request an id (a caller's valid ``X-Request-ID``, else a new one), echo
    it in the response, tag the request's log lines with it and write one access line."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from pipelines.serving.logs import REQUEST_ID

        given = _header(scope, b"x-request-id")
        rid = given if given and _REQUEST_ID.match(given) else os.urandom(8).hex()
        token = REQUEST_ID.set(rid)
        t0 = time.perf_counter()
        status = 500

        async def send_with_id(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = int(msg["status"])
                msg["headers"] = [*msg.get("headers", []), (b"x-request-id", rid.encode())]
            await send(msg)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if scope["path"] not in QUIET_PATHS:
                self._access_line(scope, status, t0)
            REQUEST_ID.reset(token)

    @staticmethod
    def _access_line(scope: Scope, status: int, t0: float) -> None:
        """One line per request; a refused one (4xx) says why at WARNING, no traceback."""
        path = _escape(scope["path"])
        method = _escape(str(scope.get("method")), 16)
        extra: dict[str, Any] = {
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round((time.perf_counter() - t0) * 1000, 3),
        }
        if status >= 400:
            extra["reason"] = _escape(str(scope.get(ERROR_KEY, "")))
            access_log.warning("%s %s %d %s", method, path, status, extra["reason"], extra=extra)
        else:
            access_log.info("%s %s %d", method, path, status, extra=extra)


class ApiKeyMiddleware(_Middleware):
    """With a key configured, predictions and /model_info need ``Authorization: Bearer``
    (compared in constant time); probes stay open so orchestrators can watch."""

    PROTECTED = PREDICT_PATHS | {"/model_info"}

    def __init__(self, app: ASGIApp, api_key: str | None):
        self.app = app
        self.key = api_key.encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.key is None or scope["type"] != "http" or scope["path"] not in self.PROTECTED:
            return await self.app(scope, receive, send)
        if scope.get("method") == "OPTIONS":  # CORS preflights carry no credentials
            return await self.app(scope, receive, send)
        auth = _header(scope, b"authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.key):
            return await self.app(scope, receive, send)
        await _refuse(
            scope,
            send,
            401,
            "missing or invalid API key",
            ["header", "authorization"],
            "expected 'Bearer <key>'",
            {"www-authenticate": "Bearer"},
        )


class BodyLimitMiddleware(_Middleware):
    """Refuse request bodies over ``max_bytes`` with 413 before the app parses them: the
    body is read (up to the limit) and replayed, so a chunked upload is capped too."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large(scope, send)
        body = bytearray()
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body += msg.get("body", b"")
            if len(body) > self.max_bytes:
                return await self._too_large(scope, send)
            if not msg.get("more_body", False):
                break
        first = [{"type": "http.request", "body": bytes(body), "more_body": False}]

        async def replay() -> Message:
            return first.pop() if first else await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        error = f"request body larger than {self.max_bytes} bytes"
        await _refuse(scope, send, 413, error, ["body"], f"at most {self.max_bytes} bytes")


class LoadShedMiddleware(_Middleware):
    """Bound the work in flight: past ``max_in_flight`` prediction requests, answer 503
    with Retry-After at once instead of queueing without limit."""

    def __init__(self, app: ASGIApp, max_in_flight: int):
        self.app = app
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in PREDICT_PATHS:
            return await self.app(scope, receive, send)
        if self.in_flight >= self.max_in_flight:
            body = {"error": "overloaded: try again shortly", "detail": []}
            return await _json(scope, send, 503, body, {"retry-after": "1"})
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class SpecAliasMiddleware(_Middleware):
    """Serve the project's one OpenAPI document at BentoML's ``/docs.json`` too, instead
    of BentoML's own, which declares other error bodies."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/docs.json":
            scope = dict(scope, path="/openapi.json", raw_path=b"/openapi.json")
        await self.app(scope, receive, send)


_PYDANTIC_TITLE = re.compile(r"validation errors? for \w+")


def clean_error_body(body: dict[str, Any]) -> dict[str, Any]:
    """Drop what an error body must not carry: library URLs (they name versions), inputs,
    internal class names."""
    out = dict(body)
    if isinstance(out.get("error"), str):
        out["error"] = _PYDANTIC_TITLE.sub("validation error in the request body", out["error"])
    detail = out.get("detail")
    if isinstance(detail, list):
        out["detail"] = [
            {k: v for k, v in d.items() if k in ("loc", "msg", "type")}
            if isinstance(d, dict)
            else d
            for d in detail
        ]
    return out


UNAVAILABLE = "service unavailable: try again after Retry-After seconds"


class ErrorBodyMiddleware(_Middleware):
    """Rewrite 4xx/5xx bodies on the API paths through ``clean_error_body``: a raised
    ``ApiError`` gets its own body and headers back; a 503 always carries Retry-After;
    any other 5xx says only that the server log has the details."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in PREDICT_PATHS:
            return await self.app(scope, receive, send)
        from pipelines.serving.errors import RAISED, ApiError

        raised: list[ApiError] = []
        token = RAISED.set(raised)
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(msg: Message) -> None:
            nonlocal start
            if msg["type"] == "http.response.start":
                start = msg if msg["status"] >= 400 else None
            if start is None:
                return await send(msg)
            chunks.append(msg.get("body", b""))
            if msg is start or msg.get("more_body", False):
                return
            status = int(start["status"])
            raw = b"".join(chunks)
            try:
                body = json.loads(raw)
            except ValueError:
                body = {"error": raw.decode("utf-8", "replace")[:500]}
            if isinstance(body, list) and body and isinstance(body[0], dict):
                body = body[0]  # BentoML wraps some errors in a 1-tuple
            if not isinstance(body, dict):
                body = {"error": str(body)[:500]}
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            typed = next((e for e in reversed(raised) if e.status == status), None)
            if typed is not None:  # an ApiError the endpoint raised: its own body and headers
                body = typed.body()
                headers += [(k.lower().encode(), v.encode()) for k, v in typed.headers.items()]
            if status == 503:
                ours = isinstance(body.get("error"), str) and isinstance(body.get("detail"), list)
                body = body if ours else {"error": UNAVAILABLE, "detail": []}
                if not any(k.lower() == b"retry-after" for k, _ in headers):
                    headers.append((b"retry-after", b"2"))
            elif status >= 500:
                body = {"error": "internal error: the server log has the details", "detail": []}
            body = clean_error_body(body)
            scope[ERROR_KEY] = _reason(body)
            new = json.dumps(body).encode()
            headers.append((b"content-length", str(len(new)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": new})

        try:
            await self.app(scope, receive, capture)
        finally:
            RAISED.reset(token)


class JsonBodyMiddleware(_Middleware):
    """Prediction bodies are JSON (the schema declares no other): a POST declaring another
    Content-Type gets 415 (BentoML would parse a form its own way); none is read as JSON."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in PREDICT_PATHS:
            return await self.app(scope, receive, send)
        declared = _header(scope, b"content-type")
        media = (declared or "").split(";", 1)[0].strip().lower()
        if scope.get("method") != "POST" or declared is None or media == "application/json":
            return await self.app(scope, receive, send)
        error = "send the body as JSON (Content-Type: application/json)"
        where = ["header", "content-type"]
        await _refuse(scope, send, 415, error, where, "expected application/json")


class NotFoundBodyMiddleware(_Middleware):
    """A path no route serves (a path parameter holding "/" too) answers 404 in the API's
    error shape, not the router's plain "Not Found"; the path is not echoed."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        replaced = False

        async def send_json_404(msg: Message) -> None:
            nonlocal replaced
            if msg["type"] == "http.response.start" and msg["status"] == 404:
                media = dict(msg.get("headers", [])).get(b"content-type", b"")
                replaced = media.startswith(b"text/plain")
            if not replaced:
                return await send(msg)
            if msg["type"] == "http.response.body" and not msg.get("more_body", False):
                await _refuse(
                    scope, send, 404, "no such path", ["path"], "no route serves this path"
                )

        await self.app(scope, receive, send_json_404)


def add_middlewares(service: Any, settings: Settings) -> None:
    """The front's middlewares, outermost first (CORS first: a browser reads our own 401,
    413 and 503 too)."""
    if settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        service.add_asgi_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", "x-request-id"],
            expose_headers=["x-request-id", "x-f1-warnings", "retry-after"],
        )
    service.add_asgi_middleware(RequestIdMiddleware)
    service.add_asgi_middleware(SpecAliasMiddleware)
    service.add_asgi_middleware(NotFoundBodyMiddleware)
    service.add_asgi_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    service.add_asgi_middleware(JsonBodyMiddleware)
    service.add_asgi_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    service.add_asgi_middleware(LoadShedMiddleware, max_in_flight=settings.max_in_flight)
    service.add_asgi_middleware(ErrorBodyMiddleware)
