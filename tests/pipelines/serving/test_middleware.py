"""The front service's ASGI middlewares, each on a tiny in-memory app."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from pipelines.serving.middleware import (
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    ErrorBodyMiddleware,
    LoadShedMiddleware,
    RequestIdMiddleware,
    SpecAliasMiddleware,
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
    assert mw.in_flight == 0
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


def test_a_503_keeps_its_reason_and_gets_retry_after() -> None:
    """The model-service-unavailable body reaches the client (it was rewritten into
    "internal error" before), and BentoML's own 503s get a message and Retry-After."""

    async def unavailable(request: Request) -> JSONResponse:
        if request.query_params.get("k") == "ours":
            return JSONResponse({"error": "the stage-1 model service is unavailable: try again "
                                 "shortly", "detail": []}, status_code=503,
                                headers={"Retry-After": "2"})  # fmt: skip
        return JSONResponse({"error": "Not able to process the request"}, status_code=503)

    app = Starlette(routes=[Route("/predict_full", unavailable, methods=["POST"])])
    app.add_middleware(ErrorBodyMiddleware)
    c = TestClient(app)
    ours = c.post("/predict_full?k=ours")
    assert ours.status_code == 503 and "model service is unavailable" in ours.json()["error"]
    assert ours.headers["retry-after"] == "2"
    theirs = c.post("/predict_full")
    assert theirs.status_code == 503 and "try again" in theirs.json()["error"]
    assert theirs.headers["retry-after"] == "2" and theirs.json()["detail"] == []


def test_docs_json_serves_the_same_document_as_openapi_json() -> None:
    async def spec(request: Request) -> JSONResponse:
        return JSONResponse({"served": request.url.path})

    async def theirs(request: Request) -> JSONResponse:
        return JSONResponse({"served": "bentoml"})

    app = Starlette(routes=[Route("/openapi.json", spec), Route("/docs.json", theirs)])
    app.add_middleware(SpecAliasMiddleware)
    c = TestClient(app)
    assert (
        c.get("/docs.json").json() == c.get("/openapi.json").json() == {"served": "/openapi.json"}
    )


def test_access_line_says_why_a_request_was_refused(caplog: Any) -> None:
    """A 4xx is one WARNING access line with the field and reason (escaped), no traceback."""

    async def refuse(request: Request) -> JSONResponse:
        return JSONResponse({"error": "bad body", "detail": [
            {"loc": ["body", "drivers", 0, "a\r\nb"], "msg": "nope \u2603"}]},
            status_code=400)  # fmt: skip

    app = Starlette(routes=[Route("/predict_full", refuse, methods=["POST"]),
                            Route("/health", echo, methods=["GET"])])  # fmt: skip
    app.add_middleware(ErrorBodyMiddleware)
    app.add_middleware(ApiKeyMiddleware, api_key="k")
    app.add_middleware(RequestIdMiddleware)
    c = TestClient(app)
    with caplog.at_level(logging.INFO, logger="f1.access"):
        c.post("/predict_full", headers={"Authorization": "Bearer k"})
        c.post("/predict_full")
        c.get("/health")
    lines = [r for r in caplog.records if r.name == "f1.access"]
    assert [(r.levelname, r.status) for r in lines] == [  # type: ignore[attr-defined]
        ("WARNING", 400), ("WARNING", 401), ("INFO", 200)]  # fmt: skip
    first = lines[0].getMessage()
    assert "drivers.0" in first and "nope" in first
    assert "\r" not in first and "\n" not in first and first.isascii()
    assert "authorization" in lines[1].getMessage()
    assert not any(r.exc_info for r in caplog.records)
