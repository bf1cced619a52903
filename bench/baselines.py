"""The two servers the Bento is measured against, on the same stored models, resolution,
two-stage flow and response builders: their JSON equals the Bento's but for
``metadata.inference_ms``.

- ``plain``, the limit: bare Starlette, the project's numpy features and both models
  in-process; no DataFrame, no process hop, no access log.
- ``original``, the original architecture rebuilt: FastAPI with uvicorn's defaults (access
  log on); per request a pandas DataFrame through a fitted scikit-learn
  ``ColumnTransformer`` before each stage's ``predict``. The transformers only cast to
  float, so the answers stay equal, but every request pays what the original design paid.

Each runs one uvicorn worker on asyncio's own loop: a single saturated process on uvloop
starves some connections (bench/analysis.md).

    python -m bench.baselines plain --port 3102
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from fastapi import FastAPI
from fastapi import Response as FastAPIResponse
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipelines.features.snapshot import FeatureSnapshot
from pipelines.features.spec import STAGE1, STAGE2
from pipelines.models import store
from pipelines.models.stage1 import Stage1Model
from pipelines.models.stage2 import Stage2Model
from pipelines.serving import responses
from pipelines.serving.errors import RequestError
from pipelines.serving.orchestrator import Forecast, TwoStage
from pipelines.serving.resolve import Resolved, ServedModels, resolve_request
from pipelines.serving.schemas import FullResponse, QualiRequest
from pipelines.serving.text import warnings_header
from pipelines.settings import get_settings

if TYPE_CHECKING:  # scikit-learn is not a serving dependency: the plain server goes without
    from sklearn.pipeline import Pipeline


@dataclass
class Loaded:
    snapshot: FeatureSnapshot
    stage1: Stage1Model
    stage2: Stage2Model
    tags: dict[str, str]
    """Resolved tags (``name:version``), as the Bento reports them in metadata."""
    served: ServedModels


def load_models() -> Loaded:
    """The three models named by the ``F1_*_MODEL`` settings, from the active store."""
    s = get_settings()
    feat, m1, m2 = (store.get_model(t) for t in (s.features_model, s.stage1_model, s.stage2_model))
    tags = {"features": str(feat.tag), "stage1": str(m1.tag), "stage2": str(m2.tag)}
    return Loaded(
        snapshot=store.open_snapshot(feat),
        stage1=store.open_stage1(m1),
        stage2=store.open_stage2(m2),
        tags=tags,
        served=ServedModels.of(m1, m2),
    )


def parse_quali(body: bytes) -> QualiRequest:
    """The same pydantic model (and so the same validation) as the Bento's endpoint."""
    return QualiRequest.model_validate_json(body or b"{}")


def validation_body(exc: ValidationError) -> dict[str, Any]:
    errors = json.loads(exc.json(include_url=False))
    where = [".".join(map(str, e.get("loc", []))) for e in errors]
    return {
        "error": "; ".join(f"{w}: {e.get('msg', '')}" for w, e in zip(where, errors, strict=True)),
        "detail": [{"loc": ["body", *e.get("loc", [])], "msg": e.get("msg", "")} for e in errors],
    }


def resolve(loaded: Loaded, req: QualiRequest, race: bool = False) -> Resolved:
    """As the Bento resolves it (``race``: for a win forecast, with its warnings)."""
    return resolve_request(loaded.snapshot, req.event, req.drivers, loaded.served, race=race)


def quali_json(fc: Forecast) -> list[dict[str, Any]]:
    return [p.model_dump() for p in responses.quali_predictions(fc)]


def full_response(loaded: Loaded, res: Resolved, fc: Forecast, t0: float) -> FullResponse:
    return responses.full_response(res, fc, loaded.tags, t0)


# ------------------------------------------------------------------------ plain


def plain_app(loaded: Loaded | None = None) -> Starlette:
    loaded = loaded or load_models()
    flow = TwoStage.local(loaded.snapshot, loaded.stage1, loaded.stage2)

    async def predict_full(request: Request) -> Response:
        t0 = time.perf_counter()
        try:
            req = parse_quali(await request.body())
            res = resolve(loaded, req, race=True)
        except ValidationError as exc:
            return JSONResponse(validation_body(exc), status_code=422)
        except RequestError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        fc = await flow.full(res.event, res.field, res.rows, req.explain)
        body = full_response(loaded, res, fc, t0).model_dump_json()
        headers = warnings_header(res.warnings)
        return Response(body, media_type="application/json", headers=headers)

    async def predict_quali(request: Request) -> Response:
        try:
            req = parse_quali(await request.body())
            res = resolve(loaded, req)
        except ValidationError as exc:
            return JSONResponse(validation_body(exc), status_code=422)
        except RequestError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        fc = await flow.quali(res.event, res.field, res.rows, req.explain)
        return JSONResponse(quali_json(fc), headers=warnings_header(res.warnings))

    async def readyz(_: Request) -> Response:
        return Response("ok", media_type="text/plain")

    return Starlette(
        routes=[
            Route("/predict_full", predict_full, methods=["POST"]),
            Route("/predict_quali", predict_quali, methods=["POST"]),
            Route("/readyz", readyz, methods=["GET"]),
        ]
    )


# --------------------------------------------------------------------- original


def build_preprocessor(names: Sequence[str]) -> Pipeline:
    """Two column groups through float casts; output a DataFrame with the same columns."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    names, half = list(names), len(names) // 2
    cast = [FunctionTransformer(_as_float, feature_names_out="one-to-one") for _ in range(2)]
    groups = [("pace", cast[0], names[:half]), ("form", cast[1], names[half:])]
    columns = ColumnTransformer(groups, remainder="drop", verbose_feature_names_out=False)
    return Pipeline([("columns", columns)]).set_output(transform="pandas")


def _as_float(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype("float64")


def feature_frame(x: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
    """The feature rows as the original built them: one record per driver."""
    return pd.DataFrame.from_records([dict(zip(names, row, strict=True)) for row in x])


class OriginalPipeline:
    """Both stages the original way: DataFrame -> ColumnTransformer -> predict, as the
    model calls of the project's one two-stage flow."""

    def __init__(self, loaded: Loaded, sample_events: int = 6) -> None:
        self.loaded = loaded
        self.pre1 = build_preprocessor(STAGE1.names)
        self.pre2 = build_preprocessor(STAGE2.names)
        self._fit(sample_events)
        c1, c2 = loaded.stage1.config, loaded.stage2.config
        self.flow = TwoStage(
            loaded.snapshot, c1, c2, self.stage1, self.stage2, self.explain1, self.explain2
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
        snap = self.loaded.snapshot
        ev = snap.events[snap.events["has_results"]].tail(n)
        f1, f2 = [], []
        for season, rnd in zip(ev["season"], ev["round"], strict=True):
            ctx = snap.event_by_round(int(season), int(rnd))
            if ctx is None or not (fld := snap.event_field(ctx)).entries:
                continue
            x1 = snap.stage1_rows(ctx, fld)
            gap = self.loaded.stage1.predict_gap(x1)
            grid = np.argsort(np.argsort(gap)).astype(float) + 1.0
            f1.append(feature_frame(x1, STAGE1.names))
            f2.append(feature_frame(snap.stage2_rows(ctx, fld.entries, grid, gap), STAGE2.names))
        if not f1:
            raise RuntimeError("no event with an entry list to fit the preprocessor on")
        self.pre1.fit(pd.concat(f1, ignore_index=True))
        self.pre2.fit(pd.concat(f2, ignore_index=True))


def original_app(loaded: Loaded | None = None) -> FastAPI:
    loaded = loaded or load_models()
    flow = OriginalPipeline(loaded).flow
    app = FastAPI(title="F1 Prediction API (original architecture)")

    @app.post("/predict_full")
    async def predict_full(request: QualiRequest, response: FastAPIResponse) -> FullResponse:
        t0 = time.perf_counter()
        try:
            res = resolve(loaded, request, race=True)
        except RequestError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)  # type: ignore[return-value]
        fc = await flow.full(res.event, res.field, res.rows, request.explain)
        response.headers.update(warnings_header(res.warnings))
        return full_response(loaded, res, fc, t0)

    @app.post("/predict_quali")
    async def predict_quali(request: QualiRequest) -> Any:
        try:
            res = resolve(loaded, request)
        except RequestError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        fc = await flow.quali(res.event, res.field, res.rows, request.explain)
        return JSONResponse(quali_json(fc), headers=warnings_header(res.warnings))

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    return app


if __name__ == "__main__":
    import uvicorn

    from pipelines.serving.heap import freeze_startup_heap

    ap = argparse.ArgumentParser(description="Serve one of the two baselines.")
    ap.add_argument("server", choices=("plain", "original"))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=3102)
    args = ap.parse_args()
    plain = args.server == "plain"
    app = plain_app() if plain else original_app()
    if plain:
        freeze_startup_heap()  # as the Bento's processes do
    level = "warning" if plain else "info"
    uvicorn.run(
        app, host=args.host, port=args.port, loop="asyncio", access_log=not plain, log_level=level
    )
