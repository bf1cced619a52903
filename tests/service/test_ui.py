"""The page's API (/events) and its assets, over HTTP against `bentoml serve`."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.slow

SEASON, ROUND = 2025, 8


def test_the_page_needs_no_internet(server: str) -> None:
    """Every asset comes from the Bento: no CDN, no external URL in the page."""
    html = httpx.get(f"{server}/ui", timeout=10).text
    for name in ("/ui/app.js", "/ui/style.css"):
        assert name in html
        assert httpx.get(f"{server}{name}", timeout=10).status_code == 200
    page = html + httpx.get(f"{server}/ui/app.js", timeout=10).text
    assert "http://" not in page and "https://" not in page
    assert httpx.get(f"{server}/ui/..%2Fservice.py", timeout=10).status_code == 404
    assert httpx.get(f"{server}/ui/secret.txt", timeout=10).status_code == 404


def test_events_endpoints(server: str) -> None:
    cal = httpx.get(f"{server}/events", params={"season": SEASON}, timeout=10).json()
    assert cal["season"] == SEASON and len(cal["events"]) == 24
    monaco = next(e for e in cal["events"] if e["round"] == ROUND)
    assert monaco["name"] == "Monaco Grand Prix" and monaco["has_results"] is True
    res = httpx.get(f"{server}/events/{SEASON}/{ROUND}", timeout=10).json()
    assert res["qualifying"][0]["position"] == 1 and res["race"][0]["status"] == "1"
    assert httpx.get(f"{server}/events/{SEASON}/99", timeout=10).status_code == 404
    bad = httpx.get(f"{server}/events", params={"season": "abc"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["detail"][0]["loc"][-1] == "season"
    assert httpx.get(f"{server}/events", params={"season": 1900}, timeout=10).status_code == 404
