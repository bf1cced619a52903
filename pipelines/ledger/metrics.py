"""The prediction log's counts in /metrics (BentoML merges every worker's)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _metrics() -> tuple[Any, Any, Any]:
    # imported late: BentoML points prometheus_client at its multiprocess folder at start
    import prometheus_client as prom

    return (
        prom.Counter("f1_ledger_written", "Answers written to the prediction log."),
        prom.Counter("f1_ledger_dropped", "Answers dropped: the log's buffer was full."),
        prom.Gauge(
            "f1_ledger_pending", "Answers waiting for the database.", multiprocess_mode="livesum"
        ),
    )


class PrometheusCounters:
    """``f1_ledger_written_total``, ``f1_ledger_dropped_total``, ``f1_ledger_pending``."""

    def __init__(self) -> None:
        self._written, self._dropped, self._pending = _metrics()

    def written(self, n: int) -> None:
        self._written.inc(n)

    def dropped(self, n: int) -> None:
        self._dropped.inc(n)

    def pending(self, n: int) -> None:
        self._pending.set(n)
