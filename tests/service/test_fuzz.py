"""Property-based fuzzing of the live server against its own OpenAPI schema (schemathesis).

Reproducible by default: `make test` draws the same cases every run (F1_FUZZ_SEED unset
-> seed 20261202) and a bounded number of them (F1_FUZZ_EXAMPLES, default 40 per POST
operation and spec document), so CI does not pass or fail on luck. `make fuzz` picks a
random seed, prints it, and runs 1000 cases per operation; replay a failure with
`make fuzz F1_FUZZ_SEED=<seed>`.

The spec is served twice (/openapi.json and BentoML's /docs.json): every operation is
fuzzed against each. Every case the fuzzer has ever found is kept in FOUND below and
sent on every run, whatever the seed.
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from schemathesis import checks

pytestmark = pytest.mark.slow

DEFAULT_SEED = 20261202
SEED = int(os.environ.get("F1_FUZZ_SEED") or DEFAULT_SEED)
EXAMPLES = int(os.environ.get("F1_FUZZ_EXAMPLES") or "40")
SPEC_PATHS = ["/openapi.json", "/docs.json"]
OPERATIONS = ["POST /predict_quali", "POST /predict_race", "POST /predict_full",
              "GET /", "GET /health", "GET /model_info"]  # fmt: skip
LEAKS = ("Traceback", "site-packages", "pydantic.dev", "/work/")


def errors_name_the_field(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx has an error message without internals, and body errors say where."""
    if 400 <= response.status_code < 500:
        body = response.json()
        assert isinstance(body.get("error"), str) and body["error"], body
        for leak in LEAKS:
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


def _seed_for(spec_path: str) -> int:
    """Each spec document gets its own cases (the two documents are the same)."""
    return SEED + SPEC_PATHS.index(spec_path)


@pytest.fixture(scope="module", params=SPEC_PATHS)
def api(server: str, request: pytest.FixtureRequest) -> tuple[str, Any]:
    return request.param, schemathesis.openapi.from_url(f"{server}{request.param}")


@pytest.mark.parametrize("label", OPERATIONS)
def test_api_never_5xx_and_answers_match_the_schema(api: tuple[str, Any], label: str) -> None:
    spec_path, schema = api
    operation = schema.find_operation_by_label(label)
    assert operation is not None, f"{label} missing from {spec_path}"
    calls: list[int] = []
    n = EXAMPLES if label.startswith("POST") else 5

    @seed(_seed_for(spec_path))
    @given(case=operation.as_strategy())
    @settings(max_examples=n, deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def fuzz(case: Any) -> None:
        response = case.call_and_validate(checks=CHECKS)
        calls.append(response.status_code)

    try:
        fuzz()
    except BaseException as exc:
        exc.add_note(f"replay: make fuzz F1_FUZZ_SEED={SEED} (spec {spec_path}, {label}); "
                     "then add the case to FOUND in tests/service/test_fuzz.py")  # fmt: skip
        raise
    assert calls, "no case was generated"
    print(f"{spec_path} {label}: {len(calls)} cases (seed {SEED}), statuses {sorted(set(calls))}")


# ------------------------------------------------------------ cases found so far

CRLF_DRIVER = {"drivers": [{"driver_id": "max-verstappen", "a\r\nb": 1}],
               "event": {"season": 2025, "round": 8}}  # fmt: skip

FOUND: list[tuple[str, str, dict[str, Any]]] = [
    # user text (an unknown field's name) copied into a response header: 500
    ("header-text-surrogates", "/predict_race",
     {"drivers": [{"\u00c2L\ud9dc\udfff\u00ed": None, "driver_id": 0}]}),
    ("unicode-circuit-id", "/predict_quali",
     {"event": {"season": 2026, "circuit_id": "東京", "date": "2026-06-07"},
      "drivers": [{"driver_id": 1}]}),
    # an unknown field named with CR/LF: the server dropped the connection
    ("crlf-field-name-quali", "/predict_quali", CRLF_DRIVER),
    ("crlf-field-name-race", "/predict_race", CRLF_DRIVER),
    # no drivers and an event without round, circuit or date: a proper ErrorResponse
    ("empty-drivers-null-event", "/predict_full",
     {"drivers": [], "event": {"season": 2025, "round": None, "circuit_id": None,
                               "date": None}}),
]  # fmt: skip

MUST_BE_4XX = {"empty-drivers-null-event"}


def _assert_proper_answer(r: httpx.Response) -> None:
    assert r.status_code < 500, f"{r.status_code}: {r.text[:500]}"
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body = r.json()
    for name, value in r.headers.raw:
        assert value.isascii() and b"\r" not in value and b"\n" not in value, (name, value)
    if r.status_code >= 400:
        assert isinstance(body, dict), body
        assert isinstance(body.get("error"), str) and body["error"], body
        detail = body.get("detail")
        assert isinstance(detail, list) and detail, body
        for d in detail:
            assert isinstance(d.get("loc"), list) and isinstance(d.get("msg"), str), body
        for leak in LEAKS:
            assert leak not in r.text, f"error body leaks {leak!r}"
    else:
        assert r.status_code == 200, r.status_code
        assert isinstance(body, (list, dict)) and body, body
        warnings = r.headers.get("x-f1-warnings")
        if warnings is not None:
            assert warnings.isascii() and "\r" not in warnings and "\n" not in warnings


@pytest.mark.parametrize(("name", "path", "body"), FOUND, ids=[c[0] for c in FOUND])
def test_every_case_found_so_far(server: str, name: str, path: str, body: Any) -> None:
    """Sent as JSON text (ensure_ascii: a lone surrogate becomes a valid \\u escape)."""
    raw = json.dumps(body, ensure_ascii=True).encode()
    r = httpx.post(f"{server}{path}", content=raw, timeout=30,
                   headers={"content-type": "application/json"})  # fmt: skip
    _assert_proper_answer(r)
    if name in MUST_BE_4XX:
        assert 400 <= r.status_code < 500, r.status_code
