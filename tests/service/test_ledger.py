"""The prediction log under `bentoml serve` with a real PostgreSQL: a database that stops
fails no prediction and loses no answer; SIGTERM writes every answer given; two front
workers write to one database."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.postgres import Cluster
from tests.service.servers import logged, serving, start_server, stop_server, wait_logged

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pg_url(postgres: Cluster) -> str:
    """This module's own database on the session's cluster."""
    return postgres.database("faults")


def _load(url: str, seconds: float, concurrency: int = 32) -> tuple[int, list[object]]:
    """Concurrent /predict_full and /predict_quali calls for ``seconds``: the number of 200
    answers and every other outcome. Bodies vary (24 events, two endpoints), so answers
    repeat (one row, a count) and differ (many rows)."""
    ok = 0
    other: list[object] = []

    async def run() -> None:
        nonlocal ok
        stop_at = time.monotonic() + seconds
        async with httpx.AsyncClient(base_url=url, timeout=35) as c:

            async def one(i: int) -> None:
                nonlocal ok
                n = i
                while time.monotonic() < stop_at:
                    path = "/predict_full" if n % 3 else "/predict_quali"
                    body = {"event": {"season": 2025, "round": 1 + n % 24}}
                    n += concurrency
                    try:
                        r = await c.post(path, json=body)
                    except httpx.HTTPError as exc:
                        other.append(type(exc).__name__)
                        continue
                    if r.status_code == 200:
                        ok += 1
                    else:
                        other.append(r.status_code)

            await asyncio.gather(*[one(i) for i in range(concurrency)])

    asyncio.run(run())
    return ok, other


def test_a_database_stopped_under_load_fails_no_prediction_and_loses_no_answer(
    postgres: Cluster, pg_url: str, pinned_env: dict[str, str], tmp_path: Path
) -> None:
    env = pinned_env | {"F1_LEDGER_URL": pg_url, "F1_FRONT_WORKERS": "2",
                        "F1_LEDGER_TIMEOUT_S": "2"}  # fmt: skip
    before = logged(pg_url)
    with serving(env, tmp_path / "serve.log") as url:
        result: list[tuple[int, list[object]]] = []
        load = threading.Thread(target=lambda: result.append(_load(url, 24.0)))
        load.start()
        time.sleep(5)
        postgres.stop()
        time.sleep(10)
        health = httpx.get(f"{url}/health", timeout=10).json()["ledger"]
        postgres.start()
        load.join()
        ok, other = result[0]
        assert other == [] and ok > 100
        assert health["ok"] is False and "hunter" not in str(health)
        assert wait_logged(pg_url, before + ok) == before + ok
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert "f1_ledger_written_total" in metrics and "f1_ledger_pending" in metrics
    dropped = [ln for ln in metrics.splitlines() if ln.startswith("f1_ledger_dropped_total")]
    assert dropped and all(float(ln.split()[-1]) == 0 for ln in dropped)


def test_sigterm_under_load_writes_every_answer_given(
    pg_url: str, pinned_env: dict[str, str], tmp_path: Path
) -> None:
    env = pinned_env | {"F1_LEDGER_URL": pg_url, "F1_FRONT_WORKERS": "2"}
    before = logged(pg_url)
    proc, url = start_server("service:F1Predictor", env, tmp_path / "serve.log")
    try:
        result: list[tuple[int, list[object]]] = []
        load = threading.Thread(target=lambda: result.append(_load(url, 8.0)))
        load.start()
        time.sleep(4)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        load.join()
    finally:
        stop_server(proc)
    ok, _ = result[0]
    assert ok > 20
    assert logged(pg_url) == before + ok  # written before the server exited
