"""The three benchmarked servers give the same answers (in-process, through their ASGI
apps): the Bento, the original architecture and the plain limit, on the same models."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from bench.run import FULL_BODY, QUALI_BODY
from bench.servers import answer_difference
from pipelines.serving.schemas import EXAMPLES

pytestmark = pytest.mark.slow

REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("/predict_full", FULL_BODY),
    ("/predict_quali", QUALI_BODY),
    ("/predict_quali", FULL_BODY),
    *[("/predict_full", v) for k, v in EXAMPLES.items() if k != "race_with_grid"],
    ("/predict_quali", EXAMPLES["custom_field"]),
    # well-formed but unanswerable: the same 422 body everywhere
    ("/predict_full", {"event": {"season": 2025, "round": 29}}),
]


@pytest.fixture(scope="module")
def clients(bento_client: Any, pinned_env: dict[str, str]):
    from bench import baselines

    loaded = baselines.load_models()  # tags pinned by service_module (F1_* in the environment)
    assert loaded.tags["stage1"] == pinned_env["F1_STAGE1_MODEL"]
    apps = {
        "original": baselines.original_app(loaded),
        "plain": baselines.plain_app(loaded),
    }
    clients = {name: TestClient(app) for name, app in apps.items()}
    for c in clients.values():
        c.__enter__()
    yield {"bento": bento_client, **clients}
    for c in clients.values():
        c.__exit__(None, None, None)


@pytest.mark.parametrize(("path", "body"), REQUESTS, ids=lambda v: str(v)[:40])
def test_same_answer_as_the_bento(clients: dict[str, TestClient], path: str, body: Any) -> None:
    ref = clients["bento"].post(path, json=body)
    for name in ("original", "plain"):
        r = clients[name].post(path, json=body)
        assert r.status_code == ref.status_code, (name, r.text[:300])
        assert answer_difference(r, ref) is None, (name, answer_difference(r, ref))


def test_full_answer_has_20_drivers_and_a_timing(clients: dict[str, TestClient]) -> None:
    for name, c in clients.items():
        body = c.post("/predict_full", json=FULL_BODY).json()
        assert len(body["qualifying_predictions"]) == 20, name
        assert body["metadata"]["inference_ms"] > 0, name


def test_baselines_validate_with_the_same_pydantic_models(clients: dict[str, TestClient]) -> None:
    bad = {"event": {"season": 2025, "round": 8}, "drivers": [{"driver_id": "Max Verstappen"}]}
    for name in ("original", "plain"):
        r = clients[name].post("/predict_full", json=bad)
        assert r.status_code == 422, name
        assert "driver_id" in r.text, name
    assert clients["bento"].post("/predict_full", json=bad).status_code in (400, 422)


def test_readyz(clients: dict[str, TestClient]) -> None:
    for name in ("original", "plain"):
        assert clients[name].get("/readyz").status_code == 200, name
