"""The page at /ui in a real browser: Debian's Chromium driven headless (Selenium with
the system ChromeDriver; nothing is downloaded) against `bentoml serve`.

What the page shows is checked against the API's own answer, and a screenshot is
saved: into a temporary folder, or where F1_UI_SCREENSHOT says (`F1_UI_SCREENSHOT=
reports/ui.png` rewrites the README's; a test run changes no tracked file).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.session import in_ci

pytestmark = pytest.mark.slow

SEASON, ROUND = 2025, 8


def _pct(p: float) -> str:
    """The page's percentage format (app.js `pct`)."""
    return f"{100 * p:.1f}%" if p < 0.1 else f"{100 * p:.0f}%"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        msg = "Debian's chromium and chromium-driver are not installed (make browser-deps)"
        if in_ci():
            pytest.fail(f"{msg}; CI=true: the browser test must run", pytrace=False)
        pytest.skip(msg)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1280,1400",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):  # fmt: skip
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()


def test_the_page_shows_the_apis_forecast_and_explains_a_driver(
    browser: Any, server: str, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(f"{server}/ui")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#grid tbody tr")))
    # pick the event: season, then round (the page loads that season's calendar)
    Select(browser.find_element(By.ID, "season")).select_by_value(str(SEASON))
    wait.until(lambda b: f"{ROUND}" in [o.get_attribute("value") for o in
                                        Select(b.find_element(By.ID, "round")).options])  # fmt: skip
    Select(browser.find_element(By.ID, "round")).select_by_value(str(ROUND))
    wait.until(ec.text_to_be_present_in_element((By.ID, "event-title"), "Monaco"))
    wait.until(lambda b: "past" in b.find_element(By.ID, "grid").get_attribute("class"))
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "Click a driver"))

    body = {"event": {"season": SEASON, "round": ROUND}, "explain": True}
    api = httpx.post(f"{server}/predict_full", json=body, timeout=30).json()
    actual = httpx.get(f"{server}/events/{SEASON}/{ROUND}", timeout=30).json()
    quali = api["qualifying_predictions"]
    race = {r["driver_id"]: r for r in api["race_winner_predictions"]}
    rows = browser.find_elements(By.CSS_SELECTOR, "#grid tbody tr")
    assert [r.get_attribute("data-driver") for r in rows] == [q["driver_id"] for q in quali]
    actual_q = {q["driver_id"]: q["position"] for q in actual["qualifying"]}
    for row, q in zip(rows, quali, strict=True):
        r = race[q["driver_id"]]
        cell = {c: row.find_element(By.CSS_SELECTOR, f"td.{c}") for c in
                ("grid", "driver", "gap", "pole", "win", "podium", "points", "quali")}  # fmt: skip
        assert cell["grid"].text == str(q["grid_position_estimate"])
        assert cell["driver"].text == (q.get("driver_name") or q["driver_id"])
        assert cell["gap"].text == f"+{q['predicted_gap_to_pole_pct']:.3f}%"
        shown = {"pole": q["probability_score"]}
        shown |= {kind: r[f"{kind}_probability"] for kind in ("win", "podium", "points")}
        for kind, p in shown.items():
            bar = cell[kind].find_element(By.CSS_SELECTOR, ".bar")
            assert float(bar.get_attribute("data-value")) == pytest.approx(p, rel=1e-12)
            assert bar.text == _pct(p)
        assert cell["quali"].text == str(actual_q.get(q["driver_id"], "–"))

    # a driver's row opens their explanation: the API's contributions, label by label
    rows[0].click()
    panel = wait.until(ec.visibility_of_element_located((By.ID, "explanation")))
    first = quali[0]
    stage1 = panel.find_elements(By.CSS_SELECTOR, "#why-quali .row")
    stage2 = panel.find_elements(By.CSS_SELECTOR, "#why-race .row")
    assert [s.get_attribute("data-feature") for s in stage1] == [
        c["feature"] for c in first["explanation"]["contributions"]
    ]
    assert [s.find_element(By.CSS_SELECTOR, ".label").text for s in stage2] == [
        c["label"] for c in race[first["driver_id"]]["explanation"]["contributions"]
    ]
    shot = Path(os.environ.get("F1_UI_SCREENSHOT") or tmp_path / "ui.png")
    shot.parent.mkdir(exist_ok=True)
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


@pytest.fixture(scope="module")
def keyed_server(
    pinned_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A server that wants an API key, CORS off: the page must still work (same origin)."""
    from tests.service.servers import serving

    log = tmp_path_factory.mktemp("ui-keyed") / "serve.log"
    with serving(pinned_env | {"F1_API_KEY": "ui-key-789"}, log) as url:
        yield url


def test_the_page_works_with_an_api_key_typed_in(browser: Any, keyed_server: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(f"{keyed_server}/ui")
    # no key yet: the calendar loads (public), the forecast is refused and the page says so
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "HTTP 401"))
    key = browser.find_element(By.ID, "apikey")
    key.send_keys("ui-key-789")
    browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", key)
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "Click a driver"))
    assert browser.find_elements(By.CSS_SELECTOR, "#grid tbody tr")
