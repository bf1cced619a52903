"""The page at /ui and the API docs at /docs: static files shipped in the Bento."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from pipelines.serving.errors import ApiError

ASSETS = Path(__file__).with_name("ui_assets")
MEDIA = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
"""The page's files (only those: a name is never a path) and their media types."""


@cache
def asset(name: str) -> bytes:
    if name not in MEDIA:
        raise ApiError(404, "no such file", [{"loc": ["path", "name"], "msg": "not a page asset"}])
    return (ASSETS / name).read_bytes()


router = APIRouter(include_in_schema=False)


@router.get("/ui")
def page() -> HTMLResponse:
    """The forecast page (no internet needed: every asset comes from here)."""
    return HTMLResponse(asset("index.html"))


@router.get("/ui/{name}")
def page_file(name: str) -> Response:
    return Response(asset(name), media_type=MEDIA[name])


@router.get("/docs")
def docs() -> HTMLResponse:
    """Swagger UI over /openapi.json, from BentoML's bundled files: no internet needed."""
    return HTMLResponse((ASSETS / "docs.html").read_bytes())
