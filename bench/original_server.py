"""The original architecture, rebuilt: FastAPI under one uvicorn worker, per request a
pandas DataFrame of the feature rows, a scikit-learn preprocessing pipeline (a
``ColumnTransformer`` fitted once at startup on a sample of feature rows) and each
stage's ``predict`` on the transformed DataFrame.

The transformers only cast to float (trees need no scaling, and an identity transform
keeps the answers equal to the Bento's), but every request pays the DataFrame and
ColumnTransformer work the original design paid. uvicorn runs with its defaults, as
the original container did (``uvicorn src.serve.app:app``: access log on).

    python -m bench.original_server --port 3101
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from bench.common import Loaded, full_response, load_models, quali_json, resolve, warn_header
from pipelines.features import STAGE1_FEATURES, STAGE2_FEATURES, Entry, EventContext
from pipelines.predict import QualiOut, pole_estimate, quali_outputs, race_gap, race_grid
from pipelines.schemas import FullResponse, QualiRequest
from pipelines.serving import RequestError


def _as_float(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype("float64")


def build_preprocessor(names: Sequence[str]) -> Pipeline:
    """Two column groups through float casts; output a DataFrame with the same columns."""
    names = list(names)
    half = len(names) // 2
    columns = ColumnTransformer(
        [
            ("pace", FunctionTransformer(_as_float, feature_names_out="one-to-one"), names[:half]),
            ("form", FunctionTransformer(_as_float, feature_names_out="one-to-one"), names[half:]),
        ],
        remainder="drop",
        verbose_feature_names_out=False,
    )
    return Pipeline([("columns", columns)]).set_output(transform="pandas")


def feature_frame(entries: Sequence[Entry], x: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
    """The feature rows as the original built them: one record per driver."""
    records = [
        {
            "driver_id": e.driver_id,
            "constructor_id": e.constructor_id,
            **dict(zip(names, row, strict=True)),
        }
        for e, row in zip(entries, x, strict=True)
    ]
    return pd.DataFrame.from_records(records)


class OriginalPipeline:
    """Both stages the original way: DataFrame -> ColumnTransformer -> predict."""

    def __init__(self, loaded: Loaded, sample_events: int = 6) -> None:
        self.loaded = loaded
        self.snapshot = loaded.snapshot
        self.pre1 = build_preprocessor(STAGE1_FEATURES)
        self.pre2 = build_preprocessor(STAGE2_FEATURES)
        self._fit(sample_events)

    def _fit(self, n: int) -> None:
        """Fit the transformers once, on the feature rows of the last ``n`` events."""
        snap = self.snapshot
        ev = snap.events[snap.events["has_results"]].tail(n)
        f1, f2 = [], []
        for season, rnd in zip(ev["season"], ev["round"], strict=True):
            ctx = snap.event_by_round(int(season), int(rnd))
            if ctx is None:
                continue
            entries = snap.entries(ctx)
            if not entries:
                continue
            fieldp = snap.field_practice(ctx)
            x1 = snap.stage1_matrix(ctx, entries, fieldp)
            f1.append(feature_frame(entries, x1, STAGE1_FEATURES))
            gap = self.loaded.stage1.predict_gap(x1)
            grid = np.argsort(np.argsort(gap)).astype(float) + 1.0
            x2 = snap.stage2_matrix(ctx, entries, grid, gap)
            f2.append(feature_frame(entries, x2, STAGE2_FEATURES))
        if not f1:
            raise RuntimeError("no event with an entry list to fit the preprocessor on")
        self.pre1.fit(pd.concat(f1, ignore_index=True))
        self.pre2.fit(pd.concat(f2, ignore_index=True))

    def quali(
        self, ctx: EventContext, entries: Sequence[Entry], field: dict[str, list[float]]
    ) -> QualiOut:
        x1 = self.snapshot.stage1_matrix(ctx, entries, field)
        frame = self.pre1.transform(feature_frame(entries, x1, STAGE1_FEATURES))
        gap = self.loaded.stage1.predict_gap(frame[list(STAGE1_FEATURES)])
        s1 = self.loaded.stage1
        pole = pole_estimate(self.snapshot, ctx, field, s1.config.pole)
        return quali_outputs(gap, pole, s1.config.pole_tau, [e.driver_id for e in entries])

    def race(self, ctx: EventContext, entries: Sequence[Entry], q: QualiOut) -> np.ndarray:
        grid = race_grid(entries, q.grid)
        x2 = self.snapshot.stage2_matrix(ctx, entries, grid, race_gap(entries, q.gap_pct))
        frame = self.pre2.transform(feature_frame(entries, x2, STAGE2_FEATURES))
        groups = np.zeros(len(entries), dtype=int)
        return self.loaded.stage2.win_probability(frame[list(STAGE2_FEATURES)], groups)


def create_app(loaded: Loaded | None = None) -> FastAPI:
    loaded = loaded or load_models()
    pipe = OriginalPipeline(loaded)
    app = FastAPI(title="F1 Prediction API (original architecture)")

    @app.post("/predict_full")
    async def predict_full(request: QualiRequest) -> FullResponse:
        t0 = time.perf_counter()
        try:
            res = resolve(loaded, request)
        except RequestError as exc:
            return JSONResponse(exc.body(), status_code=422)  # type: ignore[return-value]
        q = pipe.quali(res.ctx, res.entries, res.field_practice)
        prob = pipe.race(res.ctx, res.entries, q)
        return full_response(loaded, res, q, prob, t0)

    @app.post("/predict_quali")
    async def predict_quali(request: QualiRequest) -> Any:
        try:
            res = resolve(loaded, request)
        except RequestError as exc:
            return JSONResponse(exc.body(), status_code=422)
        q = pipe.quali(res.ctx, res.entries, res.field_practice)
        return JSONResponse(quali_json(res, q), headers=warn_header(res))

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=3101)
    args = ap.parse_args()
    from bench.common import serve

    serve(create_app(), args.host, args.port, access_log=True)


if __name__ == "__main__":
    main()
