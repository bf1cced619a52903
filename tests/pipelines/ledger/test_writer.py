"""The writer: off the request path, bounded, patient with a database that is down."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from pipelines.ledger import db
from pipelines.ledger.writer import Counters, Ledger, Served
from tests.pipelines.ledger.forecasts import forecast
from tests.postgres import Cluster

SERVED = Served(models={"stage1": "s1:a"}, data_hash="h", saw_qualifying=lambda ctx: False)


class Counts:
    def __init__(self) -> None:
        self.w = self.d = 0
        self.p = -1
        self.counters = Counters(self.written, self.dropped, self.pending)

    def written(self, n: int) -> None:
        self.w += n

    def dropped(self, n: int) -> None:
        self.d += n

    def pending(self, n: int) -> None:
        self.p = n


def _answers(url: str) -> tuple[int, int]:
    eng = db.make_engine(url, 5.0)
    try:
        with eng.connect() as conn:
            return db.totals(conn)
    finally:
        eng.dispose()


def test_repeats_wait_as_one_row_and_are_written_with_their_count(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.sqlite3'}"
    counts = Counts()
    ledger = Ledger(url, SERVED, counters=counts.counters)
    for _ in range(5):
        ledger.record(forecast(3), None, "r", False)
    ledger.record(forecast(4), None, "r", False)
    assert ledger.pending == 6
    assert ledger.flush()
    assert (ledger.pending, ledger.written, counts.w, counts.p) == (0, 6, 6, 0)
    assert _answers(url) == (2, 6)
    ledger.close()


def test_past_the_bound_new_answers_are_dropped_and_counted(tmp_path: Path) -> None:
    counts = Counts()
    ledger = Ledger(
        f"sqlite:///{tmp_path / 'l.sqlite3'}", SERVED, max_pending=2, counters=counts.counters
    )
    for rnd in (1, 2, 3, 1):
        ledger.record(forecast(rnd), None, "r", False)
    assert (ledger.pending, ledger.dropped, counts.d) == (3, 1, 1)
    ledger.close()


def test_a_database_that_is_down_keeps_the_answers_until_it_returns(postgres: Cluster) -> None:
    eng = db.make_engine(postgres.url, 5.0)
    with eng.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS forecasts"))
        conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
    eng.dispose()
    ledger = Ledger(postgres.url, SERVED, timeout_s=2.0)
    postgres.stop()
    try:
        for rnd in (1, 2, 2):
            ledger.record(forecast(rnd), None, "r", False)
        assert not ledger.flush()
        assert ledger.pending == 3
        assert ledger.state()["ok"] is False
        ledger.record(forecast(2), None, "r", False)
    finally:
        postgres.start()
    assert ledger.flush()
    assert ledger.state()["ok"] is True
    assert _answers(postgres.url) == (2, 4)
    ledger.close()


def test_close_writes_what_waits(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.sqlite3'}"
    ledger = Ledger(url, SERVED, interval_s=60.0)
    ledger.start()
    for rnd in range(1, 8):
        ledger.record(forecast(rnd), None, "r", False)
    assert ledger.close(timeout_s=10.0) == 0
    assert _answers(url) == (7, 7)


@pytest.mark.skipif(sys.platform != "linux", reason="a thread has its own niceness on Linux")
def test_the_writer_thread_alone_gives_way_to_the_event_loop(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.sqlite3'}", SERVED, interval_s=60.0)
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    ledger.start()
    assert ledger._thread is not None and ledger._thread.native_id is not None
    writer, deadline = ledger._thread.native_id, time.monotonic() + 5.0
    while os.getpriority(os.PRIO_PROCESS, writer) == base and time.monotonic() < deadline:
        time.sleep(0.01)
    assert os.getpriority(os.PRIO_PROCESS, writer) == min(19, base + 10)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base
    ledger.close()


def test_the_state_never_shows_the_password() -> None:
    ledger = Ledger("postgresql://u:hunter2@127.0.0.1:1/x", SERVED)
    assert "hunter2" not in str(ledger.state())
    ledger.engine.dispose()


@pytest.mark.parametrize("days", [None, 30.0])
def test_retention_is_off_unless_set(tmp_path: Path, days: float | None) -> None:
    url = f"sqlite:///{tmp_path / 'l.sqlite3'}"
    ledger = Ledger(url, SERVED, retention_days=days)
    ledger.record(forecast(1), None, "r", False)
    assert ledger.flush()
    eng = db.make_engine(url, 5.0)
    with eng.begin() as conn:
        conn.execute(sa.update(db.forecasts).values(last_at=sa.text("'2000-01-01 00:00:00'")))
    eng.dispose()
    ledger._retain()
    assert _answers(url)[0] == (1 if days is None else 0)
    ledger.close()
