"""F1 Predictor Bento: a front service composing a Stage-1 and a Stage-2 model service.

    client --HTTP--> F1Predictor (resolve event + drivers, features from f1_features)
                        |-- Stage1.predict_gap   (batched rows -> gap to pole %)
                        '-- Stage2.predict_logit (batched rows -> win log-odds)

Model tags come from settings (``F1_STAGE1_MODEL`` ...), ``latest`` by default, so a
deployment can pin an earlier version to roll back.
"""

from __future__ import annotations

import os
import sys


def _serving_without_sklearn() -> None:
    """LightGBM imports scikit-learn (and SciPy) whenever it is installed: ~2.5 s and
    ~60 MiB in each serving process, for nothing the service uses. Only under `bentoml
    serve` (its CLI and worker processes), never where training may run."""
    argv0 = sys.argv[0] if sys.argv else ""
    serving = os.path.basename(argv0) == "bentoml" or argv0.endswith(
        os.path.join("_bentoml_impl", "worker", "service.py")
    )
    if serving and "sklearn" not in sys.modules:
        sys.modules["sklearn"] = None  # type: ignore[assignment]  # import -> ImportError


_serving_without_sklearn()

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, cast

import bentoml
import numpy as np
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

import pipelines
from pipelines import store
from pipelines.coalesce import Coalescer
from pipelines.logs import quiet_client_errors, use_json_logs
from pipelines.middleware import (
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    ErrorBodyMiddleware,
    LoadShedMiddleware,
    RequestIdMiddleware,
    SpecAliasMiddleware,
)
from pipelines.models import group_softmax
from pipelines.predict import pole_estimate, quali_outputs, race_gap, race_grid
from pipelines.schemas import (
    EXAMPLES,
    ErrorResponse,
    FullResponse,
    QualiPrediction,
    QualiRequest,
    RacePrediction,
    RaceRequest,
)
from pipelines.serving import (
    RequestError,
    Resolved,
    full_response,
    quali_predictions,
    race_predictions,
    resolve_request,
    warnings_header,
)
from pipelines.settings import get_settings

settings = get_settings()
logger = logging.getLogger("f1.service")
# fail at start with the fix, rather than BentoML's "could not be found ... cloud context"
store.check_tags(settings.features_model, settings.stage1_model, settings.stage2_model)


VERSION = pipelines.__version__


def _logs(component: str) -> None:
    logging.getLogger("f1").setLevel(logging.INFO)  # BentoML leaves the root at WARNING
    quiet_client_errors()  # a 4xx is one access line, not an ERROR with a traceback
    if settings.log_format == "json":
        use_json_logs(component)


TRACING = {"excluded_urls": [
    "/predict_quali", "/predict_race", "/predict_full", "/predict_gap", "/predict_logit",
    "/livez", "/readyz", "/healthz", "/metrics", "/health", "/",
]}  # fmt: skip
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
        self.predictor = store.open_stage1(Path(self.model.path), str(self.model.tag))

    @bentoml.api(**BATCH)
    def predict_gap(self, rows: np.ndarray) -> np.ndarray:
        return self.predictor.predict_gap(rows)


@bentoml.service(name="f1_stage2", **MODEL_SERVICE)
class Stage2:
    """Monotone LightGBM win classifier: rows -> calibrated log-odds (softmax per race)."""

    model = bentoml.models.BentoModel(settings.stage2_model)

    def __init__(self) -> None:
        _logs("f1_stage2")
        self.predictor = store.open_stage2(Path(self.model.path), str(self.model.tag))

    @bentoml.api(**BATCH)
    def predict_logit(self, rows: np.ndarray) -> np.ndarray:
        return self.predictor.raw_score(rows) / self.predictor.config.temperature


web = FastAPI(title="F1 Prediction API", docs_url=None, redoc_url=None, openapi_url=None)


class StageUnavailable(RuntimeError):
    """A model service did not answer (restarting, crashed, timed out)."""


def _error(exc: RequestError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=422)


def _unavailable(exc: StageUnavailable) -> JSONResponse:
    return JSONResponse(
        {"error": f"{exc}: try again shortly", "detail": []},
        status_code=503,
        headers={"Retry-After": "2"},
    )


def _front_config() -> dict[str, Any]:
    return {
        "traffic": {"timeout": 30},
        "workers": 1,
        "tracing": TRACING,
        # RequestIdMiddleware writes the access line (with the request id it echoes)
        "logging": {"access": {"enabled": False}},
    }


@bentoml.service(name="F1Predictor", **_front_config())
@bentoml.asgi_app(web, path="/")
class F1Predictor:
    """The API: resolves the event and drivers, builds features, calls both stages."""

    features = bentoml.models.BentoModel(settings.features_model)
    stage1_model = bentoml.models.BentoModel(settings.stage1_model)
    stage2_model = bentoml.models.BentoModel(settings.stage2_model)
    stage1 = bentoml.depends(Stage1)
    stage2 = bentoml.depends(Stage2)

    def __init__(self) -> None:
        _logs("F1Predictor")
        self.snapshot = store.open_snapshot(Path(self.features.path), str(self.features.tag))
        cfg = store.open_stage1_config(Path(self.stage1_model.path), str(self.stage1_model.tag))
        self.pole_params, self.pole_tau = cfg.pole, cfg.pole_tau
        # concurrent requests share one call per stage (a hop costs more than the model)
        # (bound lazily: the remote clients learn their endpoints after __init__)
        deadline = settings.model_timeout_s  # a hung model service: 503 in seconds, not 30
        self.stage1_rows = Coalescer(
            lambda rows: asyncio.wait_for(self.stage1.to_async.predict_gap(rows), deadline)
        )
        self.stage2_rows = Coalescer(
            lambda rows: asyncio.wait_for(self.stage2.to_async.predict_logit(rows), deadline)
        )
        self.started = time.time()
        self.tags = {
            "features": str(self.features.tag),
            "stage1": str(self.stage1_model.tag),
            "stage2": str(self.stage2_model.tag),
        }

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
                if not await asyncio.wait_for(probe(1), timeout=1.5):
                    return False
            except Exception:
                return False
        return True

    # ------------------------------------------------------------------ core

    @staticmethod
    async def _call(stage: str, method: Any, rows: np.ndarray) -> np.ndarray:
        """One hop to a model service; any failure there is a clean 503 for the caller."""
        try:
            return np.asarray(await method(rows))
        except TimeoutError as exc:
            logger.error("%s model service did not answer within %.1f s", stage,
                         settings.model_timeout_s)  # fmt: skip
            raise StageUnavailable(f"the {stage} model service is unavailable") from exc
        except Exception as exc:
            logger.exception("%s model service call failed", stage)
            raise StageUnavailable(f"the {stage} model service is unavailable") from exc

    async def _quali(self, res: Resolved) -> tuple[Any, np.ndarray]:
        x1 = self.snapshot.stage1_matrix(res.ctx, res.entries, res.field_practice)
        gap = await self._call("stage-1", self.stage1_rows, x1)
        pole = pole_estimate(self.snapshot, res.ctx, res.field_practice, self.pole_params)
        q = quali_outputs(np.clip(gap, 0.0, None), pole, self.pole_tau,
                          [e.driver_id for e in res.entries])  # fmt: skip
        return q, gap

    async def _race(self, res: Resolved, q: Any) -> tuple[np.ndarray, np.ndarray]:
        grid = race_grid(res.entries, q.grid)
        x2 = self.snapshot.stage2_matrix(
            res.ctx, res.entries, grid, race_gap(res.entries, q.gap_pct)
        )
        logit = await self._call("stage-2", self.stage2_rows, x2)
        return group_softmax(logit, np.zeros(len(logit), dtype=int)), grid

    def _resolve(self, req: QualiRequest | RaceRequest) -> Resolved:
        return resolve_request(self.snapshot, req.event, req.drivers)

    # ------------------------------------------------------------- endpoints

    @bentoml.api(route="/predict_quali")
    async def predict_quali(self, request: QualiRequest, /) -> list[QualiPrediction]:
        """Predicted qualifying lap, gap to pole, grid position and pole probability."""
        try:
            res = self._resolve(request)
            q, _ = await self._quali(res)
        except RequestError as exc:
            return _error(exc)  # type: ignore[return-value]
        except StageUnavailable as exc:
            return _unavailable(exc)  # type: ignore[return-value]
        preds = quali_predictions(res.entries, q)
        return JSONResponse(  # type: ignore[return-value]
            [p.model_dump() for p in preds], headers=warnings_header(res.warnings)
        )

    @bentoml.api(route="/predict_race")
    async def predict_race(self, request: RaceRequest, /) -> list[RacePrediction]:
        """Win probabilities (sum to 1); a missing grid position comes from Stage-1."""
        try:
            res = self._resolve(request)
            q, _ = await self._quali(res)
            prob, grid = await self._race(res, q)
        except RequestError as exc:
            return _error(exc)  # type: ignore[return-value]
        except StageUnavailable as exc:
            return _unavailable(exc)  # type: ignore[return-value]
        preds = race_predictions(res.entries, prob, grid)
        return JSONResponse(  # type: ignore[return-value]
            [p.model_dump() for p in preds], headers=warnings_header(res.warnings)
        )

    @bentoml.api(route="/predict_full")
    async def predict_full(self, request: QualiRequest, /) -> FullResponse:
        """Both stages: qualifying, then the race from the predicted (or given) grid."""
        t0 = time.perf_counter()
        try:
            res = self._resolve(request)
            q, _ = await self._quali(res)
            prob, grid = await self._race(res, q)
        except RequestError as exc:
            return _error(exc)  # type: ignore[return-value]
        except StageUnavailable as exc:
            return _unavailable(exc)  # type: ignore[return-value]
        return full_response(res, q, prob, grid, self.tags, t0)

    # ------------------------------------------------------------ GET routes

    @web.get("/")
    def index(self) -> dict[str, Any]:
        return {"service": "F1 Prediction API", "status": "healthy", "models_loaded": True}

    @web.get("/health")
    def health(self) -> dict[str, Any]:
        models = {}
        for key, ref in (("features", self.features), ("stage1", self.stage1_model),
                         ("stage2", self.stage2_model)):  # fmt: skip
            m = ref
            models[key] = {"tag": str(m.tag), "created": m.creation_time.isoformat()}
        return {
            "status": "healthy",
            "version": VERSION,
            "uptime_s": round(time.time() - self.started, 1),
            "models": models,
            "batching": {
                name: {
                    "calls": co.calls,
                    "rows": co.rows,
                    "rows_per_call": round(co.rows / co.calls, 1) if co.calls else None,
                }
                for name, co in (("stage1", self.stage1_rows), ("stage2", self.stage2_rows))
            },
            "data": {
                "latest_event": self.snapshot.meta.get("latest_event"),
                "data_hash": self.snapshot.meta.get("data_hash"),
                "seasons": self.snapshot.meta.get("seasons"),
            },
        }

    @web.get("/model_info")
    def model_info(self) -> dict[str, Any]:
        m1 = self.stage1_model.info.metadata
        m2 = self.stage2_model.info.metadata
        return {
            "model_versions": self.tags,
            "stage1": {
                "description": "LightGBM ensemble on the gap to pole (%) x a pole-lap estimate",
                "feature_count": len(m1.get("feature_names", [])),
                "feature_names": m1.get("feature_names", []),
                "metrics": m1.get("metrics", {}),
            },
            "stage2": {
                "description": "Monotone LightGBM win classifier, softmax per race",
                "feature_count": len(m2.get("feature_names", [])),
                "feature_names": m2.get("feature_names", []),
                "metrics": m2.get("metrics", {}),
            },
            "training_seasons": m1.get("training_seasons"),
            "evaluation_protocol": m2.get("protocol", {}),
            "data_credit": "F1DB (https://github.com/f1db/f1db), CC-BY-4.0",
        }

    @web.get("/openapi.json", include_in_schema=False)
    def openapi(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.bento_service.openapi_spec.asdict()  # type: ignore[attr-defined]
        spec["info"] = dict(API_INFO)
        gets = web.openapi()
        for path, item in gets.get("paths", {}).items():
            spec.setdefault("paths", {})[path] = item
        for name, schema in gets.get("components", {}).get("schemas", {}).items():
            spec.setdefault("components", {}).setdefault("schemas", {}).setdefault(name, schema)
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        err = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(err.pop("$defs", {}))
        schemas["ErrorResponse"] = err
        for path in ("/predict_quali", "/predict_full", "/predict_race"):
            op = spec.get("paths", {}).get(path, {}).get("post")
            if not op:
                continue
            key = "race_with_grid" if path == "/predict_race" else "original"
            content = op.setdefault("requestBody", {}).setdefault("content", {})
            content.setdefault("application/json", {})["examples"] = {
                name: {"value": ex} for name, ex in EXAMPLES.items()
                if (path == "/predict_race") == (name == "race_with_grid") or name == key
            }  # fmt: skip
            ok = op["responses"].get(200) or op["responses"]["200"]
            op["responses"] = {"200": ok} | {
                code: {"description": why, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
                for code, why in ERROR_RESPONSES.items()
            }  # fmt: skip
        return spec

    @web.get("/docs", include_in_schema=False)
    def docs(self) -> Response:
        return HTMLResponse(SWAGGER_HTML)


_front = cast("bentoml.Service[F1Predictor]", F1Predictor)  # the decorators make it one
# outermost first: CORS (so a browser also reads our own 401/413/503), request id, one
# spec at both paths, who may call, how big, how many at once, what an error body may say
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
_front.add_asgi_middleware(ApiKeyMiddleware, api_key=settings.api_key)
_front.add_asgi_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
_front.add_asgi_middleware(LoadShedMiddleware, max_in_flight=settings.max_in_flight)
_front.add_asgi_middleware(ErrorBodyMiddleware)

API_INFO: dict[str, Any] = {
    "title": "F1 Prediction API",
    "version": VERSION,
    "description": "Two-stage Formula 1 predictions (qualifying pace, race winner), "
    "trained on F1DB (CC-BY-4.0).",
    "contact": {"name": "F1 Predictor maintainers"},
    "license": {"name": "MIT", "url": "https://opensource.org/licenses/MIT"},
}

ERROR_RESPONSES = {
    "400": "Malformed body or a field that fails validation (detail names it)",
    "401": "F1_API_KEY is set and the bearer key is missing or wrong",
    "413": "Body larger than F1_MAX_BODY_BYTES",
    "422": "Well-formed but unanswerable: unknown event, duplicated driver, no entry list",
    "503": "Overloaded or a model service is restarting: retry after Retry-After seconds",
}

SWAGGER_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>F1 Prediction API</title>
<link rel="stylesheet" href="/static_content/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/static_content/swagger-ui-bundle.js"></script>
<script src="/static_content/swagger-ui-standalone-preset.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], layout: "BaseLayout"});
</script></body></html>"""
