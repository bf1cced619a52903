"""The plain limit: bare Starlette, one uvicorn worker, the project's numpy features and
both models in-process; no DataFrame, no process hop, no access log.

    python -m bench.plain_server --port 3102
"""

from __future__ import annotations

import time

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench import common
from bench.common import Loaded
from pipelines.serving.errors import RequestError


def create_app(loaded: Loaded | None = None) -> Starlette:
    loaded = loaded or common.load_models()
    flow = common.local_flow(loaded)

    async def predict_full(request: Request) -> Response:
        t0 = time.perf_counter()
        try:
            req = common.parse_quali(await request.body())
            res = common.resolve(loaded, req, race=True)
        except ValidationError as exc:
            return JSONResponse(common.validation_body(exc), status_code=422)
        except RequestError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        fc = await flow.full(res.ctx, res.field, res.rows, req.explain)
        body = common.full_response(loaded, res, fc, t0).model_dump_json()
        return Response(body, media_type="application/json", headers=common.warn_header(res))

    async def predict_quali(request: Request) -> Response:
        try:
            req = common.parse_quali(await request.body())
            res = common.resolve(loaded, req)
        except ValidationError as exc:
            return JSONResponse(common.validation_body(exc), status_code=422)
        except RequestError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        fc = await flow.quali(res.ctx, res.field, res.rows, req.explain)
        return JSONResponse(common.quali_json(fc), headers=common.warn_header(res))

    async def readyz(_: Request) -> Response:
        return Response("ok", media_type="text/plain")

    return Starlette(
        routes=[
            Route("/predict_full", predict_full, methods=["POST"]),
            Route("/predict_quali", predict_quali, methods=["POST"]),
            Route("/readyz", readyz, methods=["GET"]),
        ]
    )


if __name__ == "__main__":
    common.serve(create_app, 3102, access_log=False, freeze=True)
