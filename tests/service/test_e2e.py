"""End to end: `bentoml serve` in a subprocess, called over HTTP and through the SDK."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipelines.client import AsyncF1Client, F1APIError, F1Client
from pipelines.serving.schemas import EXAMPLES
from tests.service.servers import ROOT, logged, serving, start_server, stop_server, wait_logged
from tests.session import STORE_HOME

pytestmark = pytest.mark.slow


def test_every_endpoint_over_http(server: str) -> None:
    with httpx.Client(base_url=server, timeout=30) as c:
        assert c.get("/").json()["models_loaded"] is True
        assert c.get("/health").json()["status"] == "healthy"
        assert c.get("/model_info").json()["stage1"]["feature_count"] > 0
        assert c.get("/livez").status_code == 200
        assert c.get("/readyz").status_code == 200
        assert c.get("/docs").status_code == 200
        q = c.post("/predict_quali", json=EXAMPLES["known_event"])
        r = c.post("/predict_race", json={"event": {"season": 2025, "round": 8}})
        f = c.post("/predict_full", json=EXAMPLES["custom_field"])
        assert q.status_code == r.status_code == f.status_code == 200
        assert math.isclose(sum(x["probability_score"] for x in q.json()), 1.0, abs_tol=1e-9)
        assert math.isclose(sum(x["win_probability"] for x in r.json()), 1.0, abs_tol=1e-9)
        grid = [x["grid_position_estimate"] for x in f.json()["qualifying_predictions"]]
        assert sorted(grid) == list(range(1, len(EXAMPLES["custom_field"]["drivers"]) + 1))
        o = c.post("/predict_quali", json=EXAMPLES["original"])
        assert o.status_code == 200 and o.json()[0]["driver_id"] == "max-verstappen"
        bad = c.post(
            "/predict_full", json={"drivers": [{"driver_id": "x", "practice": {"fp1": -1}}]}
        )
        assert bad.status_code == 400 and "fp1" in bad.text and "Traceback" not in bad.text
        metrics = c.get("/metrics").text
        assert re.search(r'bentoml_service_request_total\{.*endpoint="/predict_full"', metrics)


def test_sdk_round_trip(server: str, pinned_env: dict[str, str]) -> None:
    with F1Client(server) as f1:
        assert f1.is_ready()
        full = f1.predict_full(EXAMPLES["known_event"])
        assert full.metadata.model_versions["stage1"] == pinned_env["F1_STAGE1_MODEL"]
        assert full.metadata.inference_ms > 0
        # 2025 round 8 is in the served models' training data: flagged, and said
        assert full.metadata.fitted_on_event
        assert any("knows how the event went" in w for w in full.metadata.warnings)
        assert not f1.predict_full(EXAMPLES["custom_field"]).metadata.fitted_on_event  # 2026
        quali = f1.predict_quali(EXAMPLES["custom_field"])
        assert {q.driver_id for q in quali} == {"max-verstappen", "lando-norris", "charles-leclerc"}
        race = f1.predict_race(EXAMPLES["race_with_grid"])
        assert [r.predicted_rank for r in race] == [1, 2, 3, 4]
        assert f1.health()["models"]["features"]["tag"] == pinned_env["F1_FEATURES_MODEL"]
        with pytest.raises(F1APIError) as err:
            f1.predict_full({"event": {"season": 2025, "round": 29}})
        assert err.value.status == 422 and err.value.detail[0]["loc"] == ["body", "event", "round"]


def test_64_concurrent_full_predictions_all_succeed(server: str) -> None:
    """Regression for BentoML 1.4.30-40 recycling inter-service connections under load."""

    async def burst() -> list[int | str]:
        async with AsyncF1Client(server, timeout=60) as f1:
            out: list[int | str] = []
            for r in range(5):  # 320 calls: well past the 100-calls-per-connection recycle
                calls = [f1.predict_full({"event": {"season": 2025, "round": 1 + (i + r) % 24}})
                         for i in range(64)]  # fmt: skip
                for res in await asyncio.gather(*calls, return_exceptions=True):
                    ok = not isinstance(res, BaseException)
                    out.append(len(res.race_winner_predictions) if ok else repr(res))
            return out

    calls_before, logged_before = _stage1_calls(server), logged(LEDGER)
    results = asyncio.run(burst())
    errors = [r for r in results if r != 20]
    assert len(results) == 320 and errors == [], errors[:3]  # 20 drivers in every answer
    # every answer is in the prediction log, by default SQLite beside the model store
    assert wait_logged(LEDGER, logged_before + 320, 20) >= logged_before + 320
    assert httpx.get(f"{server}/health", timeout=10).json()["ledger"]["url"] == LEDGER
    # ... through fewer Stage-1 calls, counted over every process (the front workers each
    # merge their own concurrent requests; /health counts one process, /metrics all)
    assert 0 < _stage1_calls(server) - calls_before < 320


LEDGER = f"sqlite:///{STORE_HOME / 'f1-ledger.sqlite3'}"


def _stage1_calls(server: str) -> float:
    """Calls that reached Stage-1's batcher: the sum of BentoML's batch-size histogram."""
    text = httpx.get(f"{server}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("bentoml_service_adaptive_batch_size_sum{")
        and 'method_name="predict_gap"' in line
    )


def test_explanations_through_the_real_model_services(server: str) -> None:
    """explain_gap/explain_logit return 2-D arrays through BentoML's batching and IPC:
    concurrent requests of different fields each get their own rows back, equal to the
    same request alone, and each answer adds up (base + contributions = logit, whose
    softmax over the asked whole field is the win probability)."""
    bodies = [{"event": {"season": 2025, "round": r}, "explain": True} for r in (3, 8, 12, 19)]
    bodies.append(EXAMPLES["explain"])
    with httpx.Client(base_url=server, timeout=60) as c:
        alone = [c.post("/predict_full", json=b).json() for b in bodies]
    for a in alone:
        a["metadata"].pop("inference_ms")

    async def burst() -> list[Any]:
        async with httpx.AsyncClient(base_url=server, timeout=60) as c:
            calls = [c.post("/predict_full", json=bodies[i % len(bodies)]) for i in range(20)]
            return [r.json() for r in await asyncio.gather(*calls)]

    for i, got in enumerate(asyncio.run(burst())):
        want = alone[i % len(bodies)]
        got["metadata"].pop("inference_ms")
        assert got == want, i
    for full in alone[:4]:
        race = full["race_winner_predictions"]
        logits = [
            r["explanation"]["base"] + sum(c["value"] for c in r["explanation"]["contributions"])
            for r in race
        ]
        e = [math.exp(v - max(logits)) for v in logits]
        for r, w in zip(race, e, strict=True):
            assert r["win_probability"] == pytest.approx(w / sum(e), abs=1e-9)
            assert r["driver_name"] and r["podium_probability"] >= r["win_probability"]
        for q in full["qualifying_predictions"]:
            assert q["explanation"]["unit"] == "gap %" and q["constructor_name"]
    with F1Client(server) as f1:
        typed = f1.predict_race(EXAMPLES["race_with_grid"] | {"explain": True})
        assert all(r.explanation is not None and r.explanation.unit == "log-odds" for r in typed)
        assert sum(r.points_probability for r in typed) <= 4.0 + 1e-9


def test_built_bento_serves(pinned_env: dict[str, str], tmp_path: Path) -> None:
    """`bentoml build` records the three models; the built Bento serves from any folder."""
    env = os.environ | pinned_env | {"BENTOML_HOME": str(STORE_HOME)}
    bentoml = str(Path(sys.executable).parent / "bentoml")
    out = subprocess.run([bentoml, "build", "--output", "tag"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    tag = out.stdout.strip().splitlines()[-1].split()[-1].removeprefix("__tag__:")
    info = subprocess.run([bentoml, "get", tag, "-o", "json"], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert info.returncode == 0, info.stderr
    for t in pinned_env.values():
        assert t in info.stdout
    proc, url = start_server(tag, pinned_env, tmp_path / "bento.log")
    try:
        r = httpx.post(f"{url}/predict_full", json=EXAMPLES["known_event"], timeout=30)
        assert r.status_code == 200
        assert r.json()["metadata"]["model_versions"]["stage2"] == pinned_env["F1_STAGE2_MODEL"]
    finally:
        stop_server(proc)
    bento_src = STORE_HOME / "bentos" / tag.split(":")[0] / tag.split(":")[1] / "src"
    shipped = {p.relative_to(bento_src).as_posix() for p in bento_src.rglob("*") if p.is_file()}
    assert "service.py" in shipped and "pipelines/features/snapshot.py" in shipped
    assert "pipelines/serving/orchestrator.py" in shipped
    assert not any(s.startswith(("tests/", "training/", "data/", "bench/")) for s in shipped)
    assert not any(s.endswith(".pyc") for s in shipped), shipped


def test_model_tags_can_be_pinned_for_rollback(pinned_env: dict[str, str], tmp_path: Path) -> None:
    """A second training run moves `latest`; a server pinned to the first still serves it."""
    from pipelines.features.snapshot import FeatureSnapshot
    from pipelines.models import store

    snap = store.open_snapshot(store.get_model(pinned_env["F1_FEATURES_MODEL"]))
    newer = store.save_snapshot(FeatureSnapshot(snap.frames, snap.meta))
    assert newer != pinned_env["F1_FEATURES_MODEL"]
    proc, url = start_server("service:F1Predictor", pinned_env, tmp_path / "pinned.log")
    try:
        h = httpx.get(f"{url}/health", timeout=10).json()
        assert h["models"]["features"]["tag"] == pinned_env["F1_FEATURES_MODEL"]
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def locked_server(pinned_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server with an API key and a small in-flight limit (overload at small scale)."""
    env = pinned_env | {"F1_API_KEY": "test-key-123", "F1_MAX_IN_FLIGHT": "4",
                        "F1_CORS_ORIGINS": '["https://app.example"]'}  # fmt: skip
    with serving(env, tmp_path_factory.mktemp("locked") / "serve.log") as url:
        yield url


def test_api_key_guards_predictions_but_not_probes(locked_server: str) -> None:
    body = {"event": {"season": 2025, "round": 8}}
    with httpx.Client(base_url=locked_server, timeout=30) as c:
        assert c.post("/predict_full", json=body).status_code == 401
        assert c.get("/model_info").status_code == 401
        bad = c.post("/predict_full", json=body, headers={"Authorization": "Bearer test-key-12"})
        assert bad.status_code == 401 and bad.json()["detail"][0]["loc"] == [
            "header",
            "authorization",
        ]
        ok = c.post("/predict_full", json=body, headers={"Authorization": "Bearer test-key-123"})
        assert ok.status_code == 200
        for probe in ("/livez", "/readyz", "/health", "/metrics", "/"):
            assert c.get(probe).status_code == 200, probe


def test_huge_body_is_413_and_errors_leak_nothing(locked_server: str) -> None:
    auth = {"Authorization": "Bearer test-key-123", "content-type": "application/json"}
    with httpx.Client(base_url=locked_server, timeout=30) as c:
        huge = b'{"drivers": [' + b'{"driver_id": "max-verstappen"},' * 40000 + b"{}]}"
        r = c.post("/predict_full", content=huge, headers=auth)
        assert r.status_code == 413
        r = c.post("/predict_quali", json={"drivers": [{"driver_id": "x", "practice": {"fp1": "inf"}}]},
                   headers=auth)  # fmt: skip
        assert r.status_code == 400 and r.json()["detail"][0]["loc"][-1] == "fp1"
        for leak in ("pydantic", "Traceback", "/work/", "site-packages", "IODescriptor"):
            assert leak not in r.text, leak


def test_overload_sheds_with_503_then_recovers(locked_server: str) -> None:
    """At many times the in-flight limit: answers or 503 + Retry-After, never 5xx else."""
    auth = {"Authorization": "Bearer test-key-123"}

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=locked_server, timeout=60, headers=auth) as c:
            return await asyncio.gather(*[
                c.post("/predict_full", json={"event": {"season": 2025, "round": 1 + i % 24}})
                for i in range(64)
            ])  # fmt: skip

    responses = asyncio.run(burst())
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503}, codes
    assert codes.count(200) >= 4 and codes.count(503) > 0
    assert all(r.headers.get("retry-after") == "1" for r in responses if r.status_code == 503)
    ok = httpx.post(f"{locked_server}/predict_full", json={"event": {"season": 2025, "round": 8}},
                    headers=auth, timeout=30)  # fmt: skip
    assert ok.status_code == 200  # recovered as soon as load dropped


def test_logs_are_json_lines_with_the_echoed_request_id(server: str, server_log: Path) -> None:
    import json

    body = {"event": {"season": 2025, "round": 3}}
    r = httpx.post(f"{server}/predict_full", json=body, timeout=30)
    request_id = r.headers["x-request-id"]
    given = httpx.post(f"{server}/predict_full", json=body, timeout=30,
                       headers={"X-Request-ID": "client-chosen-42"})  # fmt: skip
    assert given.headers["x-request-id"] == "client-chosen-42"
    junk = httpx.post(f"{server}/predict_full", json=body, timeout=30,
                      headers={"X-Request-ID": "bad id\twith spaces"})  # fmt: skip
    assert junk.headers["x-request-id"] != "bad id\twith spaces"  # replaced, not echoed
    deadline = time.monotonic() + 10
    mine: list[dict[str, Any]] = []
    while time.monotonic() < deadline and len(mine) < 2:
        records = [json.loads(line) for line in server_log.read_text().splitlines()
                   if line.startswith("{")]  # fmt: skip
        mine = [rec for rec in records
                if rec.get("request_id") in (request_id, "client-chosen-42")]  # fmt: skip
        time.sleep(0.2)
    assert len(mine) == 2, f"no JSON access lines for {request_id} / client-chosen-42"
    for rec in mine:
        assert rec["component"] == "F1Predictor" and rec["logger"] == "f1.access"
        assert rec["path"] == "/predict_full" and rec["status"] == 200 and rec["duration_ms"] > 0


def test_cors_only_for_the_allow_list(locked_server: str, server: str) -> None:
    pre = {"Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "authorization,content-type"}  # fmt: skip
    ok = httpx.options(f"{locked_server}/predict_full",
                       headers=pre | {"Origin": "https://app.example"}, timeout=10)  # fmt: skip
    assert ok.headers.get("access-control-allow-origin") == "https://app.example"
    bad = httpx.options(f"{locked_server}/predict_full",
                        headers=pre | {"Origin": "https://evil.example"}, timeout=10)  # fmt: skip
    assert "access-control-allow-origin" not in bad.headers
    off = httpx.get(f"{server}/health", headers={"Origin": "https://app.example"}, timeout=10)
    assert "access-control-allow-origin" not in off.headers  # CORS is off by default


def test_own_error_responses_carry_cors_headers(locked_server: str) -> None:
    """401, 413 and 503 come from the project's middlewares: a browser must still see the
    status, so they carry Access-Control-Allow-Origin for an allowed origin."""
    origin = {"Origin": "https://app.example"}
    auth = {"Authorization": "Bearer test-key-123"}
    body = {"event": {"season": 2025, "round": 8}}
    with httpx.Client(base_url=locked_server, timeout=30) as c:
        r401 = c.post("/predict_full", json=body, headers=origin)
        assert r401.status_code == 401
        assert r401.headers.get("access-control-allow-origin") == "https://app.example"
        huge = b'{"drivers": [' + b'{"driver_id": "max-verstappen"},' * 40000 + b"{}]}"
        r413 = c.post("/predict_full", content=huge,
                      headers=origin | auth | {"content-type": "application/json"})  # fmt: skip
        assert r413.status_code == 413
        assert r413.headers.get("access-control-allow-origin") == "https://app.example"
        evil = c.post("/predict_full", json=body, headers={"Origin": "https://evil.example"})
        assert evil.status_code == 401 and "access-control-allow-origin" not in evil.headers

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=locked_server, timeout=60,
                                     headers=auth | origin) as c:  # fmt: skip
            return await asyncio.gather(*[
                c.post("/predict_full", json={"event": {"season": 2025, "round": 1 + i % 24}})
                for i in range(64)
            ])  # fmt: skip

    shed = [r for r in asyncio.run(burst()) if r.status_code == 503]
    assert shed, "the burst never overloaded the server"
    assert all(r.headers.get("access-control-allow-origin") == "https://app.example" for r in shed)


def test_a_rejected_body_is_one_warning_access_line_not_an_error(
    server: str, server_log: Path
) -> None:
    """A client's mistake (400) is logged once, at WARNING, with the field and reason; no
    ERROR record and no traceback (BentoML logs one for every invalid body)."""
    import json

    rid = "bad-body-check-1"
    r = httpx.post(f"{server}/predict_full", timeout=30, headers={"X-Request-ID": rid},
                   json={"drivers": [], "event": {"season": 2025, "round": 8}})  # fmt: skip
    assert r.status_code == 400
    mine: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not mine:
        records = [json.loads(line) for line in server_log.read_text().splitlines()
                   if line.startswith("{")]  # fmt: skip
        mine = [rec for rec in records if rec.get("request_id") == rid]
        time.sleep(0.2)
    assert len(mine) == 1, mine
    line = mine[0]
    assert line["level"] == "WARNING" and line["status"] == 400 and "exc" not in line
    assert "drivers" in line["reason"]
    errors = [rec for rec in records if rec["level"] == "ERROR"]
    assert not [e for e in errors if "Exception on /predict" in e["msg"]], errors[:3]


def test_docs_json_is_the_project_spec(server: str) -> None:
    """One OpenAPI document, at BentoML's path too, with the project's own identity."""
    ours = httpx.get(f"{server}/openapi.json", timeout=10).json()
    at_bentoml_path = httpx.get(f"{server}/docs.json", timeout=10).json()
    assert at_bentoml_path == ours
    info = ours["info"]
    assert info["title"] == "F1 Prediction API" and info["license"]["name"] == "MIT"
    assert "BentoML" not in json.dumps(info) and info["contact"]["name"]
    err = ours["paths"]["/predict_full"]["post"]["responses"]["400"]
    assert err["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
