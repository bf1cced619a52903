"""The service in-process and through its ASGI app (real models, real snapshot)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from starlette.testclient import TestClient

from pipelines.features.spec import STAGE1, STAGE2
from pipelines.serving.schemas import (
    DRIVER_PATTERN,
    EXAMPLES,
    LAP_PATTERN,
    QualiRequest,
    RaceRequest,
)
from tests.session import REAL_DATA

pytestmark = pytest.mark.slow

MONACO_2025 = REAL_DATA / "seasons/2025/races/08-monaco"


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def client(bento_client: TestClient) -> TestClient:
    return bento_client


@pytest.fixture(scope="module")
def svc(service_module: Any) -> Any:
    return service_module.F1Predictor()


def test_in_process_full_known_event_uses_the_entry_list(svc: Any) -> None:
    res = asyncio.run(
        svc.predict_full(QualiRequest.model_validate(EXAMPLES["known_event"]), context=None)
    )
    racers = {r["driverId"] for r in _yaml(MONACO_2025 / "race-results.yml")}
    q_ids = [p.driver_id for p in res.qualifying_predictions]
    assert set(q_ids) == racers
    assert sorted(p.grid_position_estimate for p in res.qualifying_predictions) == list(
        range(1, len(racers) + 1)
    )
    assert math.isclose(
        sum(p.probability_score for p in res.qualifying_predictions), 1.0, abs_tol=1e-9
    )
    assert math.isclose(
        sum(p.win_probability for p in res.race_winner_predictions), 1.0, abs_tol=1e-9
    )
    assert [p.predicted_rank for p in res.race_winner_predictions] == list(
        range(1, len(racers) + 1)
    )
    probs = [p.win_probability for p in res.race_winner_predictions]
    assert probs == sorted(probs, reverse=True)
    # a plausible Monaco lap (the track record is ~1:10), from practice x pole ratio
    times = [p.predicted_time for p in res.qualifying_predictions]
    assert all(t is not None and 68.0 < t < 76.0 for t in times)
    assert res.metadata.event["circuit_id"] == "monaco"


def test_service_matches_the_in_process_flow(svc: Any, pinned_env: dict[str, str]) -> None:
    """Same snapshot and models give the same numbers through the Bento and the CLI path
    (one flow, ``TwoStage``, with the models called remotely or in-process)."""
    from pipelines.models import store
    from pipelines.serving.orchestrator import TwoStage

    feat, m1, m2 = (
        store.get_model(pinned_env[f"F1_{k}_MODEL"]) for k in ("FEATURES", "STAGE1", "STAGE2")
    )
    snap = store.open_snapshot(feat)
    flow = TwoStage.local(snap, store.open_stage1(m1), store.open_stage2(m2))
    ctx = snap.event_by_round(2025, 8)
    assert ctx is not None
    fld = snap.event_field(ctx)
    fc = asyncio.run(flow.full(ctx, fld, np.arange(len(fld.entries))))
    assert fc.race is not None
    res = asyncio.run(
        svc.predict_full(QualiRequest.model_validate(EXAMPLES["known_event"]), context=None)
    )
    by_id = {p.driver_id: p for p in res.race_winner_predictions}
    for e, w, g in zip(fld.entries, fc.race.win_prob, fc.race.grid, strict=True):
        assert by_id[e.driver_id].win_probability == pytest.approx(float(w), rel=1e-9)
        assert by_id[e.driver_id].grid_position == g


def test_given_grid_is_used_by_predict_race(svc: Any) -> None:
    """Given slots are kept; the rest of the field fills the free slots behind them, and
    the probabilities are the field's (they sum to 1 over the whole field)."""
    body = EXAMPLES["race_with_grid"]
    resp = asyncio.run(svc.predict_race(RaceRequest.model_validate(body), context=None))
    rows = {r.driver_id: r for r in resp}
    for d in body["drivers"]:
        assert rows[d["driver_id"]].grid_position == d["grid_position"]
    given_ids = [d["driver_id"] for d in body["drivers"]]
    everyone = [{"driver_id": e} for e in given_ids] + [
        {"driver_id": r.driver_id}
        for r in asyncio.run(
            svc.predict_race(RaceRequest.model_validate({"event": body["event"]}), context=None)
        )
        if r.driver_id not in given_ids
    ]
    for d, g in zip(everyone, body["drivers"], strict=False):
        d["grid_position"] = g["grid_position"]
    field = asyncio.run(
        svc.predict_race(
            RaceRequest.model_validate({"event": body["event"], "drivers": everyone}), context=None
        )
    )
    assert sorted(r.grid_position for r in field) == list(range(1, len(field) + 1))
    assert math.isclose(sum(r.win_probability for r in field), 1.0, abs_tol=1e-9)
    by_id = {r.driver_id: r for r in field}
    for d in given_ids:  # the four given slots answer the same with or without the rest
        assert by_id[d].win_probability == pytest.approx(rows[d].win_probability, rel=1e-12)


# ------------------------------------------------------------------------ ASGI


def test_get_routes(client: TestClient, pinned_env: dict[str, str]) -> None:
    assert client.get("/").json() == {
        "service": "F1 Prediction API", "status": "healthy", "models_loaded": True,
    }  # fmt: skip
    h = client.get("/health").json()
    assert h["models"]["stage1"]["tag"] == pinned_env["F1_STAGE1_MODEL"]
    assert h["models"]["stage2"]["tag"] == pinned_env["F1_STAGE2_MODEL"]
    assert h["models"]["features"]["tag"] == pinned_env["F1_FEATURES_MODEL"]
    assert h["data"]["latest_event"]["season"] == 2025
    assert h["uptime_s"] >= 0 and h["version"]
    info = client.get("/model_info").json()
    assert info["stage1"]["feature_names"] == list(STAGE1.names)
    assert info["stage1"]["feature_count"] == len(STAGE1)
    assert info["stage2"]["feature_names"] == list(STAGE2.names)
    assert info["stage1"]["metrics"]["test"]["season"] == 2025
    assert "winner_log_loss" in info["stage2"]["metrics"]["test"]
    chained = info["stage2"]["metrics"]["test_chained"]  # before qualifying (/predict_full)
    assert chained["season"] == 2025 and "winner_log_loss" in chained
    assert "test_chained" in info["stage2"]["metrics"]["baselines"]["logistic_grid"]
    assert "stage2.metrics.test_chained" in info["metrics_guide"]
    assert info["stage2"]["metrics"]["rules_reset"]["test"] == {"races": 0}  # none in 2025
    assert "stage2.metrics.rules_reset" in info["metrics_guide"]
    pole = info["stage1"]["metrics"]["pole"]  # the odds /predict_quali serves, scored
    assert pole["test"]["season"] == 2025 and "uniform" in pole["baselines"]
    assert pole["test"]["log_loss"] < pole["baselines"]["uniform"]["test"]["log_loss"]
    assert "stage1.metrics.pole" in info["metrics_guide"]
    assert set(info["stage2"]["metrics"]["baselines"]) >= {
        "uniform",
        "pole_sitter",
        "logistic_grid",
    }
    assert "F1DB" in info["data_credit"] and "CC-BY-4.0" in info["data_credit"]


def test_docs_work_offline(client: TestClient) -> None:
    html = client.get("/docs").text
    assert "/static_content/swagger-ui-bundle.js" in html and "/openapi.json" in html
    assert "https://" not in html  # nothing fetched from the internet
    assert client.get("/static_content/swagger-ui-bundle.js").status_code == 200
    spec = client.get("/openapi.json").json()
    for path in ("/", "/health", "/model_info", "/predict_quali", "/predict_race", "/predict_full"):
        assert path in spec["paths"], path
    examples = spec["paths"]["/predict_quali"]["post"]["requestBody"]["content"][
        "application/json"
    ]["examples"]
    assert examples["original"]["value"] == EXAMPLES["original"]


def test_original_example_request_works(client: TestClient) -> None:
    r = client.post("/predict_quali", json=EXAMPLES["original"])
    assert r.status_code == 200
    rows = r.json()
    assert len(rows) == 1 and rows[0]["driver_id"] == "max-verstappen"  # car 1 in 2025
    assert rows[0]["grid_position_estimate"] == 1 and rows[0]["probability_score"] == 1.0
    assert "humidity" in r.headers["x-f1-warnings"] and "temperature" in r.headers["x-f1-warnings"]
    full = client.post("/predict_full", json=EXAMPLES["original"]).json()
    assert any("not used by the model" in w for w in full["metadata"]["warnings"])


def test_car_numbers_resolve_per_season(client: TestClient) -> None:
    grid = _yaml(REAL_DATA / "seasons/2025/races/08-monaco/starting-grid-positions.yml")
    number_to_id = {int(r["driverNumber"]): r["driverId"] for r in grid}
    nums = sorted(number_to_id)[:3]
    body = {"event": {"season": 2025, "round": 8},
            "drivers": [{"driver_id": n} for n in nums[:2]] + [{"driver_id": str(nums[2])}]}  # fmt: skip
    rows = client.post("/predict_quali", json=body).json()
    assert {r["driver_id"] for r in rows} == {number_to_id[n] for n in nums}


def test_unknown_driver_and_team_get_a_prediction_and_a_warning(client: TestClient) -> None:
    body = {"event": {"season": 2025, "round": 8},
            "drivers": [{"driver_id": "max-verstappen"},
                        {"driver_id": "jane-rookie", "constructor_id": "new-team"}]}  # fmt: skip
    r = client.post("/predict_full", json=body)
    assert r.status_code == 200
    warnings = " ".join(r.json()["metadata"]["warnings"])
    assert "jane-rookie" in warnings and "new-team" in warnings
    assert len(r.json()["race_winner_predictions"]) == 2


def test_same_input_same_output(client: TestClient) -> None:
    a = client.post("/predict_full", json=EXAMPLES["custom_field"]).json()
    b = client.post("/predict_full", json=EXAMPLES["custom_field"]).json()
    a["metadata"].pop("inference_ms")
    b["metadata"].pop("inference_ms")
    assert a == b


BAD = [
    ("empty drivers", {"drivers": []}, 400, ["drivers"]),
    ("duplicated", {"event": {"season": 2025, "round": 8},
                    "drivers": [{"driver_id": "max-verstappen"}, {"driver_id": 1}]}, 422,
     ["body", "drivers", 1, "driver_id"]),
    ("31 drivers", {"drivers": [{"driver_id": f"d-{i}"} for i in range(31)]}, 400, ["drivers"]),
    ("negative lap", {"drivers": [{"driver_id": "x", "practice": {"fp1": -80}}]}, 400,
     ["drivers", 0, "practice", "fp1"]),
    ("NaN lap", {"drivers": [{"driver_id": "x", "practice": {"fp2": "NaN"}}]}, 400,
     ["drivers", 0, "practice", "fp2"]),
    ("absurd lap", {"drivers": [{"driver_id": "x", "practice": {"fp3": 1000}}]}, 400,
     ["drivers", 0, "practice", "fp3"]),
    ("unknown round", {"event": {"season": 2025, "round": 28}}, 422, ["body", "event", "round"]),
    ("unknown season", {"event": {"season": 1999, "round": 3}}, 422, ["body", "event", "round"]),
    ("half an event", {"event": {"season": 2026}}, 400, ["event"]),
    ("wrong type", {"drivers": "max"}, 400, ["drivers"]),
    ("bad id", {"drivers": [{"driver_id": "Max Verstappen!"}]}, 400, ["drivers", 0, "driver_id"]),
    ("bad session", {"session_type": "race"}, 400, ["session_type"]),
    ("10,000 drivers", {"drivers": [{"driver_id": f"d-{i}"} for i in range(10_000)]}, 400,
     ["drivers"]),
    ("unicode id", {"drivers": [{"driver_id": "max-verstäppen"}]}, 400, ["drivers", 0, "driver_id"]),
    ("emoji team", {"drivers": [{"driver_id": "x", "constructor_id": "🏎"}]}, 400,
     ["drivers", 0, "constructor_id"]),
    ("date out of range", {"event": {"season": 2026, "circuit_id": "monaco",
                                     "date": "9999-01-01"}}, 400, ["event"]),
    ("season out of range", {"event": {"season": 3000, "round": 1}}, 400, ["event", "season"]),
    ("date of another season", {"event": {"season": 2026, "circuit_id": "monaco",
                                          "date": "2025-06-07"}}, 400, ["event"]),
    ("round at another circuit", {"event": {"season": 2025, "round": 8,
                                            "circuit_id": "spa-francorchamps"}}, 422,
     ["body", "event", "circuit_id"]),
    ("round on another date", {"event": {"season": 2025, "round": 8, "date": "2025-05-26"}},
     422, ["body", "event", "date"]),
    ("empty driver", {"drivers": [{}]}, 400, ["drivers", 0, "driver_id"]),
    ("unknown field", {"drivers": [{"driver_id": "x"}], "weather": "wet"}, 400, ["weather"]),
    ("unicode circuit", {"event": {"season": 2026, "circuit_id": "東京", "date": "2026-06-07"},
                         "drivers": [{"driver_id": 1}]}, 400, ["event", "circuit_id"]),
]  # fmt: skip


@pytest.mark.parametrize("path", ["/predict_quali", "/predict_race"])
@pytest.mark.parametrize("name", ["a\r\nb", "\u00c2L\ud9dc\udfff\u00ed", "🏎 speed", "x" * 300])
def test_any_unknown_field_name_is_a_warning_in_a_valid_header(
    client: TestClient, path: str, name: str
) -> None:
    """Unknown driver fields are accepted with a warning; the field's name is user text
    and must reach the X-F1-Warnings header escaped (it was a 500, or no response)."""
    body = {"event": {"season": 2025, "round": 8}, "drivers": [{"driver_id": 1, name: None}]}
    raw = json.dumps(body, ensure_ascii=True).encode()
    r = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    header = r.headers["x-f1-warnings"]
    assert header.isascii() and "\r" not in header and "\n" not in header
    assert "inputs not used" in header


def test_empty_object_uses_the_defaults_and_says_what_is_missing(client: TestClient) -> None:
    """{} asks for the next event; the data has no event after its last results, so there
    is no entry list: a 422 naming `drivers` and saying why (no event was given, the
    calendar has run out at the latest results), not a 500."""
    r = client.post("/predict_full", json={})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "drivers"]
    msg = r.json()["detail"][0]["msg"]
    assert "no event was given" in msg and "2025 round 24" in msg, msg


@pytest.mark.parametrize("raw", [b'{"drivers": [{"driver_id": "x", "practice": {"fp1": NaN}}]}',
                                 b'{"drivers": [{"driver_id": "x", "practice": {"fp1": Infinity}}]}',
                                 b'{"drivers": [{"driver_id": "x", "temperature": -Infinity}]}'])  # fmt: skip
def test_nan_and_infinity_json_numbers_are_400(client: TestClient, raw: bytes) -> None:
    r = client.post("/predict_full", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["detail"][0]["loc"][:2] == ["drivers", 0]


@pytest.mark.parametrize("path", ["/predict_quali", "/predict_full"])
@pytest.mark.parametrize(("name", "body", "status", "loc"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_4xx_naming_the_field(
    client: TestClient, path: str, name: str, body: Any, status: int, loc: list[Any]
) -> None:
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert any(d["loc"][: len(loc)] == loc for d in detail), detail
    assert "Traceback" not in r.text


MONACO = {"season": 2025, "round": 8}
OTHER_TYPES = [
    ("explain 0", {"event": MONACO, "explain": 0}, ["explain"], "boolean"),
    ("explain 'true'", {"event": MONACO, "explain": "true"}, ["explain"], "boolean"),
    ("season '2025'", {"event": {"season": "2025", "round": 8}}, ["event", "season"], "integer"),
    ("round 8.0", {"event": {"season": 2025, "round": 8.0}}, ["event", "round"], "integer"),
    ("grid_position 1.0", {"event": MONACO, "drivers": [{"driver_id": 1, "grid_position": 1.0}]},
     ["drivers", 0, "grid_position"], "integer"),
    ("grid_position '1'", {"event": MONACO, "drivers": [{"driver_id": 1, "grid_position": "1"}]},
     ["drivers", 0, "grid_position"], "integer"),
]  # fmt: skip
"""Values the schema forbids that pydantic's lax mode used to convert (answered 200)."""


@pytest.mark.parametrize("path", ["/predict_quali", "/predict_race", "/predict_full"])
@pytest.mark.parametrize(
    ("name", "body", "loc", "kind"), OTHER_TYPES, ids=[c[0] for c in OTHER_TYPES]
)
def test_a_value_of_another_type_is_a_400_naming_the_field(
    client: TestClient, path: str, name: str, body: Any, loc: list[Any], kind: str
) -> None:
    r = client.post(path, json=body)
    assert r.status_code == 400, r.text
    assert [(d["loc"], d["msg"]) for d in r.json()["detail"]] == [
        (loc, f"Input should be a valid {kind}")
    ]


@pytest.mark.parametrize("spec_path", ["/openapi.json", "/docs.json"])
def test_both_documents_publish_the_request_models_as_validated(
    client: TestClient, spec_path: str
) -> None:
    """The request body schema is the model's own JSON schema (what the server checks);
    tests/pipelines/serving/test_schemas.py shows the models accept exactly that."""
    spec = client.get(spec_path).json()
    schemas = spec["components"]["schemas"]
    for path, model in (("/predict_quali", QualiRequest), ("/predict_full", QualiRequest),
                        ("/predict_race", RaceRequest)):  # fmt: skip
        body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert body["schema"] == {"$ref": f"#/components/schemas/{model.__name__}"}, path
        own = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, schema in {model.__name__: own, **own.pop("$defs")}.items():
            assert schemas[name] == schema, name
    event = schemas["EventInput"]["properties"]
    assert event["season"]["type"] == "integer"
    assert event["round"]["anyOf"][0]["type"] == "integer"
    assert schemas["QualiRequest"]["properties"]["explain"]["type"] == "boolean"
    driver = schemas["DriverInput"]["properties"]
    assert driver["grid_position"]["anyOf"][0]["type"] == "integer"
    assert [f.get("pattern") for f in driver["driver_id"]["anyOf"]] == [DRIVER_PATTERN, None]
    assert [f.get("pattern") for f in driver["qualifying_time"]["anyOf"]] == [
        None,
        LAP_PATTERN,
        None,
    ]


@pytest.mark.parametrize(
    ("url", "loc"),
    [("/events/2025/8.0", ["path", "round"]), ("/events/2025.0/8", ["path", "season"]),
     ("/events/%208/8", ["path", "season"]), ("/events?season=2025.0", ["query", "season"])],
)  # fmt: skip
def test_an_integer_in_the_url_is_digits_only(client: TestClient, url: str, loc: list[str]) -> None:
    r = client.get(url)
    assert r.status_code == 400, r.text
    assert r.json()["detail"][0]["loc"] == loc
    assert client.get("/events/2025/8").status_code == 200


def test_a_path_no_route_serves_is_a_json_404(client: TestClient) -> None:
    for url in ("/events/2025/8%2F1", "/nowhere", "/predict_full/x"):
        r = client.get(url)
        assert r.status_code == 404 and r.json()["error"] == "no such path", (url, r.text)


def test_a_body_declared_as_another_media_type_is_415(client: TestClient) -> None:
    for media in ("multipart/form-data", "application/x-www-form-urlencoded", "text/plain"):
        r = client.post("/predict_full", content=b'{"event": {"season": 2025, "round": 8}}',
                        headers={"content-type": media})  # fmt: skip
        assert r.status_code == 415, (media, r.text)
        assert r.json()["detail"][0]["loc"] == ["header", "content-type"]
    ok = client.post("/predict_full", json={"event": MONACO},
                     headers={"content-type": "application/json; charset=utf-8"})  # fmt: skip
    assert ok.status_code == 200, ok.text


def test_malformed_json_is_400(client: TestClient) -> None:
    r = client.post(
        "/predict_race", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert "Invalid JSON" in r.text and "Traceback" not in r.text


def test_race_request_needs_drivers_for_an_event_not_in_the_data(client: TestClient) -> None:
    r = client.post("/predict_race", json={"event": {"season": 2026, "circuit_id": "monaco",
                                                       "date": "2026-06-07"}})  # fmt: skip
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "drivers"]


def test_media_types_are_computed_once(service_module: Any) -> None:
    """The per-response JSON-schema work BentoML does for a media type is done at import:
    the value is what BentoML would compute, and it no longer needs a schema."""
    for svc in (service_module.Stage1, service_module.Stage2, service_module.F1Predictor):
        for name, api in svc.apis.items():
            assert api.output_spec.media_type == "application/json", name


# ---------------------------------------- explanations, podium and points, names


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


@pytest.fixture(scope="module")
def local_models(pinned_env: dict[str, str]) -> Any:
    """The served models loaded in this process: what the raw outputs should be."""
    from pipelines.models import store

    return (
        store.open_snapshot(store.get_model(pinned_env["F1_FEATURES_MODEL"])),
        store.open_stage1(store.get_model(pinned_env["F1_STAGE1_MODEL"])),
        store.open_stage2(store.get_model(pinned_env["F1_STAGE2_MODEL"])),
    )


def _total(ex: dict[str, Any]) -> float:
    return float(ex["base"]) + sum(float(c["value"]) for c in ex["contributions"])


def test_explanations_over_http_add_up_to_the_models_raw_outputs(
    client: TestClient, local_models: Any
) -> None:
    """base + sum(values) = Stage-1's unclipped gap and Stage-2's logit (1e-6), checked
    against the same models run here, on Monaco 2025's whole field."""
    from pipelines.serving.orchestrator import TwoStage, run

    snap, s1, s2 = local_models
    body = {"event": {"season": 2025, "round": 8}, "explain": True}
    r = client.post("/predict_full", json=body)
    assert r.status_code == 200, r.text
    full = r.json()
    ctx = snap.event_by_round(2025, 8)
    fld = snap.event_field(ctx)
    fc = run(TwoStage.local(snap, s1, s2).full(ctx, fld, np.arange(len(fld.entries))))
    assert fc.race is not None
    at = {e.driver_id: i for i, e in enumerate(fld.entries)}
    raw_gap = s1.raw_gap(snap.stage1_rows(ctx, fld))
    for p in full["qualifying_predictions"]:
        ex = p["explanation"]
        assert ex["unit"] == "gap %" and len(ex["contributions"]) == 6
        assert ex["contributions"][-1]["feature"] == "other"
        assert all(c["label"] and c["feature"] != c["label"] for c in ex["contributions"])
        assert _total(ex) == pytest.approx(raw_gap[at[p["driver_id"]]], abs=1e-6)
        if raw_gap[at[p["driver_id"]]] > 0:
            assert _total(ex) == pytest.approx(p["predicted_gap_to_pole_pct"], abs=1e-4)
    logits = np.array([_total(p["explanation"]) for p in full["race_winner_predictions"]])
    for p, total in zip(full["race_winner_predictions"], logits, strict=True):
        assert p["explanation"]["unit"] == "log-odds"
        assert total == pytest.approx(fc.race.logit[at[p["driver_id"]]], abs=1e-6)
    # the whole field was asked: the softmax of the explained logits is the answer
    np.testing.assert_allclose(
        _softmax(logits),
        [p["win_probability"] for p in full["race_winner_predictions"]],
        rtol=0,
        atol=1e-9,
    )


def test_explanations_are_free_when_not_asked(client: TestClient) -> None:
    """No explain call reaches a model service unless asked, and /predict_race asks
    only Stage-2 (the per-stage call counters of /health)."""

    def calls() -> dict[str, int]:
        return {k: v["calls"] for k, v in client.get("/health").json()["batching"].items()}

    event = {"event": {"season": 2025, "round": 8}}
    before = calls()
    for path in ("/predict_quali", "/predict_race", "/predict_full"):
        assert client.post(path, json=event).status_code == 200
        assert client.post(path, json=event | {"explain": False}).status_code == 200
    after = calls()
    assert after["stage1"] == before["stage1"] + 6 and after["stage2"] == before["stage2"] + 4
    assert after["explain1"] == before["explain1"]
    assert after["explain2"] == before["explain2"]
    rows = client.post("/predict_race", json=event | {"explain": True}).json()
    assert all(p["explanation"]["unit"] == "log-odds" for p in rows)
    told = calls()
    assert told["explain1"] == after["explain1"]  # not shown: not computed
    assert told["explain2"] == after["explain2"] + 1
    rows = client.post("/predict_quali", json=event | {"explain": True}).json()
    assert all(p["explanation"]["unit"] == "gap %" for p in rows)
    assert calls()["explain1"] == told["explain1"] + 1
    plain = client.post("/predict_quali", json=event).json()
    assert all(p["explanation"] is None for p in plain)


def test_podium_and_points_over_the_field_and_per_driver(client: TestClient) -> None:
    event = {"event": {"season": 2025, "round": 8}}
    field = client.post("/predict_race", json=event).json()
    n = len(field)
    assert n == 20
    # the winner and at most 2 (9) others classified: a little under 3 (10), cars retire
    assert 2.99 < sum(p["podium_probability"] for p in field) < 3.0
    assert 9.9 < sum(p["points_probability"] for p in field) < 10.0
    for p in field:
        assert 0 <= p["win_probability"] <= p["podium_probability"] <= p["points_probability"] <= 1
    # a driver's numbers are the field's, whoever else is asked
    by_id = {p["driver_id"]: p for p in field}
    pair = client.post(
        "/predict_race",
        json=event | {"drivers": [{"driver_id": "lando-norris"}, {"driver_id": "oscar-piastri"}]},
    ).json()
    for p in pair:
        for k in ("win_probability", "podium_probability", "points_probability"):
            assert p[k] == by_id[p["driver_id"]][k], k
    full = client.post("/predict_full", json=event).json()["race_winner_predictions"]
    assert [p["podium_probability"] for p in full] == [p["podium_probability"] for p in field]


def test_names_in_every_answer(client: TestClient) -> None:
    body = {
        "event": {"season": 2025, "round": 8},
        "drivers": [
            {"driver_id": "max-verstappen"},
            {"driver_id": "jane-rookie", "constructor_id": "new-team"},
        ],
    }
    full = client.post("/predict_full", json=body).json()
    for rows in (full["qualifying_predictions"], full["race_winner_predictions"]):
        by_id = {p["driver_id"]: p for p in rows}
        assert by_id["max-verstappen"]["driver_name"] == "Max Verstappen"
        assert by_id["max-verstappen"]["constructor_name"] == "Red Bull"
        assert by_id["jane-rookie"]["driver_name"] is None
        assert by_id["jane-rookie"]["constructor_name"] is None
    quali = client.post("/predict_quali", json=EXAMPLES["custom_field"]).json()
    assert {p["driver_name"] for p in quali} == {
        "Max Verstappen",
        "Lando Norris",
        "Charles Leclerc",
    }
    assert {p["constructor_name"] for p in quali} == {"Red Bull", "McLaren", "Ferrari"}


def test_model_info_reports_podium_and_points_metrics(client: TestClient) -> None:
    info = client.get("/model_info").json()
    podium, points = (info["stage2"]["metrics"][k] for k in ("podium", "points"))
    assert podium["test"]["season"] == points["test"]["season"] == 2025
    assert {"brier", "log_loss", "top3_hits"} <= set(podium["test"])
    assert {"brier", "log_loss", "top10_hits"} <= set(points["test_chained"])
    assert {"brier", "log_loss"} <= set(podium["baselines"]["grid_slot"]["test"])
    assert {"brier", "log_loss"} <= set(points["baselines"]["grid_slot"]["test"])
    assert 0.7 < podium["finish_rate"] == points["finish_rate"] < 1.0
    assert "classified" in info["metrics_guide"]["stage2.metrics.podium"]


def test_openapi_declares_the_new_fields(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    race = schemas["RacePrediction"]["properties"]
    quali = schemas["QualiPrediction"]["properties"]
    for name in ("driver_name", "constructor_name", "explanation"):
        assert name in race and name in quali, name
        assert race[name].get("description"), name
    assert "podium_probability" in race and "points_probability" in race
    assert "podium_probability" in schemas["RacePrediction"]["required"]
    ex = schemas["Explanation"]["properties"]
    assert set(ex) == {"unit", "base", "contributions"}
    assert ex["unit"]["enum"] == ["gap %", "log-odds"]
    assert set(schemas["Contribution"]["properties"]) == {"feature", "label", "value"}
    for path in ("/predict_quali", "/predict_full"):
        examples = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"][
            "examples"
        ]
        assert examples["explain"]["value"]["explain"] is True
    for path in ("/predict_quali", "/predict_race", "/predict_full"):
        body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        schema = body["schema"]
        if "$ref" in schema:
            schema = schemas[schema["$ref"].split("/")[-1]]
        explain = schema["properties"]["explain"]
        assert explain["default"] is False and explain["type"] == "boolean", path
        assert "free when off" in explain["description"]


def test_a_failing_explainer_is_a_503_naming_the_stage_and_spares_plain_requests(
    svc: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.serving.errors import StageUnavailable

    async def broken(rows: np.ndarray) -> np.ndarray:
        raise ConnectionError("model service gone")

    monkeypatch.setattr(svc.batching["explain2"], "fn", broken)
    body = {"event": {"season": 2025, "round": 8}}
    told = RaceRequest.model_validate(body | {"explain": True})
    with pytest.raises(StageUnavailable) as err:
        asyncio.run(svc.predict_race(told, context=None))
    assert err.value.status == 503 and "stage-2" in err.value.error
    assert err.value.headers["Retry-After"]
    plain = asyncio.run(svc.predict_race(RaceRequest.model_validate(body), context=None))
    assert len(plain) == 20 and all(p.explanation is None for p in plain)


def test_a_call_that_met_a_closing_connection_is_sent_again_with_a_warning(
    svc: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The model service closed the keep-alive connection the call picked (CI saw one
    such 503): the call goes out once more and the request is answered as usual."""
    import aiohttp

    real = svc.batching["stage2"].fn
    failures = [aiohttp.ClientOSError(None, "Can not write request body")]

    async def closing_once(rows: np.ndarray) -> np.ndarray:
        if failures:
            raise failures.pop()
        return np.asarray(await real(rows))

    body = RaceRequest.model_validate({"event": {"season": 2025, "round": 8}})
    want = asyncio.run(svc.predict_race(body, context=None))
    monkeypatch.setattr(svc.batching["stage2"], "fn", closing_once)
    with caplog.at_level(logging.WARNING, logger="f1.service"):
        got = asyncio.run(svc.predict_race(body, context=None))
    assert not failures and [p.model_dump() for p in got] == [p.model_dump() for p in want]
    said = [r for r in caplog.records if r.name == "f1.service"]
    assert [r.levelno for r in said] == [logging.WARNING]
    assert "stage-2" in said[0].getMessage() and "sent again" in said[0].getMessage()


def test_a_win_forecast_under_new_rules_says_it_leans_on_the_grid(client: TestClient) -> None:
    """2026 (new technical rules, no 2026 race in the data): the win forecast is the
    grid-only logit's, and the answer says so; qualifying and a 2025 race do not."""
    body = EXAMPLES["custom_field"]
    full = client.post("/predict_full", json=body)
    assert full.status_code == 200, full.text
    note = "2026: 0 race(s) under the current technical rules in the data"
    assert note in full.headers["x-f1-warnings"]
    assert any(w.startswith(note) and "100%" in w for w in full.json()["metadata"]["warnings"])
    race = client.post("/predict_race", json={k: v for k, v in body.items() if k != "session_type"})
    assert race.status_code == 200, race.text
    assert note in race.headers["x-f1-warnings"]
    # the grid alone: the probabilities fall with the grid slot, whatever the form
    preds = sorted(race.json(), key=lambda p: p["grid_position"])
    wins = [p["win_probability"] for p in preds]
    assert wins == sorted(wins, reverse=True) and wins[0] > wins[-1]
    quali = client.post("/predict_quali", json=body)
    said = quali.headers.get("x-f1-warnings", "")
    assert note not in said  # no win forecast asked
    # the cars' laps are given: Stage-1's practice-only ensemble answers, and says so
    first = "2026: the first race under new technical rules in the data: the qualifying gaps"
    assert first in said and first in full.headers["x-f1-warnings"]
    known = client.post("/predict_race", json=EXAMPLES["race_with_grid"])
    assert "technical rules" not in known.headers.get("x-f1-warnings", "")


def test_readiness_is_the_services_own_bounded_probe(service_module: Any) -> None:
    """BentoML's dependency probe is off (it could hang /readyz for the 30 s traffic
    timeout when a model service died mid-probe); __is_ready__ asks both model services."""
    cfg = service_module.F1Predictor.config
    assert cfg["runner_probe"] == {"enabled": False}
    assert cfg["traffic"]["timeout"] == 30
    assert callable(service_module.F1Predictor.inner.__is_ready__)
