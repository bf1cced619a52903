"""JSON log records."""

from __future__ import annotations

import json
import logging
import sys

from pipelines.logs import JsonFormatter


def _record(msg: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("bentoml.access", logging.INFO, __file__, 1, msg, None, None)
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


def test_json_formatter_fields_and_request_id() -> None:
    fmt = JsonFormatter("F1Predictor")
    rec = _record("POST /predict_full 200", request_id=0x261426C7271F0C88,
                  trace_msg=" (trace=abc123,span=261426c7271f0c88,sampled=0)")  # fmt: skip
    out = json.loads(fmt.format(rec))
    assert out["request_id"] == "261426c7271f0c88"
    assert out["trace_id"] == "abc123"
    assert out["component"] == "F1Predictor" and out["level"] == "INFO"
    assert out["msg"] == "POST /predict_full 200" and out["ts"].endswith("+00:00")


def test_json_formatter_exceptions_and_plain_records() -> None:
    fmt = JsonFormatter("f1_stage1")
    try:
        raise ValueError("boom")
    except ValueError:
        rec = _record("failed")
        rec.exc_info = sys.exc_info()
    out = json.loads(fmt.format(rec))
    assert out["exc_type"] == "ValueError" and "boom" in out["exc"]
    assert "request_id" not in json.loads(fmt.format(_record("started")))
