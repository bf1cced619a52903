"""Fixtures of the service tests: the Bento served by `bentoml serve` once per session.

The trained models it serves (``pinned_env``) are tests/conftest.py's: the benchmark and
deployment tests use them too.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.servers import start_server, stop_server
from tests.session import in_ci


@pytest.fixture(scope="session")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve") / "serve.log"


@pytest.fixture(scope="session")
def served(
    pinned_env: dict[str, str], server_log: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`bentoml serve service:F1Predictor` on a free port, as users run it: (process, url)."""
    proc, url = start_server("service:F1Predictor", pinned_env, server_log)
    try:
        yield proc, url
    finally:
        stop_server(proc)


@pytest.fixture(scope="session")
def server(served: tuple[subprocess.Popen[bytes], str]) -> str:
    """The URL of the session's server."""
    return served[1]


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Selenium with the system ChromeDriver."""
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
