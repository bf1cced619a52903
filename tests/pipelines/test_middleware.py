"""The front service's ASGI middlewares, each on a tiny in-memory app."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from pipelines.middleware import (
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    ErrorBodyMiddleware,
    LoadShedMiddleware,
    clean_error_body,
)


async def echo(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(len(await request.body())))


def app_with(mw: type, **kw: Any) -> Starlette:
    app = Starlette(routes=[Route("/predict_full", echo, methods=["POST"]),
                            Route("/health", echo, methods=["GET", "POST"])])  # fmt: skip
    app.add_middleware(mw, **kw)
    return app


def test_api_key_required_only_on_protected_paths() -> None:
    c = TestClient(app_with(ApiKeyMiddleware, api_key="k3y"))
    assert c.post("/predict_full").status_code == 401
    r = c.post("/predict_full", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["detail"][0]["loc"] == ["header", "authorization"]
    assert c.post("/predict_full", headers={"Authorization": "Bearer k3y"}).status_code == 200
    assert c.post("/predict_full", headers={"Authorization": "bearer k3y"}).status_code == 200
    assert c.get("/health").status_code == 200  # probes stay open
    assert c.options("/predict_full").status_code != 401  # CORS preflight: no credentials


def test_no_api_key_configured_means_open() -> None:
    c = TestClient(app_with(ApiKeyMiddleware, api_key=None))
    assert c.post("/predict_full").status_code == 200


def test_body_limit_by_header_and_by_stream() -> None:
    c = TestClient(app_with(BodyLimitMiddleware, max_bytes=100))
    assert c.post("/predict_full", content=b"x" * 100).text == "100"
    r = c.post("/predict_full", content=b"x" * 101)
    assert r.status_code == 413 and r.json()["detail"][0]["loc"] == ["body"]

    def chunks() -> Any:
        for _ in range(5):
            yield b"y" * 30  # no Content-Length: streamed

    assert c.post("/predict_full", content=chunks()).status_code == 413


def test_load_shed_answers_503_with_retry_after_past_the_limit() -> None:
    gate = asyncio.Event()

    async def slow(request: Request) -> PlainTextResponse:
        await gate.wait()
        return PlainTextResponse("ok")

    inner = Starlette(routes=[Route("/predict_full", slow, methods=["POST"])])
    mw = LoadShedMiddleware(inner, max_in_flight=2)
    sent: list[dict[str, Any]] = []

    async def call() -> int:
        status = 0

        async def send(msg: Any) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
                sent.append(msg)

        async def receive() -> Any:
            return {"type": "http.request", "body": b"", "more_body": False}

        scope = {"type": "http", "method": "POST", "path": "/predict_full", "headers": [],
                 "query_string": b"", "root_path": ""}  # fmt: skip
        await mw(scope, receive, send)
        return status

    async def main() -> list[int]:
        tasks = [asyncio.create_task(call()) for _ in range(5)]
        await asyncio.sleep(0.05)
        assert mw.in_flight == 2
        gate.set()
        return await asyncio.gather(*tasks)

    codes = asyncio.run(main())
    assert sorted(codes) == [200, 200, 503, 503, 503]
    assert mw.in_flight == 0 and mw.shed == 3
    shed = [m for m in sent if m["status"] == 503]
    assert all((b"retry-after", b"1") in m["headers"] for m in shed)


def test_error_bodies_lose_library_urls_and_5xx_details() -> None:
    async def bad(request: Request) -> JSONResponse:
        kind = request.query_params["k"]
        if kind == "400":
            return JSONResponse({"error": "2 validation errors for QualiRequestIODescriptor",
                                 "detail": [{"type": "x", "loc": ["drivers"], "msg": "m",
                                             "url": "https://errors.pydantic.dev/2.14/v/x",
                                             "input": "secret"}]}, status_code=400)  # fmt: skip
        if kind == "tuple":
            return JSONResponse([{"error": "unknown"}], status_code=422)
        return JSONResponse({"error": "Traceback ... /work/main/service.py"}, status_code=500)

    app = Starlette(routes=[Route("/predict_full", bad, methods=["POST"])])
    app.add_middleware(ErrorBodyMiddleware)
    c = TestClient(app)
    r = c.post("/predict_full?k=400")
    assert r.status_code == 400
    assert "pydantic" not in r.text and "IODescriptor" not in r.text and "secret" not in r.text
    assert r.json()["detail"] == [{"type": "x", "loc": ["drivers"], "msg": "m"}]
    assert int(r.headers["content-length"]) == len(r.content)
    assert c.post("/predict_full?k=tuple").json() == {"error": "unknown"}
    r5 = c.post("/predict_full?k=500")
    assert r5.status_code == 500 and "Traceback" not in r5.text and "/work" not in r5.text


def test_clean_error_body_keeps_loc_and_msg() -> None:
    body = clean_error_body(
        {"error": "1 validation error for X", "detail": [{"loc": [1], "msg": "m", "url": "u"}]}
    )
    assert body == {
        "error": "1 validation error in the request body",
        "detail": [{"loc": [1], "msg": "m"}],
    }
    assert json.dumps(body)
