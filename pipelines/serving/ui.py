"""The page at /ui: a few static files shipped in the Bento, served by the front."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from pipelines.serving.errors import ApiError

ASSETS = Path(__file__).with_name("ui_assets")
MEDIA = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
NAMES = frozenset({"index.html", "app.js", "style.css"})


@cache
def asset(name: str) -> bytes:
    """One of the page's files (only those: a name is never a path)."""
    if name not in NAMES:
        raise ApiError(404, "no such file", [{"loc": ["path", "name"], "msg": "not a page asset"}])
    return (ASSETS / name).read_bytes()


def media_type(name: str) -> str:
    return MEDIA[Path(name).suffix]
