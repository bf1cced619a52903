"""A path no route serves is a JSON 404 in the API's error shape."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, Router
from starlette.testclient import TestClient

from pipelines.serving.middleware import NotFoundBodyMiddleware


async def hello(_: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


async def no_event(_: Request) -> JSONResponse:
    return JSONResponse({"error": "no such event", "detail": []}, status_code=404)


def client() -> TestClient:
    router = Router(routes=[Route("/hello", hello), Route("/events/{season}", no_event)])
    return TestClient(NotFoundBodyMiddleware(router))


def test_an_unknown_path_is_a_json_404_that_does_not_echo_it() -> None:
    r = client().get("/nowhere/\u00e9%2Fx")
    assert r.status_code == 404 and r.headers["content-type"] == "application/json"
    assert r.json() == {"error": "no such path",
                        "detail": [{"loc": ["path"], "msg": "no route serves this path"}]}  # fmt: skip
    assert "nowhere" not in r.text


def test_other_answers_pass_unchanged() -> None:
    c = client()
    assert c.get("/hello").text == "hello"
    own = c.get("/events/1999")
    assert own.status_code == 404 and own.json()["error"] == "no such event"


def test_it_wraps_a_starlette_app_too() -> None:
    app = Starlette(routes=[Route("/hello", hello)])
    app.add_middleware(NotFoundBodyMiddleware)
    assert TestClient(app).get("/x").json()["error"] == "no such path"
