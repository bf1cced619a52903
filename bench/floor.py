"""In-process floors for one 20-driver request: the models alone, and each step around them.

Timed in this process (no server, no HTTP) over many iterations, on the same stored
models the servers use. ``model_floor`` is the issue's "model floor": Stage-1
``predict_gap`` + Stage-2 ``raw_score`` on the request's feature rows.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.common import Loaded, full_response, local_flow, parse_quali, resolve
from pipelines.models.placings import PODIUM, POINTS, classified_top_k
from pipelines.models.pole import pole_estimate
from pipelines.serving.orchestrator import race_grid, run


def _time(fn: Callable[[], Any], iterations: int) -> dict[str, float]:
    fn()
    samples = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    samples.sort()
    return {
        "iterations": iterations,
        "mean_us": statistics.fmean(samples) * 1e6,
        "p50_us": samples[len(samples) // 2] * 1e6,
        "p99_us": samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1e6,
    }


def with_practice(snap: Any, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` (an event in the data) with every entered driver and their own practice
    laps from the data: the template the jittered requests vary."""
    ev = body["event"]
    ctx = snap.event_by_round(ev["season"], ev["round"])
    drivers = [
        {"driver_id": e.driver_id, "practice": dict(e.practice)}
        for e in snap.event_field(ctx).entries
        if e.practice
    ]
    return {"event": dict(ev), "drivers": drivers}


def jittered(body: dict[str, Any], rng: random.Random, spread_s: float = 0.25) -> bytes:
    """The body with every lap moved by up to +-``spread_s`` (a new body every call)."""
    drivers = [
        {
            **d,
            "practice": {
                s: round(t + rng.uniform(-spread_s, spread_s), 3) for s, t in d["practice"].items()
            },
        }
        for d in body["drivers"]
    ]
    return json.dumps({**body, "drivers": drivers}).encode()


def measure(
    loaded: Loaded, body: bytes, iterations: int = 2000, practice_body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Per-step costs of one request (``body``: the /predict_full request), with memo hits
    and, from ``practice_body`` jittered per call, without."""
    from bench.original_server import OriginalPipeline, feature_frame
    from pipelines.features.spec import STAGE1

    snap = loaded.snapshot
    flow = local_flow(loaded)
    req = parse_quali(body)
    res = resolve(loaded, req)
    ctx, fld = res.event, res.field
    fc = run(flow.full(ctx, fld, res.rows))
    x1 = snap.stage1_rows(ctx, fld)
    grid, q_gap = race_grid(fld.entries, fc.quali)
    x2 = snap.stage2_rows(ctx, fld.entries, grid, q_gap)
    s1, s2 = loaded.stage1, loaded.stage2
    orig = OriginalPipeline(loaded)
    few = max(50, iterations // 10)

    def models() -> None:
        s1.predict_gap(x1)
        s2.raw_score(x2)

    def features() -> None:
        snap.stage1_rows(ctx, fld)
        snap.stage2_rows(ctx, fld.entries, grid, q_gap)

    def response() -> None:
        full_response(loaded, res, fc, time.perf_counter()).model_dump_json()

    loop = asyncio.new_event_loop()  # one loop, as in a server: no set-up per request

    def whole() -> None:
        t0 = time.perf_counter()
        r = resolve(loaded, parse_quali(body))
        f = loop.run_until_complete(flow.full(r.event, r.field, r.rows))
        full_response(loaded, r, f, t0).model_dump_json()

    rng = random.Random(20261202)
    template = practice_body or with_practice(snap, json.loads(body))
    jitter_bodies = [jittered(template, rng) for _ in range(few + 1)]
    jitter_iter = iter(jitter_bodies * 2)

    def features_no_memo() -> None:  # the per-event caches stay: a server keeps them too
        snap.memo.pop("stage1", None)
        snap.memo.pop("stage2", None)
        snap.stage1_rows(ctx, fld)
        snap.stage2_rows(ctx, fld.entries, grid, q_gap)

    def whole_jittered() -> None:
        t0 = time.perf_counter()
        r = resolve(loaded, parse_quali(next(jitter_iter)))
        f = loop.run_until_complete(flow.full(r.event, r.field, r.rows))
        full_response(loaded, r, f, t0).model_dump_json()

    # podium and points of a field whose strengths no memo has seen (the served finish rate)
    strength = np.asarray(fc.race.logit if fc.race is not None else np.zeros(len(fld.entries)))
    finish = s2.config.finish_rate
    moves = np.random.default_rng(20261203).uniform(-0.05, 0.05, (iterations + 1, len(strength)))
    fresh = iter(strength + moves)

    def placings_fresh() -> None:
        classified_top_k(next(fresh), (PODIUM, POINTS), finish)

    steps = {
        "model_floor": (models, iterations),
        "stage1_predict_gap": (lambda: s1.predict_gap(x1), iterations),
        "stage2_raw_score": (lambda: s2.raw_score(x2), iterations),
        "parse_and_resolve": (lambda: resolve(loaded, parse_quali(body)), few),
        "numpy_features_both_stages": (features, iterations),
        "pole_estimate": (
            lambda: pole_estimate(snap, ctx, fld.laps, s1.config.pole),
            few,
        ),
        "placings_fresh_field": (placings_fresh, iterations),
        "response_models_and_json": (response, few),
        "dataframe_plus_columntransformer_stage1": (
            lambda: orig.pre1.transform(feature_frame(x1, STAGE1.names)),
            few,
        ),
        "in_process_request_plain_path": (whole, few),
        "numpy_features_both_stages_no_memo": (features_no_memo, few),
        "in_process_request_jittered_laps": (whole_jittered, few),
    }
    out: dict[str, Any] = {"rows": len(fld.entries)}
    for name, (fn, n) in steps.items():
        out[name] = _time(fn, n)
    out["check"] = {"gap_finite": bool(np.isfinite(s1.predict_gap(x1)).all())}
    loop.close()
    return out
