"""The plain limit: a bare Starlette app, one uvicorn worker, everything in-process.

The project's own numpy features (``FeatureSnapshot.stage1_rows``/``stage2_rows``
through ``pipelines.serving.orchestrator.TwoStage``) and both models in the request path, no
DataFrame, no process hop, no access log.

    python -m bench.plain_server --port 3102
"""

from __future__ import annotations

import argparse
import time

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.common import (
    Loaded,
    full_response,
    load_models,
    local_flow,
    parse_quali,
    quali_json,
    resolve,
    serve,
    validation_body,
    warn_header,
)
from pipelines.serving.errors import RequestError
from pipelines.serving.heap import freeze_startup_heap


def create_app(loaded: Loaded | None = None) -> Starlette:
    loaded = loaded or load_models()
    flow = local_flow(loaded)

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
        return Response(body, media_type="application/json", headers=warn_header(res))

    async def predict_quali(request: Request) -> Response:
        try:
            req = parse_quali(await request.body())
            res = resolve(loaded, req)
        except ValidationError as exc:
            return JSONResponse(validation_body(exc), status_code=422)
        except RequestError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        fc = await flow.quali(res.event, res.field, res.rows, req.explain)
        return JSONResponse(quali_json(fc), headers=warn_header(res))

    async def readyz(_: Request) -> Response:
        return Response("ok", media_type="text/plain")

    return Starlette(
        routes=[
            Route("/predict_full", predict_full, methods=["POST"]),
            Route("/predict_quali", predict_quali, methods=["POST"]),
            Route("/readyz", readyz, methods=["GET"]),
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=3102)
    args = ap.parse_args()
    app = create_app()
    freeze_startup_heap()  # as the Bento's processes do
    serve(app, args.host, args.port, access_log=False)


if __name__ == "__main__":
    main()
