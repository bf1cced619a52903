"""Prediction bodies are JSON: another declared media type is a 415 naming the header."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from pipelines.serving.middleware import JsonBodyMiddleware


async def echo(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(len(await request.body())))


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = Starlette(routes=[Route("/predict_full", echo, methods=["POST"]),
                            Route("/health", echo, methods=["GET", "POST"])])  # fmt: skip
    app.add_middleware(JsonBodyMiddleware)
    return TestClient(app)


@pytest.mark.parametrize(
    "media",
    ["multipart/form-data", "multipart/form-data; boundary=x", "text/plain",
     "application/x-www-form-urlencoded", "application/jsonx", ""],
)  # fmt: skip
def test_a_prediction_body_declared_as_another_media_type_is_415(
    client: TestClient, media: str
) -> None:
    r = client.post("/predict_full", content=b"{}", headers={"content-type": media})
    assert r.status_code == 415, r.text
    assert r.json()["detail"] == [
        {"loc": ["header", "content-type"], "msg": "expected application/json"}
    ]


@pytest.mark.parametrize("media", ["application/json", "Application/JSON; charset=utf-8", None])
def test_json_or_no_declared_type_goes_through(client: TestClient, media: str | None) -> None:
    headers = {} if media is None else {"content-type": media}
    assert client.post("/predict_full", content=b"{}", headers=headers).text == "2"


def test_other_paths_are_left_alone(client: TestClient) -> None:
    r = client.post("/health", content=b"abc", headers={"content-type": "text/plain"})
    assert r.status_code == 200 and r.text == "3"
