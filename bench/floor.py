"""In-process floors of one 20-driver request, no server, no HTTP: the models alone
(``model_floor``: Stage-1 ``predict_gap`` + Stage-2 ``raw_score``) and each step around them."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from bench.baselines import load_models, parse_quali, resolve
from bench.load import JITTER_S
from pipelines.models.placings import PODIUM, POINTS, classified_top_k
from pipelines.models.pole import pole_estimate
from pipelines.serving.orchestrator import TwoStage, race_grid, run
from pipelines.serving.responses import full_response


def _time(fn: Callable[[], Any], iterations: int) -> dict[str, float]:
    fn()
    us = np.empty(iterations)
    for i in range(iterations):
        t0 = time.perf_counter()
        fn()
        us[i] = (time.perf_counter() - t0) * 1e6
    p50, p99 = np.percentile(us, [50, 99], method="higher")
    return {"iterations": iterations, "mean_us": us.mean(), "p50_us": p50, "p99_us": p99}


def jittered(body: dict[str, Any], rng: random.Random) -> bytes:
    """The body with every lap moved by up to +-``JITTER_S`` (a new body every call)."""

    def move(laps: dict[str, float]) -> dict[str, float]:
        return {s: round(t + rng.uniform(-JITTER_S, JITTER_S), 3) for s, t in laps.items()}

    drivers = [{**d, "practice": move(d["practice"])} for d in body["drivers"]]
    return json.dumps({**body, "drivers": drivers}).encode()


def measure(
    body: dict[str, Any], iterations: int, log: Callable[[str], None]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-step costs of the /predict_full ``body``, with memo hits and (own laps jittered per
    call) without; and the jittered requests' template (the drivers' own practice laps)."""
    from bench.baselines import build_preprocessor, feature_frame
    from pipelines.features.spec import STAGE1

    loaded = load_models()
    log(f"floor: {iterations} iterations")
    snap, s1, s2 = loaded.snapshot, loaded.stage1, loaded.stage2
    flow = TwoStage.local(snap, s1, s2)
    raw = json.dumps(body).encode()
    res = resolve(loaded, parse_quali(raw))
    ctx, fld = res.event, res.field
    fc = run(flow.full(ctx, fld, res.rows))
    x1 = snap.stage1_rows(ctx, fld)
    grid, q_gap = race_grid(fld.entries, fc.quali)
    x2 = snap.stage2_rows(ctx, fld.entries, grid, q_gap)
    pre1, frame1 = build_preprocessor(STAGE1.names), partial(feature_frame, x1, STAGE1.names)
    few = max(50, iterations // 10)

    def features(memo: bool = True) -> None:
        if not memo:  # the per-event caches stay: a server keeps them too
            snap.memo.pop("stage1", None)
            snap.memo.pop("stage2", None)
        snap.stage1_rows(ctx, fld)
        snap.stage2_rows(ctx, fld.entries, grid, q_gap)

    def response() -> None:
        full_response(res, fc, loaded.tags, time.perf_counter()).model_dump_json()

    loop = asyncio.new_event_loop()  # one loop, as in a server: no set-up per request

    def whole(request: bytes) -> None:
        t0 = time.perf_counter()
        r = resolve(loaded, parse_quali(request))
        f = loop.run_until_complete(flow.full(r.event, r.field, r.rows))
        full_response(r, f, loaded.tags, t0).model_dump_json()

    # the template the jittered requests vary: every entered driver with their own laps
    entries = snap.event_field(ctx).entries
    drivers = [{"driver_id": e.driver_id, "practice": dict(e.practice)} for e in entries]
    practice = {"event": dict(body["event"]), "drivers": [d for d in drivers if d["practice"]]}
    rng = random.Random(20261202)
    jitter_iter = iter([jittered(practice, rng) for _ in range(few + 1)] * 2)

    # podium and points of a field whose strengths no memo has seen (the served finish rate)
    strength = np.asarray(fc.race.logit if fc.race is not None else np.zeros(len(fld.entries)))
    moves = np.random.default_rng(20261203).uniform(-0.05, 0.05, (iterations + 1, len(strength)))
    fresh = iter(strength + moves)
    top, finish = (PODIUM, POINTS), s2.config.finish_rate

    steps: dict[str, tuple[Callable[[], Any], int]] = {
        "model_floor": (lambda: (s1.predict_gap(x1), s2.raw_score(x2)), iterations),
        "stage1_predict_gap": (lambda: s1.predict_gap(x1), iterations),
        "stage2_raw_score": (lambda: s2.raw_score(x2), iterations),
        "parse_and_resolve": (lambda: resolve(loaded, parse_quali(raw)), few),
        "numpy_features_both_stages": (features, iterations),
        "pole_estimate": (lambda: pole_estimate(snap, ctx, fld.laps, s1.config.pole), few),
        "placings_fresh_field": (lambda: classified_top_k(next(fresh), top, finish), iterations),
        "response_models_and_json": (response, few),
        "dataframe_plus_columntransformer_stage1": (lambda: pre1.transform(frame1()), few),
        "in_process_request_plain_path": (lambda: whole(raw), few),
        "numpy_features_both_stages_no_memo": (lambda: features(memo=False), few),
        "in_process_request_jittered_laps": (lambda: whole(next(jitter_iter)), few),
    }
    out: dict[str, Any] = {"rows": len(fld.entries)}
    out.update((name, _time(fn, n)) for name, (fn, n) in steps.items())
    out["check"] = {"gap_finite": bool(np.isfinite(s1.predict_gap(x1)).all())}
    loop.close()
    log(
        f"  model floor {out['model_floor']['mean_us']:.0f} us, whole request in-process "
        f"{out['in_process_request_plain_path']['mean_us']:.0f} us (memo hits), "
        f"{out['in_process_request_jittered_laps']['mean_us']:.0f} us (jittered laps)"
    )
    return out, practice
