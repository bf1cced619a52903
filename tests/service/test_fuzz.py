"""Fuzzing of the live server against its own OpenAPI documents (schemathesis).

Each document (/openapi.json, and BentoML's conventional /docs.json) goes through
`st run` as someone checking the API from outside would run it: the examples, coverage
and fuzzing phases, with valid and invalid (negative) requests. The checks in CHECKS
fail on a 5xx, on an answer its schema does not describe, and on an invalid request the
server accepts (negative_data_rejection).

Reproducible by default: `make test` draws the same cases every run (F1_FUZZ_SEED unset
-> seed 20261202) and a bounded number of them (F1_FUZZ_EXAMPLES, default 25 per
operation in the fuzzing phase). `make fuzz` picks a random seed, prints it, and runs
1000 cases per operation; replay a failure with `make fuzz F1_FUZZ_SEED=<seed>`. Every
case the fuzzer has ever found is kept in FOUND below and sent on every run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.fuzz_hooks import LEAKS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SEED = 20261202
SEED = int(os.environ.get("F1_FUZZ_SEED") or DEFAULT_SEED)
EXAMPLES = int(os.environ.get("F1_FUZZ_EXAMPLES") or "25")
SPEC_PATHS = ["/openapi.json", "/docs.json"]
CHECKS = [
    "not_a_server_error",
    "response_schema_conformance",
    "negative_data_rejection",
    "status_code_conformance",
    "content_type_conformance",
    "errors_name_the_field",  # tests/service/fuzz_hooks.py
]


def st_run(url: str, seed: int, examples: int) -> list[str]:
    """The `st run` command line for one document."""
    st = str(Path(sys.executable).parent / "st")
    config = str(Path(__file__).with_name("schemathesis.toml"))
    return [st, "--config-file", config, "--no-color", "run", url,
            "--checks", ",".join(CHECKS), "--seed", str(seed),
            "--max-examples", str(examples)]  # fmt: skip


BUDGET_S = 300 + 3 * EXAMPLES
"""Time for one document: ~30 s at 25 cases per operation, ~15 min at 1000 (2 cores)."""


@pytest.mark.timeout(BUDGET_S + 60)
@pytest.mark.parametrize("spec_path", SPEC_PATHS)
def test_schemathesis_finds_nothing(server: str, spec_path: str) -> None:
    """Each document gets its own cases (the two documents are the same)."""
    seed = SEED + SPEC_PATHS.index(spec_path)
    cmd = st_run(f"{server}{spec_path}", seed, EXAMPLES)
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=BUDGET_S)
    summary = run.stdout[run.stdout.rfind("SUMMARY") :]
    print(f"{spec_path} (seed {seed}):\n{summary}")
    assert run.returncode == 0, (
        f"schemathesis found something in {spec_path}: replay with make fuzz "
        f"F1_FUZZ_SEED={SEED}, then add each case to FOUND in tests/service/test_fuzz.py\n"
        f"{run.stdout[-12000:]}{run.stderr[-3000:]}"
    )


# ------------------------------------------------------------ cases found so far

CRLF_DRIVER = {"drivers": [{"driver_id": "max-verstappen", "a\r\nb": 1}],
               "event": {"season": 2025, "round": 8}}  # fmt: skip
MONACO = {"season": 2025, "round": 8}
JSON = "application/json"

FOUND: list[tuple[str, str, Any, str]] = [
    # user text (an unknown field's name) copied into a response header: 500
    ("header-text-surrogates", "POST /predict_race",
     {"drivers": [{"\u00c2L\ud9dc\udfff\u00ed": None, "driver_id": 0}]}, JSON),
    ("unicode-circuit-id", "POST /predict_quali",
     {"event": {"season": 2026, "circuit_id": "東京", "date": "2026-06-07"},
      "drivers": [{"driver_id": 1}]}, JSON),
    # an unknown field named with CR/LF: the server dropped the connection
    ("crlf-field-name-quali", "POST /predict_quali", CRLF_DRIVER, JSON),
    ("crlf-field-name-race", "POST /predict_race", CRLF_DRIVER, JSON),
    # no drivers and an event without round, circuit or date: a proper ErrorResponse
    ("empty-drivers-null-event", "POST /predict_full",
     {"drivers": [], "event": {"season": 2025, "round": None, "circuit_id": None,
                               "date": None}}, JSON),
    # values of another type than the schema's, once converted by pydantic's lax mode: 200
    ("explain-0-full", "POST /predict_full", {"event": MONACO, "explain": 0}, JSON),
    ("explain-0-quali", "POST /predict_quali", {"event": MONACO, "explain": 0}, JSON),
    ("explain-0-race", "POST /predict_race", {"event": MONACO, "explain": 0}, JSON),
    ("round-8.0-in-path", "GET /events/2025/8.0", None, JSON),
    # a lap as an integer too large for a float: OverflowError in the validator, a 500
    ("huge-integer-lap", "POST /predict_quali",
     {"drivers": [{"driver_id": 1, "practice": {"fp1": 10**400}}]}, JSON),
    # a body declared as multipart (no boundary): BentoML's form parser, a 500
    ("multipart-no-boundary", "POST /predict_full", {"event": MONACO}, "multipart/form-data"),
    ("multipart-no-boundary-race", "POST /predict_race", {"event": MONACO},
     "multipart/form-data"),
    # a path parameter holding "/": no route, the router's plain-text 404
    ("slash-in-path-parameter", "GET /events/2025/8%2F1", None, JSON),
    # a season past SQLite's 64-bit integers: OverflowError in the log's query, a 500
    ("huge-season-track-record", "GET /track_record/9223372036854775809/213", None, JSON),
]  # fmt: skip

MUST_BE_4XX = {"empty-drivers-null-event", "explain-0-full", "explain-0-quali",
               "explain-0-race", "round-8.0-in-path", "huge-integer-lap",
               "multipart-no-boundary", "multipart-no-boundary-race",
               "slash-in-path-parameter", "huge-season-track-record"}  # fmt: skip


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


@pytest.mark.parametrize(("name", "request_line", "body", "content_type"), FOUND,
                         ids=[c[0] for c in FOUND])  # fmt: skip
def test_every_case_found_so_far(
    server: str, name: str, request_line: str, body: Any, content_type: str
) -> None:
    """A body is sent as JSON text (ensure_ascii: a lone surrogate becomes a valid \\u
    escape); the path as written (percent escapes kept)."""
    method, path = request_line.split(" ", 1)
    raw = None if body is None else json.dumps(body, ensure_ascii=True).encode()
    headers = {} if body is None else {"content-type": content_type}
    r = httpx.request(method, f"{server}{path}", content=raw, headers=headers, timeout=30)
    _assert_proper_answer(r)
    if name in MUST_BE_4XX:
        assert 400 <= r.status_code < 500, r.status_code
