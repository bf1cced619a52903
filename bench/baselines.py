"""The servers beside the Bento (`python -m bench.baselines plain --port 3102`): its models, flow
and answers. ``plain``, the limit: bare Starlette, numpy features. ``original``: FastAPI, access
log on, a pandas DataFrame through a scikit-learn ``ColumnTransformer`` per model call."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from fastapi import FastAPI
from fastapi import Response as FastAPIResponse
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from pipelines.features.snapshot import FeatureSnapshot
from pipelines.features.spec import STAGE1, STAGE2
from pipelines.models import store
from pipelines.models.stage1 import Stage1Model
from pipelines.models.stage2 import Stage2Model
from pipelines.serving import responses
from pipelines.serving.coalesce import RowsFn
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
    snap, one, two = store.open_snapshot(feat), store.open_stage1(m1), store.open_stage2(m2)
    return Loaded(snap, one, two, tags, ServedModels.of(m1, m2))


def parse_quali(body: bytes) -> QualiRequest:
    """The same pydantic model (and so the same validation) as the Bento's endpoint."""
    return QualiRequest.model_validate_json(body or b"{}")


async def error_response(_: Request, exc: Exception) -> Response:
    """The answer to a request the models cannot serve, or (plain) to an invalid body."""
    if isinstance(exc, RequestError):
        return JSONResponse(exc.body(), status_code=exc.status)
    errors = json.loads(exc.json(include_url=False)) if isinstance(exc, ValidationError) else []
    error = "; ".join(f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg', '')}" for e in errors)
    detail = [{"loc": ["body", *e.get("loc", [])], "msg": e.get("msg", "")} for e in errors]
    return JSONResponse({"error": error, "detail": detail}, status_code=422)


def resolve(loaded: Loaded, req: QualiRequest, race: bool = False) -> Resolved:
    """As the Bento resolves it (``race``: for a win forecast, with its warnings)."""
    return resolve_request(loaded.snapshot, req.event, req.drivers, loaded.served, race=race)


def quali_json(fc: Forecast) -> list[dict[str, Any]]:
    return [p.model_dump() for p in responses.quali_predictions(fc)]


def plain_app(loaded: Loaded | None = None) -> Starlette:
    loaded = loaded or load_models()
    flow = TwoStage.local(loaded.snapshot, loaded.stage1, loaded.stage2)

    async def predict(request: Request, race: bool) -> Response:
        t0 = time.perf_counter()
        req = parse_quali(await request.body())
        res = resolve(loaded, req, race=race)
        headers = warnings_header(res.warnings)
        if not race:
            fc = await flow.quali(res.event, res.field, res.rows, req.explain)
            return JSONResponse(quali_json(fc), headers=headers)
        fc = await flow.full(res.event, res.field, res.rows, req.explain)
        body = responses.full_response(res, fc, loaded.tags, t0).model_dump_json()
        return Response(body, media_type="application/json", headers=headers)

    return Starlette(
        routes=[
            Route("/predict_full", partial(predict, race=True), methods=["POST"]),
            Route("/predict_quali", partial(predict, race=False), methods=["POST"]),
            Route("/readyz", lambda _: PlainTextResponse("ok"), methods=["GET"]),
        ],
        exception_handlers={RequestError: error_response, ValidationError: error_response},
    )


def build_preprocessor(names: Sequence[str]) -> Pipeline:
    """Two column groups through float casts, outputting a DataFrame with the same columns.
    Casts learn nothing: it is fitted on one row of zeros."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    names, half = list(names), len(names) // 2
    as_float = {"kw_args": {"dtype": "float64"}, "feature_names_out": "one-to-one"}
    cast = [FunctionTransformer(pd.DataFrame.astype, **as_float) for _ in range(2)]
    groups = [("pace", cast[0], names[:half]), ("form", cast[1], names[half:])]
    columns = ColumnTransformer(groups, remainder="drop", verbose_feature_names_out=False)
    pipe = Pipeline([("columns", columns)]).set_output(transform="pandas")
    return pipe.fit(feature_frame(np.zeros((1, len(names))), names))


def feature_frame(x: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
    """The feature rows as the original built them: one record per driver."""
    return pd.DataFrame.from_records([dict(zip(names, row, strict=True)) for row in x])


def original_flow(loaded: Loaded) -> TwoStage:
    """The two-stage flow, every model call made the original way (DataFrame, transformer)."""
    s1, s2 = loaded.stage1, loaded.stage2
    one, two = STAGE1.names, STAGE2.names
    pre1, pre2 = build_preprocessor(one), build_preprocessor(two)

    def call(fn: Callable[[Any], Any], pre: Pipeline, names: Sequence[str], array: bool) -> RowsFn:
        async def model_call(x: np.ndarray) -> np.ndarray:
            frame = pre.transform(feature_frame(x, names))[list(names)]
            return fn(frame.to_numpy() if array else frame)  # explainers take an array

        return model_call

    calls = [call(s1.predict_gap, pre1, one, False), call(s2.logit, pre2, two, False)]
    calls += [call(s1.explain_gap, pre1, one, True), call(s2.explain_logit, pre2, two, True)]
    return TwoStage(loaded.snapshot, s1.config, s2.config, *calls)


def original_app(loaded: Loaded | None = None) -> FastAPI:
    loaded = loaded or load_models()
    flow = original_flow(loaded)
    app = FastAPI(title="F1 Prediction API (original architecture)")
    app.add_exception_handler(RequestError, error_response)

    @app.post("/predict_full")
    async def predict_full(request: QualiRequest, response: FastAPIResponse) -> FullResponse:
        t0 = time.perf_counter()
        res = resolve(loaded, request, race=True)
        fc = await flow.full(res.event, res.field, res.rows, request.explain)
        response.headers.update(warnings_header(res.warnings))
        return responses.full_response(res, fc, loaded.tags, t0)

    @app.post("/predict_quali")
    async def predict_quali(request: QualiRequest) -> Any:
        res = resolve(loaded, request)
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
