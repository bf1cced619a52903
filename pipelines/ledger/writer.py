"""The log's writer: the request path appends an answer to a bounded buffer; a thread
writes the buffer to the database, retrying while it is down, and flushes it at exit."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from pipelines.features.event import EventContext
from pipelines.ledger import db, track
from pipelines.ledger.record import Answer, EventKey, answer, answer_key, row
from pipelines.serving.events import check_season
from pipelines.serving.logs import REQUEST_ID
from pipelines.serving.orchestrator import Forecast

if TYPE_CHECKING:
    from pydantic import BaseModel

    from pipelines.features.snapshot import FeatureSnapshot
    from pipelines.ledger.schemas import RecordedForecast, TrackRecord
    from pipelines.serving.resolve import Resolved
    from pipelines.settings import Settings

logger = logging.getLogger("f1.ledger")

LOG_EVERY_S = 60.0
"""A failing database or an overflowing buffer is logged at most this often."""
RETENTION_EVERY_S = 3600.0


def _ignore(n: int) -> None:
    pass


@dataclass(frozen=True)
class Counters:
    """Where the writer reports its counts (Prometheus in the service)."""

    written: Callable[[int], None] = _ignore
    dropped: Callable[[int], None] = _ignore
    pending: Callable[[int], None] = _ignore


@lru_cache(maxsize=1)
def prometheus_counters() -> Counters:
    """The ``f1_ledger_*`` counts in /metrics (BentoML merges every worker's)."""
    # imported late: BentoML points prometheus_client at its multiprocess folder at start
    import prometheus_client as prom

    return Counters(
        prom.Counter("f1_ledger_written", "Answers written to the prediction log.").inc,
        prom.Counter("f1_ledger_dropped", "Answers dropped: the log's buffer was full.").inc,
        prom.Gauge(
            "f1_ledger_pending", "Answers waiting for the database.", multiprocess_mode="livesum"
        ).set,
    )


@dataclass(frozen=True)
class Served:
    """What every answer of this process was made with."""

    models: Mapping[str, str]
    data_hash: str | None
    saw_qualifying: Callable[[EventContext], bool]


class Ledger:
    """A bounded buffer of answers and the thread that writes it: at most ``max_pending``
    distinct answers wait; a repeat adds to a count, a new one past the bound is dropped."""

    def __init__(
        self,
        url: str,
        served: Served,
        *,
        max_pending: int = 10_000,
        interval_s: float = 0.5,
        timeout_s: float = 5.0,
        retention_days: float | None = None,
        counters: Counters = Counters(),
        enabled: bool = True,
    ) -> None:
        self.url = url
        self.enabled = enabled
        self.served = served
        self.max_pending = max_pending
        self.interval_s = interval_s
        self.retention_days = retention_days
        self.counters = counters
        self.engine = db.make_engine(url, timeout_s)
        self._pending: dict[EventKey, Answer] = {}
        self.pending = 0  # answers waiting, repeats included
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_log: dict[str, float] = {}
        self._last_retention = -RETENTION_EVERY_S
        self._stop_by = 0.0
        self.written = 0
        self.dropped = 0
        self.last_error: str | None = None
        self.last_write: datetime | None = None

    def record(self, fc: Forecast, inputs: str | None, rid: str | None, fitted: bool) -> None:
        """Queue an answer (never blocks on the database)."""
        if not self.enabled:
            return
        key = answer_key(fc, inputs)
        now = datetime.now(UTC)
        new = None if key in self._pending else answer(fc, inputs, rid, fitted, now)
        with self._lock:
            waiting = self._pending.get(key)
            if waiting is not None:
                waiting.count, waiting.last_at, waiting.request_id = waiting.count + 1, now, rid
            elif len(self._pending) < self.max_pending:
                self._pending[key] = new or answer(fc, inputs, rid, fitted, now)
            else:
                self.dropped += 1
                self.counters.dropped(1)
                self._log_at_most_every("overflow", "prediction log buffer full: answer dropped")
                return
            self.pending += 1

    def answered(self, request: BaseModel, res: Resolved, fc: Forecast) -> None:
        """Queue an endpoint's answer; the request kept only where it changed the field."""
        given = None if fc.field.as_in_data else request.model_dump_json(exclude_none=True)
        self.record(fc, given, REQUEST_ID.get(), res.fitted_on_event)

    def track_record(self, snap: FeatureSnapshot, season: int) -> TrackRecord:
        """/track_record: 404 for a season not in the data, 503 if the log is unreachable."""
        check_season(snap, season, "query")
        return track.read(lambda: track.from_log(self.engine, season, snap))

    def recorded(self, snap: FeatureSnapshot, season: int, rnd: int) -> RecordedForecast:
        """/track_record/{season}/{round}: the event's recorded forecast."""
        check_season(snap, season, "path")
        return track.event_record(self.engine, snap, season, rnd)

    def state(self) -> dict[str, Any]:
        """For /health: where the log goes and how it is keeping up."""
        return {
            "enabled": self.enabled,
            "url": db.redacted(self.url),
            "ok": self.last_error is None,
            "pending": self.pending,
            "written": self.written,
            "dropped": self.dropped,
            "last_write": self.last_write.isoformat() if self.last_write else None,
            "last_error": self.last_error,
        }

    def start(self) -> None:
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="f1-ledger", daemon=True)
            self._thread.start()

    def close(self, timeout_s: float = 10.0) -> int:
        """Write what waits (for up to ``timeout_s``) and stop; the answers left unwritten."""
        self._stop_by = time.monotonic() + timeout_s
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        else:
            self._drain(time.monotonic() + timeout_s)
        if left := self.pending:
            logger.error("prediction log: %d answer(s) not written at shutdown", left)
        self.engine.dispose()
        return left

    def _run(self) -> None:
        if sys.platform == "linux":  # this thread only, 10 nicer: the event loops come first
            with contextlib.suppress(OSError):
                os.nice(10)
        failures = 0
        while not self._stopping.is_set():
            delay = self.interval_s if failures == 0 else min(5.0, self.interval_s * 2**failures)
            self._wake.wait(delay)
            self._wake.clear()
            if self._stopping.is_set():
                break
            failures = 0 if self.flush() else failures + 1
            if failures == 0:
                self._retain()
        self._drain(self._stop_by)

    def _drain(self, deadline: float) -> None:
        while self.pending and time.monotonic() < deadline:
            if not self.flush():
                time.sleep(0.2)

    def flush(self) -> bool:
        """Write what waits now; False if the database refused."""
        with self._lock:
            batch, self._pending = self._pending, {}
            answers, self.pending = self.pending, 0
        self.counters.pending(0 if not batch else answers)
        if not batch:
            return True
        try:
            s = self.served
            rows = [
                row(a, s.models, s.data_hash, s.saw_qualifying(a.event)) for a in batch.values()
            ]
            with db.migrated(self.engine).begin() as conn:
                db.upsert(conn, rows)
        except Exception as exc:
            self._put_back(batch)
            self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            self._log_at_most_every(
                "write",
                "prediction log: database unavailable, %d answer(s) waiting (%s)",
                self.pending,
                self.last_error,
            )
            return False
        self.written += answers
        self.counters.written(answers)
        self.counters.pending(self.pending)
        self.last_error = None
        self.last_write = datetime.now(UTC)
        return True

    def _put_back(self, batch: dict[EventKey, Answer]) -> None:
        """Return a batch that could not be written, newest repeats merged in."""
        lost = 0
        with self._lock:
            for key, a in batch.items():
                newer = self._pending.get(key)
                if newer is not None:
                    newer.count += a.count
                    newer.first_at = a.first_at
                elif len(self._pending) < self.max_pending:
                    self._pending[key] = a
                else:
                    lost += a.count
                    continue
                self.pending += a.count
            self.dropped += lost
        if lost:
            self.counters.dropped(lost)
        self.counters.pending(self.pending)

    def _retain(self) -> None:
        now = time.monotonic()
        if self.retention_days is None or now - self._last_retention < RETENTION_EVERY_S:
            return
        self._last_retention = now
        try:
            while True:
                with self.engine.begin() as conn:
                    n = db.delete_older(conn, self.retention_days, datetime.now(UTC))
                if n < db.RETENTION_BATCH:
                    break
        except Exception as exc:
            self._log_at_most_every("retention", "prediction log: retention failed (%s)", exc)

    def _log_at_most_every(self, what: str, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_log.get(what, -LOG_EVERY_S) >= LOG_EVERY_S:
            self._last_log[what] = now
            logger.warning(msg, *args)


def saw_qualifying(snap: FeatureSnapshot) -> Callable[[EventContext], bool]:
    """Whether ``snap`` holds an event's qualifying (such a forecast is no test)."""
    seen: dict[int, bool] = {}

    def check(event: EventContext) -> bool:
        if event.race_id is None:
            return False
        if event.race_id not in seen:
            seen[event.race_id] = bool(snap.outcomes(event.race_id)["q_pos"].notna().any())
        return seen[event.race_id]

    return check


def service_ledger(settings: Settings, tags: Mapping[str, str], snap: FeatureSnapshot) -> Ledger:
    """The front service's log, started: ``F1_LEDGER_URL``, else SQLite beside the store."""
    from pipelines.models.store import store_home

    served = Served(dict(tags), snap.meta.get("data_hash"), saw_qualifying(snap))
    ledger = Ledger(
        settings.ledger_url or db.default_url(store_home()),
        served,
        max_pending=settings.ledger_max_pending,
        timeout_s=settings.ledger_timeout_s,
        retention_days=settings.ledger_retention_days,
        counters=prometheus_counters(),
        enabled=settings.ledger,
    )
    ledger.start()
    return ledger
