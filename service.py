"""F1 Predictor Bento: a front service composing a Stage-1 and a Stage-2 model service.

    client --HTTP--> F1Predictor   resolve event + field (f1_features), TwoStage flow
                        |-- Stage1.predict_gap    (batched rows -> gap to pole %)
                        |-- Stage1.explain_gap    (batched, only for "explain": true)
                        |-- Stage2.predict_logit  (batched rows -> win log-odds)
                        '-- Stage2.explain_logit  (batched, only for "explain": true)

The flow itself is ``pipelines.serving.orchestrator.TwoStage``, the same code the CLI,
the evaluation and the benchmarks run; here it gets the model services as its calls.
Model tags come from settings (``F1_STAGE1_MODEL`` ...), ``latest`` by default, so a
deployment can pin an earlier version to roll back.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from pathlib import Path
from typing import Any, cast

import bentoml
import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.middleware.cors import CORSMiddleware

from pipelines import __version__
from pipelines.models import store
from pipelines.serving import events, ui
from pipelines.serving.coalesce import Coalescer
from pipelines.serving.errors import ApiError, StageUnavailable
from pipelines.serving.heap import freeze_startup_heap
from pipelines.serving.hops import once_more_if_stale
from pipelines.serving.logs import quiet_client_errors, use_json_logs
from pipelines.serving.middleware import (
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    ErrorBodyMiddleware,
    JsonBodyMiddleware,
    LoadShedMiddleware,
    NotFoundBodyMiddleware,
    RequestIdMiddleware,
    SpecAliasMiddleware,
)
from pipelines.serving.openapi import SWAGGER_HTML, merge_spec
from pipelines.serving.orchestrator import Forecast, RowsFn, TwoStage
from pipelines.serving.resolve import FittedOn, Resolved, resolve_request
from pipelines.serving.responses import full_response, quali_predictions, race_predictions
from pipelines.serving.schemas import (
    Calendar,
    ErrorResponse,
    EventResults,
    FullResponse,
    IntParam,
    QualiPrediction,
    QualiRequest,
    RacePrediction,
    RaceRequest,
)
from pipelines.serving.text import warnings_header
from pipelines.settings import get_settings

settings = get_settings()
logger = logging.getLogger("f1.service")
# fail at start with the fix, rather than BentoML's "could not be found ... cloud context"
store.check_tags(settings.features_model, settings.stage1_model, settings.stage2_model)


def _logs(component: str) -> None:
    logging.getLogger("f1").setLevel(logging.INFO)  # BentoML leaves the root at WARNING
    quiet_client_errors()  # a 4xx is one access line, not an ERROR with a traceback
    if settings.log_format == "json":
        use_json_logs(component)


TRACING = {
    "excluded_urls": [
        "/predict_quali",
        "/predict_race",
        "/predict_full",
        "/predict_gap",
        "/predict_logit",
        "/explain_gap",
        "/explain_logit",
        "/livez",
        "/readyz",
        "/healthz",
        "/metrics",
        "/health",
        "/",
    ]
}
"""OpenTelemetry spans cost ~15 % of every process per request; keep them off the API."""
MODEL_SERVICE = {
    "workers": 1,
    "tracing": TRACING,
    # internal hops: the front's access log (with request and trace ids) covers requests
    "logging": {"access": {"enabled": False}},
    "traffic": {"timeout": 30},
    # BentoML 1.4.30-1.4.40 recycles the caller's connection every 100 calls / 300 s
    # while calls are still in flight (500s under load); never recycle.
    "runner_connection": {"max_requests": 10**9, "max_age": 1e9},
}
BATCH = {"batchable": True, "batch_dim": 0, "max_batch_size": 640, "max_latency_ms": 2000}


@bentoml.service(name="f1_stage1", **MODEL_SERVICE)
class Stage1:
    """LightGBM ensemble: rows of Stage-1 features -> predicted gap to pole (%)."""

    model = bentoml.models.BentoModel(settings.stage1_model)

    def __init__(self) -> None:
        _logs("f1_stage1")
        store.import_lightgbm_lean()  # this process predicts from numpy rows only
        self.predictor = store.open_stage1(Path(self.model.path), str(self.model.tag))
        freeze_startup_heap()

    @bentoml.api(**BATCH)
    async def predict_gap(self, rows: np.ndarray) -> np.ndarray:
        return self.predictor.predict_gap(rows)

    @bentoml.api(**BATCH)
    async def explain_gap(self, rows: np.ndarray) -> np.ndarray:
        """(rows, features + 1): contributions to the unclipped gap, the base last."""
        return self.predictor.explain_gap(rows)


@bentoml.service(name="f1_stage2", **MODEL_SERVICE)
class Stage2:
    """Monotone LightGBM + linear conditional logit: rows -> calibrated win log-odds."""

    model = bentoml.models.BentoModel(settings.stage2_model)

    def __init__(self) -> None:
        _logs("f1_stage2")
        store.import_lightgbm_lean()
        self.predictor = store.open_stage2(Path(self.model.path), str(self.model.tag))
        freeze_startup_heap()

    @bentoml.api(**BATCH)
    async def predict_logit(self, rows: np.ndarray) -> np.ndarray:
        return self.predictor.logit(rows)

    @bentoml.api(**BATCH)
    async def explain_logit(self, rows: np.ndarray) -> np.ndarray:
        """(rows, features + 1): contributions to the logit, the base last."""
        return self.predictor.explain_logit(rows)


web = FastAPI(title="F1 Prediction API", docs_url=None, redoc_url=None, openapi_url=None)
GET_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "A query or path parameter is invalid"},
    404: {"model": ErrorResponse, "description": "No such season or event in the data"},
}


@web.exception_handler(ApiError)
async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


@web.exception_handler(RequestValidationError)
async def _bad_parameter(_: Request, exc: RequestValidationError) -> JSONResponse:
    detail = [{"loc": list(e.get("loc", [])), "msg": str(e.get("msg", ""))} for e in exc.errors()]
    return JSONResponse({"error": "invalid request parameter", "detail": detail}, status_code=400)


@bentoml.service(
    name="F1Predictor",
    traffic={"timeout": 30},
    workers=settings.front_workers,
    tracing=TRACING,
    # RequestIdMiddleware writes the access line (with the request id it echoes)
    logging={"access": {"enabled": False}},
    # readiness is __is_ready__'s (each model service's /readyz, bounded to 1.5 s):
    # BentoML's own dependency probe could hang /readyz until the traffic timeout (30 s,
    # then a 500) when a model service died while it was asked (tests/service/test_faults)
    runner_probe={"enabled": False},
)
@bentoml.asgi_app(web, path="/")
class F1Predictor:
    """The API: resolves the event and its field, runs the two stages, answers."""

    features = bentoml.models.BentoModel(settings.features_model)
    stage1_model = bentoml.models.BentoModel(settings.stage1_model)
    stage2_model = bentoml.models.BentoModel(settings.stage2_model)
    stage1 = bentoml.depends(Stage1)
    stage2 = bentoml.depends(Stage2)

    def __init__(self) -> None:
        _logs("F1Predictor")
        self.snapshot = store.open_snapshot(Path(self.features.path), str(self.features.tag))
        cfg = store.open_stage1_config(Path(self.stage1_model.path), str(self.stage1_model.tag))
        self.practice_first = cfg.practice_model
        self.lean = store.open_stage2_config(
            Path(self.stage2_model.path), str(self.stage2_model.tag)
        )
        # past events the models were fitted on are answered with a warning saying so
        self.fitted = FittedOn.of(self.stage1_model.info.metadata, self.stage2_model.info.metadata)
        # concurrent requests share one call per stage (a hop costs more than the model);
        # bound lazily: the remote clients learn their endpoints after __init__
        self.stage1_rows = Coalescer(lambda rows: self.stage1.to_async.predict_gap(rows))
        self.stage2_rows = Coalescer(lambda rows: self.stage2.to_async.predict_logit(rows))
        self.explain1_rows = Coalescer(lambda rows: self.stage1.to_async.explain_gap(rows))
        self.explain2_rows = Coalescer(lambda rows: self.stage2.to_async.explain_logit(rows))
        self.flow = TwoStage(
            self.snapshot,
            self._deadline("stage-1", self.stage1_rows),
            self._deadline("stage-2", self.stage2_rows),
            cfg.pole,
            cfg.pole_tau,
            explain1=self._deadline("stage-1", self.explain1_rows),
            explain2=self._deadline("stage-2", self.explain2_rows),
            finish=self.lean.finish_rate,
            pole_tau_ahead=cfg.pole_tau_ahead,
        )
        self.started = time.time()
        self.tags = {
            "features": str(self.features.tag),
            "stage1": str(self.stage1_model.tag),
            "stage2": str(self.stage2_model.tag),
        }
        freeze_startup_heap()  # no full-heap GC pauses under load (the c=64 tail)

    @staticmethod
    def _deadline(stage: str, call: RowsFn) -> RowsFn:
        """A model-service call with its own deadline: a hung or dead service is a prompt
        503 + Retry-After for the caller (the model itself takes under a millisecond); a
        call that met a stale keep-alive connection is sent once more (``hops``)."""

        def retried(exc: BaseException) -> None:
            logger.warning(
                "%s model service: the connection closed under the call (%s): sent again",
                stage,
                type(exc).__name__,
            )

        async def guarded(rows: np.ndarray) -> np.ndarray:
            try:
                async with asyncio.timeout(settings.model_timeout_s):  # no task per call
                    out = await once_more_if_stale(lambda: call(rows), retried)
                return np.asarray(out)
            except TimeoutError as exc:
                logger.error(
                    "%s model service: no answer in %.1f s", stage, settings.model_timeout_s
                )
                raise StageUnavailable(stage) from exc
            except Exception as exc:
                logger.exception("%s model service call failed", stage)
                raise StageUnavailable(stage) from exc

        return guarded

    async def __is_ready__(self) -> bool:
        """Ready only while both model services answer their own /readyz within 1 s.

        BentoML's dependency probe waits up to 5 s for a restarting worker, so a killed
        model service would otherwise look ready to the orchestrator.
        """
        for dep in (self.stage1, self.stage2):
            probe = getattr(dep, "is_ready", None)
            if probe is None:  # composed in-process (tests): nothing to probe
                continue
            try:
                ask = functools.partial(probe, 1)
                if not await asyncio.wait_for(once_more_if_stale(ask), timeout=1.5):
                    return False
            except Exception:
                return False
        return True

    async def _forecast(
        self,
        request: QualiRequest | RaceRequest,
        race: bool,
        ctx: bentoml.Context | None,
        explain_quali: bool = True,
    ) -> tuple[Resolved, Forecast]:
        """Resolve and run the flow; explanations only when asked, and only for the
        stages the endpoint answers with (``explain_quali``: Stage-1's are shown)."""
        lean = self.lean if race else None
        res = resolve_request(
            self.snapshot, request.event, request.drivers, lean, self.practice_first, self.fitted
        )
        explain = request.explain
        fc = await self.flow.quali(res.ctx, res.field, res.rows, explain and explain_quali)
        if race:
            fc = await self.flow.race(fc, explain)
        if ctx is not None:
            ctx.response.headers.update(warnings_header(res.warnings))
        return res, fc

    # ------------------------------------------------------------- endpoints

    @bentoml.api(route="/predict_quali")
    async def predict_quali(
        self, request: QualiRequest, /, ctx: bentoml.Context
    ) -> list[QualiPrediction]:
        """Predicted qualifying lap, gap to pole, grid position and pole probability."""
        _, fc = await self._forecast(request, False, ctx)
        return quali_predictions(fc)

    @bentoml.api(route="/predict_race")
    async def predict_race(
        self, request: RaceRequest, /, ctx: bentoml.Context
    ) -> list[RacePrediction]:
        """Win, podium and points probabilities over the field (sum to 1, and a little
        under 3 and 10: cars may retire); a missing grid position comes from Stage-1."""
        _, fc = await self._forecast(request, True, ctx, explain_quali=False)
        return race_predictions(fc)

    @bentoml.api(route="/predict_full")
    async def predict_full(self, request: QualiRequest, /, ctx: bentoml.Context) -> FullResponse:
        """Both stages: qualifying, then the race from the predicted (or given) grid."""
        t0 = time.perf_counter()
        res, fc = await self._forecast(request, True, ctx)
        return full_response(res, fc, self.tags, t0)

    # ------------------------------------------------------------ GET routes

    @web.get("/")
    def index(self) -> dict[str, Any]:
        return {"service": "F1 Prediction API", "status": "healthy", "models_loaded": True}

    @web.get("/health")
    def health(self) -> dict[str, Any]:
        refs = {"features": self.features, "stage1": self.stage1_model, "stage2": self.stage2_model}
        return {
            "status": "healthy",
            "version": __version__,
            "uptime_s": round(time.time() - self.started, 1),
            "models": {
                key: {"tag": str(m.tag), "created": m.creation_time.isoformat()}
                for key, m in refs.items()
            },
            # this process's merged calls; F1_FRONT_WORKERS processes each count their own
            # (/metrics sums BentoML's batch histograms over all of them)
            "front_workers": settings.front_workers,
            "batching": {
                name: {
                    "calls": co.calls,
                    "rows": co.rows,
                    "rows_per_call": round(co.rows / co.calls, 1) if co.calls else None,
                }
                for name, co in (
                    ("stage1", self.stage1_rows),
                    ("stage2", self.stage2_rows),
                    ("stage1_explain", self.explain1_rows),
                    ("stage2_explain", self.explain2_rows),
                )
            },
            "data": {
                "latest_event": self.snapshot.meta.get("latest_event"),
                "data_hash": self.snapshot.meta.get("data_hash"),
                "seasons": self.snapshot.meta.get("seasons"),
            },
        }

    @web.get("/model_info")
    def model_info(self) -> dict[str, Any]:
        return store.model_info(
            self.tags, self.stage1_model.info.metadata, self.stage2_model.info.metadata
        )

    @web.get("/events", responses=GET_ERRORS)
    def calendar(self, season: IntParam | None = None) -> Calendar:
        """A season's events (default: the next event's season) and the next event."""
        return events.calendar(self.snapshot, season)

    @web.get("/events/{season}/{round}", responses=GET_ERRORS)
    def event_results(self, season: IntParam, round: IntParam) -> EventResults:
        """What happened at an event: qualifying order and race classification."""
        return events.results(self.snapshot, season, round)

    @web.get("/ui", include_in_schema=False)
    def ui_page(self) -> HTMLResponse:
        """The forecast page (no internet needed: every asset comes from here)."""
        return HTMLResponse(ui.asset("index.html"))

    @web.get("/ui/{name}", include_in_schema=False)
    def ui_asset(self, name: str) -> Response:
        return Response(ui.asset(name), media_type=ui.media_type(name))

    @web.get("/openapi.json", include_in_schema=False)
    def openapi(self) -> dict[str, Any]:
        bento = cast("bentoml.Service[Any]", self.bento_service)  # type: ignore[attr-defined]
        return merge_spec(bento.openapi_spec.asdict(), web.openapi())

    @web.get("/docs", include_in_schema=False)
    def docs(self) -> HTMLResponse:
        return HTMLResponse(SWAGGER_HTML)


def fix_media_types(*services: Any) -> None:
    """BentoML 1.4.40 derives a root IO model's media type from its JSON schema on every
    response (a new pydantic TypeAdapter each time: ~7 % of a model service's CPU per
    call, bench/analysis.md); it never changes, so compute it once."""
    for svc in services:
        for api in svc.apis.values():
            spec = api.output_spec
            if spec.media_type is None:
                spec.media_type = spec.mime_type()


fix_media_types(Stage1, Stage2, F1Predictor)
_front = cast("bentoml.Service[F1Predictor]", F1Predictor)  # the decorators make it one
# outermost first: CORS (so a browser also reads our own 401/413/503), request id, one
# spec at both paths, a JSON 404, who may call, JSON bodies only, how big, how many at once,
# what an error body may say
if settings.cors_origins:
    _front.add_asgi_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["authorization", "content-type", "x-request-id"],
        expose_headers=["x-request-id", "x-f1-warnings", "retry-after"],
    )
_front.add_asgi_middleware(RequestIdMiddleware)
_front.add_asgi_middleware(SpecAliasMiddleware)
_front.add_asgi_middleware(NotFoundBodyMiddleware)
_front.add_asgi_middleware(ApiKeyMiddleware, api_key=settings.api_key)
_front.add_asgi_middleware(JsonBodyMiddleware)
_front.add_asgi_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
_front.add_asgi_middleware(LoadShedMiddleware, max_in_flight=settings.max_in_flight)
_front.add_asgi_middleware(ErrorBodyMiddleware)
