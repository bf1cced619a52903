"""Property-based fuzzing of the live server against its own OpenAPI schema (schemathesis).

CI runs a bounded number of cases per operation (F1_FUZZ_EXAMPLES, default 60 for the
POST endpoints); `make fuzz` runs many more.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("F1_FUZZ_EXAMPLES", "60"))
OPERATIONS = ["POST /predict_quali", "POST /predict_race", "POST /predict_full",
              "GET /", "GET /health", "GET /model_info"]  # fmt: skip


def errors_name_the_field(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx has an error message without internals, and body errors say where."""
    if 400 <= response.status_code < 500:
        body = response.json()
        assert isinstance(body.get("error"), str) and body["error"], body
        for leak in ("Traceback", "site-packages", "pydantic.dev", "/work/"):
            assert leak not in response.text, f"error body leaks {leak!r}"
        if response.status_code in (400, 422):
            assert body.get("detail"), body
            assert all("loc" in d and "msg" in d for d in body["detail"]), body
    return None


CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    schemathesis.check(errors_name_the_field),
]


@pytest.fixture(scope="module")
def api(server: str) -> Any:
    return schemathesis.openapi.from_url(f"{server}/openapi.json")


@pytest.mark.parametrize("label", OPERATIONS)
def test_api_never_5xx_and_answers_match_the_schema(api: Any, label: str) -> None:
    operation = api.find_operation_by_label(label)
    assert operation is not None, f"{label} missing from /openapi.json"
    calls: list[int] = []
    n = EXAMPLES if label.startswith("POST") else 5

    @given(case=operation.as_strategy())
    @settings(max_examples=n, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def fuzz(case: Any) -> None:
        response = case.call_and_validate(checks=CHECKS)
        calls.append(response.status_code)

    fuzz()
    assert calls, "no case was generated"
    print(f"{label}: {len(calls)} cases, statuses {sorted(set(calls))}")
