"""In-process floors for one 20-driver request: the models alone, and each step around them.

Timed in this process (no server, no HTTP) over many iterations, on the same stored
models the servers use. ``model_floor`` is the issue's "model floor": Stage-1
``predict_gap`` + Stage-2 ``raw_score`` on the request's feature rows.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.common import Loaded, full_response, parse_quali, resolve
from pipelines.predict import Predictor, pole_estimate, race_gap, race_grid


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


def measure(loaded: Loaded, body: bytes, iterations: int = 2000) -> dict[str, Any]:
    """Per-step costs of one request (``body``: the /predict_full request)."""
    from bench.original_server import OriginalPipeline, feature_frame
    from pipelines.features import STAGE1_FEATURES

    snap = loaded.snapshot
    pred = Predictor(snap, loaded.stage1, loaded.stage2)
    req = parse_quali(body)
    res = resolve(loaded, req)
    ctx, entries, fieldp = res.ctx, res.entries, res.field_practice
    x1 = snap.stage1_matrix(ctx, entries, fieldp)
    q = pred.quali(ctx, entries, fieldp)
    grid = race_grid(entries, q.grid)
    x2 = snap.stage2_matrix(ctx, entries, grid, race_gap(entries, q.gap_pct))
    s1, s2 = loaded.stage1, loaded.stage2
    orig = OriginalPipeline(loaded)
    few = max(50, iterations // 10)

    def models() -> None:
        s1.predict_gap(x1)
        s2.raw_score(x2)

    def features() -> None:
        snap.stage1_matrix(ctx, entries, fieldp)
        snap.stage2_matrix(ctx, entries, grid, race_gap(entries, q.gap_pct))

    prob = pred.race(ctx, entries, q)

    def response() -> None:
        full_response(loaded, res, q, prob, time.perf_counter()).model_dump_json()

    def whole() -> None:
        t0 = time.perf_counter()
        r = resolve(loaded, parse_quali(body))
        qq = pred.quali(r.ctx, r.entries, r.field_practice)
        p = pred.race(r.ctx, r.entries, qq)
        full_response(loaded, r, qq, p, t0).model_dump_json()

    steps = {
        "model_floor": (models, iterations),
        "stage1_predict_gap": (lambda: s1.predict_gap(x1), iterations),
        "stage2_raw_score": (lambda: s2.raw_score(x2), iterations),
        "parse_and_resolve": (lambda: resolve(loaded, parse_quali(body)), few),
        "numpy_features_both_stages": (features, iterations),
        "pole_estimate": (
            lambda: pole_estimate(snap, ctx, fieldp, s1.config.pole),
            few,
        ),
        "response_models_and_json": (response, few),
        "dataframe_plus_columntransformer_stage1": (
            lambda: orig.pre1.transform(feature_frame(entries, x1, STAGE1_FEATURES)),
            few,
        ),
        "in_process_request_plain_path": (whole, few),
    }
    out: dict[str, Any] = {"rows": len(entries)}
    for name, (fn, n) in steps.items():
        out[name] = _time(fn, n)
    out["check"] = {"gap_finite": bool(np.isfinite(s1.predict_gap(x1)).all())}
    return out
