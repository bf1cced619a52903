"""Structured (JSON) server logs carrying the request id the response echoes: a log
shipper can index ``request_id`` and find the line behind an ``X-Request-ID`` header."""

from __future__ import annotations

import contextvars
import json
import logging
import re
from datetime import UTC, datetime
from typing import Any, Literal

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
"""The id of the request being handled (set by RequestIdMiddleware), for every log line."""

_TRACE_SUFFIX = re.compile(r" \(trace=[^)]*\)$")
_TRACE_ID = re.compile(r"trace=([0-9a-f]+)")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, component, request id, message."""

    def __init__(self, component: str = "") -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "component": self.component,
            "msg": _TRACE_SUFFIX.sub("", record.getMessage()),
        }
        rid = REQUEST_ID.get() or getattr(record, "request_id", None)  # BentoML's: an int
        if rid:
            out["request_id"] = f"{rid:016x}" if isinstance(rid, int) else str(rid)
        trace = _TRACE_ID.search(getattr(record, "trace_msg", "") or "")
        if trace:
            out["trace_id"] = trace.group(1)  # present only on routes BentoML traces
        for key in ("method", "path", "status", "duration_ms", "reason"):
            if hasattr(record, key):
                out[key] = getattr(record, key)
        if record.exc_info:
            out["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class ClientErrorFilter(logging.Filter):
    """Drop BentoML's "Exception on <path>" ERROR record (with a traceback) for a request
    it answers 4xx, or for a typed ``ApiError``: our access line says why, at WARNING."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or not str(record.msg).startswith("Exception on"):
            return True
        from pydantic import ValidationError

        from pipelines.serving.errors import ApiError

        exc = record.exc_info[1]
        if isinstance(exc, ValidationError | ApiError):
            return False
        code = getattr(getattr(exc, "error_code", None), "value", None)
        return not (isinstance(code, int) and 400 <= code < 500)


def setup_logs(component: str, log_format: Literal["json", "text"]) -> None:
    """A serving process's logs: ``f1`` at INFO (BentoML leaves the root at WARNING), a
    4xx as one access line (no ERROR with a traceback), JSON lines unless ``text``."""
    logging.getLogger("f1").setLevel(logging.INFO)
    log = logging.getLogger("bentoml._internal.server.http_app")  # BentoML's log_exception
    if not any(isinstance(f, ClientErrorFilter) for f in log.filters):
        log.addFilter(ClientErrorFilter())
    if log_format == "json":
        formatter = JsonFormatter(component)
        for name in (None, "bentoml"):
            for handler in logging.getLogger(name).handlers:
                handler.setFormatter(formatter)
