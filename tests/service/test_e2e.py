"""End to end: `bentoml serve` in a subprocess, called over HTTP and through the SDK."""

from __future__ import annotations

import asyncio
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipelines.client import AsyncF1Client, F1APIError, F1Client
from pipelines.schemas import EXAMPLES
from tests.conftest import STORE_HOME
from tests.service.conftest import ROOT, start_server, stop_server

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
        bad = c.post("/predict_full", json={"drivers": [{"driver_id": "x", "practice": {"fp1": -1}}]})
        assert bad.status_code == 400 and "fp1" in bad.text and "Traceback" not in bad.text
        metrics = c.get("/metrics").text
        assert re.search(r'bentoml_service_request_total\{.*endpoint="/predict_full"', metrics)


def test_sdk_round_trip(server: str, pinned_env: dict[str, str]) -> None:
    with F1Client(server) as f1:
        assert f1.is_ready()
        full = f1.predict_full(EXAMPLES["known_event"])
        assert full.metadata.model_versions["stage1"] == pinned_env["F1_STAGE1_MODEL"]
        assert full.metadata.inference_ms > 0
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
                    out.append(200 if not isinstance(res, BaseException) else repr(res))
            return out

    results = asyncio.run(burst())
    errors = [r for r in results if r != 200]
    assert len(results) == 320 and errors == [], errors[:3]


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
    assert "service.py" in shipped and "pipelines/features.py" in shipped
    assert not any(s.startswith(("tests/", "training/", "data/")) for s in shipped), shipped


def test_model_tags_can_be_pinned_for_rollback(
    pinned_env: dict[str, str], trained: dict[str, Any], tmp_path: Path
) -> None:
    """A second training run moves `latest`; a server pinned to the first still serves it."""
    from pipelines import store
    from pipelines.features import FeatureSnapshot

    snap = store.load_snapshot(pinned_env["F1_FEATURES_MODEL"])
    newer = store.save_snapshot(FeatureSnapshot(snap.frames, snap.meta))
    assert newer != pinned_env["F1_FEATURES_MODEL"]
    proc, url = start_server("service:F1Predictor", pinned_env, tmp_path / "pinned.log")
    try:
        h = httpx.get(f"{url}/health", timeout=10).json()
        assert h["models"]["features"]["tag"] == pinned_env["F1_FEATURES_MODEL"]
    finally:
        stop_server(proc)
