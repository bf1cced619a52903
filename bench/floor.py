"""In-process floors for one 20-driver request, timed with no server and no HTTP: the
models alone (``model_floor``: Stage-1 ``predict_gap`` + Stage-2 ``raw_score``) and each
step around them."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.baselines import Loaded, full_response, load_models, parse_quali, resolve
from bench.load import JITTER_S
from pipelines.models.placings import PODIUM, POINTS, classified_top_k
from pipelines.models.pole import pole_estimate
from pipelines.serving.orchestrator import TwoStage, race_grid, run


def _time(fn: Callable[[], Any], iterations: int) -> dict[str, float]:
    fn()
    samples = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    us = sorted(t * 1e6 for t in samples)
    stats = {"mean_us": statistics.fmean(us), "p50_us": us[len(us) // 2]}
    return {"iterations": iterations, **stats, "p99_us": us[min(len(us) - 1, len(us) * 99 // 100)]}


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


def jittered(body: dict[str, Any], rng: random.Random, spread_s: float = JITTER_S) -> bytes:
    """The body with every lap moved by up to +-``spread_s`` (a new body every call)."""

    def move(laps: dict[str, float]) -> dict[str, float]:
        return {s: round(t + rng.uniform(-spread_s, spread_s), 3) for s, t in laps.items()}

    drivers = [{**d, "practice": move(d["practice"])} for d in body["drivers"]]
    return json.dumps({**body, "drivers": drivers}).encode()


def measure(
    loaded: Loaded, body: bytes, iterations: int = 2000, practice_body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Per-step costs of one request (``body``: the /predict_full request), with memo hits
    and, from ``practice_body`` jittered per call, without."""
    from bench.baselines import OriginalPipeline, feature_frame
    from pipelines.features.spec import STAGE1

    snap = loaded.snapshot
    flow = TwoStage.local(loaded.snapshot, loaded.stage1, loaded.stage2)
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

    def features(memo: bool = True) -> None:
        if not memo:  # the per-event caches stay: a server keeps them too
            snap.memo.pop("stage1", None)
            snap.memo.pop("stage2", None)
        snap.stage1_rows(ctx, fld)
        snap.stage2_rows(ctx, fld.entries, grid, q_gap)

    def response() -> None:
        full_response(loaded, res, fc, time.perf_counter()).model_dump_json()

    loop = asyncio.new_event_loop()  # one loop, as in a server: no set-up per request

    def whole(request: bytes) -> None:
        t0 = time.perf_counter()
        r = resolve(loaded, parse_quali(request))
        f = loop.run_until_complete(flow.full(r.event, r.field, r.rows))
        full_response(loaded, r, f, t0).model_dump_json()

    rng = random.Random(20261202)
    template = practice_body or with_practice(snap, json.loads(body))
    jitter_bodies = [jittered(template, rng) for _ in range(few + 1)]
    jitter_iter = iter(jitter_bodies * 2)

    # podium and points of a field whose strengths no memo has seen (the served finish rate)
    strength = np.asarray(fc.race.logit if fc.race is not None else np.zeros(len(fld.entries)))
    finish = s2.config.finish_rate
    moves = np.random.default_rng(20261203).uniform(-0.05, 0.05, (iterations + 1, len(strength)))
    fresh = iter(strength + moves)

    def placings_fresh() -> None:
        classified_top_k(next(fresh), (PODIUM, POINTS), finish)

    def original_stage1() -> None:
        orig.pre1.transform(feature_frame(x1, STAGE1.names))

    steps: dict[str, tuple[Callable[[], Any], int]] = {
        "model_floor": (models, iterations),
        "stage1_predict_gap": (lambda: s1.predict_gap(x1), iterations),
        "stage2_raw_score": (lambda: s2.raw_score(x2), iterations),
        "parse_and_resolve": (lambda: resolve(loaded, parse_quali(body)), few),
        "numpy_features_both_stages": (features, iterations),
        "pole_estimate": (lambda: pole_estimate(snap, ctx, fld.laps, s1.config.pole), few),
        "placings_fresh_field": (placings_fresh, iterations),
        "response_models_and_json": (response, few),
        "dataframe_plus_columntransformer_stage1": (original_stage1, few),
        "in_process_request_plain_path": (lambda: whole(body), few),
        "numpy_features_both_stages_no_memo": (lambda: features(memo=False), few),
        "in_process_request_jittered_laps": (lambda: whole(next(jitter_iter)), few),
    }
    out: dict[str, Any] = {"rows": len(fld.entries)}
    out.update((name, _time(fn, n)) for name, (fn, n) in steps.items())
    out["check"] = {"gap_finite": bool(np.isfinite(s1.predict_gap(x1)).all())}
    loop.close()
    return out


def measure_served(
    body: dict[str, Any], iterations: int, log: Callable[[str], None]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The floors of ``body`` on the served models (no server running yet), and ``body``
    with every driver's own laps: the template of the jittered requests."""
    loaded = load_models()
    log(f"floor: {iterations} iterations")
    practice = with_practice(loaded.snapshot, body)
    res = measure(loaded, json.dumps(body).encode(), iterations, practice_body=practice)
    log(
        f"  model floor {res['model_floor']['mean_us']:.0f} us, whole request in-process "
        f"{res['in_process_request_plain_path']['mean_us']:.0f} us (memo hits), "
        f"{res['in_process_request_jittered_laps']['mean_us']:.0f} us (jittered laps)"
    )
    return res, practice
