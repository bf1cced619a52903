"""The original architecture, rebuilt: FastAPI, one uvicorn worker with its defaults
(access log on), per request a pandas DataFrame of the feature rows through a fitted
scikit-learn ``ColumnTransformer`` before each stage's ``predict``.

The transformers only cast to float, so the answers equal the Bento's, but every request
pays the DataFrame and ColumnTransformer work the original design paid.

    python -m bench.original_server --port 3101
"""

from __future__ import annotations

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

from bench import common
from bench.common import Loaded
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
        s1 = loaded.stage1
        self.flow = TwoStage(
            self.snapshot,
            self.stage1,
            self.stage2,
            s1.config.pole,
            s1.config.pole_tau,
            explain1=self.explain1,
            explain2=self.explain2,
            finish=loaded.stage2.config.finish_rate,
            pole_tau_ahead=s1.config.pole_tau_ahead,
        )

    def frame1(self, x1: np.ndarray) -> pd.DataFrame:
        return self.pre1.transform(feature_frame(x1, STAGE1.names))[list(STAGE1.names)]

    def frame2(self, x2: np.ndarray) -> pd.DataFrame:
        return self.pre2.transform(feature_frame(x2, STAGE2.names))[list(STAGE2.names)]

    async def stage1(self, x1: np.ndarray) -> np.ndarray:
        return self.loaded.stage1.predict_gap(self.frame1(x1))

    async def stage2(self, x2: np.ndarray) -> np.ndarray:
        return self.loaded.stage2.logit(self.frame2(x2))

    async def explain1(self, x1: np.ndarray) -> np.ndarray:
        return self.loaded.stage1.explain_gap(self.frame1(x1).to_numpy())

    async def explain2(self, x2: np.ndarray) -> np.ndarray:
        return self.loaded.stage2.explain_logit(self.frame2(x2).to_numpy())

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
    loaded = loaded or common.load_models()
    pipe = OriginalPipeline(loaded)
    app = FastAPI(title="F1 Prediction API (original architecture)")

    @app.post("/predict_full")
    async def predict_full(request: QualiRequest, response: Response) -> FullResponse:
        t0 = time.perf_counter()
        try:
            res = common.resolve(loaded, request, race=True)
        except RequestError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)  # type: ignore[return-value]
        fc = await pipe.flow.full(res.ctx, res.field, res.rows, request.explain)
        response.headers.update(common.warn_header(res))
        return common.full_response(loaded, res, fc, t0)

    @app.post("/predict_quali")
    async def predict_quali(request: QualiRequest) -> Any:
        try:
            res = common.resolve(loaded, request)
        except RequestError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        fc = await pipe.flow.quali(res.ctx, res.field, res.rows, request.explain)
        return JSONResponse(common.quali_json(fc), headers=common.warn_header(res))

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    return app


if __name__ == "__main__":
    common.serve(create_app, 3101, access_log=True, freeze=False)
