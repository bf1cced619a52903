"""JSON log records."""

from __future__ import annotations

import json
import logging
import sys

from pipelines.serving.logs import ClientErrorFilter, JsonFormatter


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


def _bentoml_exception_record(exc: BaseException) -> logging.LogRecord:
    rec = logging.LogRecord("bentoml._internal.server.http_app", logging.ERROR, __file__, 1,
                            "Exception on %s [%s]", ("/predict_full", "POST"), None)  # fmt: skip
    try:
        raise exc
    except BaseException:
        rec.exc_info = sys.exc_info()
    return rec


def test_client_errors_are_not_logged_as_errors_with_tracebacks() -> None:
    """BentoML logs every rejected body at ERROR with a traceback; the filter drops the
    4xx ones (the access line says why) and keeps 5xx and everything else."""
    from bentoml.exceptions import BentoMLException, InvalidArgument
    from pydantic import BaseModel, ValidationError

    class M(BaseModel):
        x: int

    try:
        M.model_validate({"x": "no"})
    except ValidationError as exc:
        invalid = exc
    f = ClientErrorFilter()
    assert not f.filter(_bentoml_exception_record(invalid))
    assert not f.filter(_bentoml_exception_record(InvalidArgument("bad")))
    assert f.filter(_bentoml_exception_record(BentoMLException("boom")))  # 500
    assert f.filter(_bentoml_exception_record(RuntimeError("boom")))
    assert f.filter(_record("POST /predict_full 400"))
