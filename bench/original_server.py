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
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from bench.common import Loaded, full_response, load_models, quali_json, resolve, warn_header
from pipelines.features.spec import STAGE1, STAGE2
from pipelines.serving.errors import RequestError
from pipelines.serving.orchestrator import TwoStage
from pipelines.serving.schemas import FullResponse, QualiRequest


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


def feature_frame(x: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
    """The feature rows as the original built them: one record per driver."""
    return pd.DataFrame.from_records([dict(zip(names, row, strict=True)) for row in x])


class OriginalPipeline:
    """Both stages the original way: DataFrame -> ColumnTransformer -> predict, as the
    model calls of the project's one two-stage flow."""

    def __init__(self, loaded: Loaded, sample_events: int = 6) -> None:
        self.loaded = loaded
        self.snapshot = loaded.snapshot
        self.pre1 = build_preprocessor(STAGE1.names)
        self.pre2 = build_preprocessor(STAGE2.names)
        self._fit(sample_events)
        c1, c2 = loaded.stage1.config, loaded.stage2.config
        self.flow = TwoStage(
            self.snapshot, c1, c2, self.stage1, self.stage2, self.explain1, self.explain2
        )

    async def stage1(self, x1: np.ndarray) -> np.ndarray:
        frame = self.pre1.transform(feature_frame(x1, STAGE1.names))
        return self.loaded.stage1.predict_gap(frame[list(STAGE1.names)])

    async def stage2(self, x2: np.ndarray) -> np.ndarray:
        frame = self.pre2.transform(feature_frame(x2, STAGE2.names))
        return self.loaded.stage2.logit(frame[list(STAGE2.names)])

    async def explain1(self, x1: np.ndarray) -> np.ndarray:
        frame = self.pre1.transform(feature_frame(x1, STAGE1.names))
        return self.loaded.stage1.explain_gap(frame[list(STAGE1.names)].to_numpy())

    async def explain2(self, x2: np.ndarray) -> np.ndarray:
        frame = self.pre2.transform(feature_frame(x2, STAGE2.names))
        return self.loaded.stage2.explain_logit(frame[list(STAGE2.names)].to_numpy())

    def _fit(self, n: int) -> None:
        """Fit the transformers once, on the feature rows of the last ``n`` events."""
        snap = self.snapshot
        ev = snap.events[snap.events["has_results"]].tail(n)
        f1, f2 = [], []
        for season, rnd in zip(ev["season"], ev["round"], strict=True):
            ctx = snap.event_by_round(int(season), int(rnd))
            if ctx is None:
                continue
            fld = snap.event_field(ctx)
            if not fld.entries:
                continue
            x1 = snap.stage1_rows(ctx, fld)
            f1.append(feature_frame(x1, STAGE1.names))
            gap = self.loaded.stage1.predict_gap(x1)
            grid = np.argsort(np.argsort(gap)).astype(float) + 1.0
            x2 = snap.stage2_rows(ctx, fld.entries, grid, gap)
            f2.append(feature_frame(x2, STAGE2.names))
        if not f1:
            raise RuntimeError("no event with an entry list to fit the preprocessor on")
        self.pre1.fit(pd.concat(f1, ignore_index=True))
        self.pre2.fit(pd.concat(f2, ignore_index=True))


def create_app(loaded: Loaded | None = None) -> FastAPI:
    loaded = loaded or load_models()
    pipe = OriginalPipeline(loaded)
    app = FastAPI(title="F1 Prediction API (original architecture)")

    @app.post("/predict_full")
    async def predict_full(request: QualiRequest, response: Response) -> FullResponse:
        t0 = time.perf_counter()
        try:
            res = resolve(loaded, request, race=True)
        except RequestError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)  # type: ignore[return-value]
        fc = await pipe.flow.full(res.event, res.field, res.rows, request.explain)
        response.headers.update(warn_header(res))
        return full_response(loaded, res, fc, t0)

    @app.post("/predict_quali")
    async def predict_quali(request: QualiRequest) -> Any:
        try:
            res = resolve(loaded, request)
        except RequestError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        fc = await pipe.flow.quali(res.event, res.field, res.rows, request.explain)
        return JSONResponse(quali_json(fc), headers=warn_header(res))

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
