"""F1 Predictor Bento: a front service composing a Stage-1 and a Stage-2 model service.

    client --HTTP--> F1Predictor   resolve event + field (f1_features), TwoStage flow
                        |-- Stage1.predict_gap    (batched rows -> gap to pole %)
                        |-- Stage1.explain_gap    (batched, only for "explain": true)
                        |-- Stage2.predict_logit  (batched rows -> win log-odds)
                        '-- Stage2.explain_logit  (batched, only for "explain": true)

The flow is ``TwoStage``, as in the CLI. Model tags come from settings (``latest`` by
default: pin one to roll back)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import bentoml
import numpy as np
from fastapi import FastAPI

from pipelines.ledger.schemas import RecordedForecast, TrackRecord
from pipelines.models import store
from pipelines.serving import bentoml_fixes, events, status, ui
from pipelines.serving import schemas as api
from pipelines.serving.coalesce import Coalescer, with_deadline
from pipelines.serving.errors import add_error_handlers
from pipelines.serving.heap import freeze_startup_heap
from pipelines.serving.logs import setup_logs
from pipelines.serving.middleware import add_middlewares
from pipelines.serving.openapi import GET_ERRORS, LEDGER_ERRORS, merge_spec
from pipelines.serving.orchestrator import TwoStage
from pipelines.serving.resolve import Resolved, ServedModels, resolve_request
from pipelines.serving.responses import full_response, quali_predictions, race_predictions
from pipelines.serving.text import warnings_header
from pipelines.settings import get_settings

settings = get_settings()
# fail at start with the fix, rather than BentoML's "could not be found ... cloud context"
store.check_tags(settings.features_model, settings.stage1_model, settings.stage2_model)

NO_ACCESS_LOG = {"access": {"enabled": False}}  # RequestIdMiddleware writes the front's
MODEL_SERVICE = {"workers": 1, "logging": NO_ACCESS_LOG, "traffic": {"timeout": 30}}
BATCH = {"batchable": True, "batch_dim": 0, "max_batch_size": 640, "max_latency_ms": 2000}


@bentoml.service(name="f1_stage1", **MODEL_SERVICE, **bentoml_fixes.MODEL_SERVICE)
class Stage1:
    """LightGBM ensemble: rows of Stage-1 features -> predicted gap to pole (%)."""

    model = bentoml.models.BentoModel(settings.stage1_model)

    def __init__(self) -> None:
        setup_logs("f1_stage1", settings.log_format)
        store.import_lightgbm_lean()  # this process predicts from numpy rows only
        self.predictor = store.open_stage1(self.model)
        freeze_startup_heap()

    @bentoml.api(**BATCH)
    async def predict_gap(self, rows: np.ndarray) -> np.ndarray:
        return self.predictor.predict_gap(rows)

    @bentoml.api(**BATCH)
    async def explain_gap(self, rows: np.ndarray) -> np.ndarray:
        """(rows, features + 1): contributions to the unclipped gap, the base last."""
        return self.predictor.explain_gap(rows)


@bentoml.service(name="f1_stage2", **MODEL_SERVICE, **bentoml_fixes.MODEL_SERVICE)
class Stage2:
    """Monotone LightGBM + linear conditional logit: rows -> calibrated win log-odds."""

    model = bentoml.models.BentoModel(settings.stage2_model)

    def __init__(self) -> None:
        setup_logs("f1_stage2", settings.log_format)
        store.import_lightgbm_lean()
        self.predictor = store.open_stage2(self.model)
        freeze_startup_heap()

    @bentoml.api(**BATCH)
    async def predict_logit(self, rows: np.ndarray) -> np.ndarray:
        return self.predictor.logit(rows)

    @bentoml.api(**BATCH)
    async def explain_logit(self, rows: np.ndarray) -> np.ndarray:
        """(rows, features + 1): contributions to the logit, the base last."""
        return self.predictor.explain_logit(rows)


web = FastAPI(title="F1 Prediction API", docs_url=None, redoc_url=None, openapi_url=None)
web.include_router(ui.router)  # /ui, its files, /docs
add_error_handlers(web)


@bentoml.service(
    name="F1Predictor",
    traffic={"timeout": 30},
    workers=settings.front_workers,
    logging=NO_ACCESS_LOG,
    **bentoml_fixes.FRONT_SERVICE,
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
        setup_logs("F1Predictor", settings.log_format)
        self.snapshot = store.open_snapshot(self.features)
        self.served = ServedModels.of(self.stage1_model, self.stage2_model)
        # concurrent requests share one call per stage (a hop costs more than the model);
        # bound lazily: the remote clients learn their endpoints after __init__
        self.batching = {
            "stage1": Coalescer(lambda rows: self.stage1.to_async.predict_gap(rows)),
            "stage2": Coalescer(lambda rows: self.stage2.to_async.predict_logit(rows)),
            "explain1": Coalescer(lambda rows: self.stage1.to_async.explain_gap(rows)),
            "explain2": Coalescer(lambda rows: self.stage2.to_async.explain_logit(rows)),
        }
        calls = {  # TwoStage's arguments, by name; the last digit is the stage
            name: with_deadline(f"stage-{name[-1]}", co, settings.model_timeout_s)
            for name, co in self.batching.items()
        }
        self.flow = TwoStage(self.snapshot, self.served.stage1, self.served.stage2, **calls)
        self.started = time.time()
        self.models = dict(
            features=self.features, stage1=self.stage1_model, stage2=self.stage2_model
        )
        self.tags = {key: str(m.tag) for key, m in self.models.items()}
        from pipelines.ledger.writer import service_ledger  # SQLAlchemy: in the front only

        self.ledger = service_ledger(settings, self.tags, self.snapshot)  # started
        freeze_startup_heap()  # no full-heap GC pauses under load

    @bentoml.on_shutdown
    async def flush_ledger(self) -> None:
        """After the last request: the answers still waiting go to the database."""
        await asyncio.to_thread(self.ledger.close, settings.ledger_flush_s)

    async def __is_ready__(self) -> bool:
        """Ready only while both model services answer their own /readyz promptly."""
        return await bentoml_fixes.dependencies_ready(self.stage1, self.stage2)

    def _resolve(
        self, request: api.Request, context: bentoml.Context | None, race: bool
    ) -> Resolved:
        """The request resolved (``race``: for a win forecast), its warnings also a header
        (no context: called in-process)."""
        res = resolve_request(self.snapshot, request.event, request.drivers, self.served, race=race)
        if context is not None:
            context.response.headers.update(warnings_header(res.warnings))
        return res

    @bentoml.api(route="/predict_quali")
    async def predict_quali(
        self, request: api.QualiRequest, /, context: bentoml.Context
    ) -> list[api.QualiPrediction]:
        """Predicted qualifying lap, gap to pole, grid position and pole probability."""
        res = self._resolve(request, context, race=False)
        fc = await self.flow.quali(res.event, res.field, res.rows, request.explain)
        self.ledger.answered(request, res, fc)
        return quali_predictions(fc)

    @bentoml.api(route="/predict_race")
    async def predict_race(
        self, request: api.RaceRequest, /, context: bentoml.Context
    ) -> list[api.RacePrediction]:
        """Win, podium and points probabilities over the field (sum to 1, and a little
        under 3 and 10: cars may retire); a missing grid position comes from Stage-1."""
        res = self._resolve(request, context, race=True)
        fc = await self.flow.quali(res.event, res.field, res.rows)  # Stage-1 not shown
        fc = await self.flow.race(fc, request.explain)
        self.ledger.answered(request, res, fc)
        return race_predictions(fc)

    @bentoml.api(route="/predict_full")
    async def predict_full(
        self, request: api.QualiRequest, /, context: bentoml.Context
    ) -> api.FullResponse:
        """Both stages: qualifying, then the race from the predicted (or given) grid."""
        t0 = time.perf_counter()
        res = self._resolve(request, context, race=True)
        fc = await self.flow.full(res.event, res.field, res.rows, request.explain)
        self.ledger.answered(request, res, fc)
        return full_response(res, fc, self.tags, t0)

    @web.get("/")
    def index(self) -> dict[str, Any]:
        return {"service": "F1 Prediction API", "status": "healthy", "models_loaded": True}

    @web.get("/health")
    def health(self) -> dict[str, Any]:
        uptime, workers = time.time() - self.started, settings.front_workers
        meta, ledger = self.snapshot.meta, self.ledger.state()
        return status.health(self.models, uptime, workers, self.batching, meta, ledger)

    @web.get("/model_info")
    def model_info(self) -> dict[str, Any]:
        meta1, meta2 = self.stage1_model.info.metadata, self.stage2_model.info.metadata
        return store.model_info(self.tags, meta1, meta2)

    @web.get("/events", responses=GET_ERRORS)
    def calendar(self, season: api.IntParam | None = None) -> api.Calendar:
        """A season's events (default: the next event's season) and the next event."""
        return events.calendar(self.snapshot, season)

    @web.get("/events/{season}/{round}", responses=GET_ERRORS)
    def event_results(self, season: api.IntParam, round: api.IntParam) -> api.EventResults:
        """What happened at an event: qualifying order and race classification."""
        return events.results(self.snapshot, season, round)

    @web.get("/track_record", responses=GET_ERRORS | LEDGER_ERRORS)
    def track_record(self, season: api.IntParam) -> TrackRecord:
        """Each event with results: its last forecast from before qualifying, scored."""
        return self.ledger.track_record(self.snapshot, season)

    @web.get("/track_record/{season}/{round}", responses=GET_ERRORS | LEDGER_ERRORS)
    def recorded(self, season: api.IntParam, round: api.IntParam) -> RecordedForecast:
        """The event's last forecast that the track record scores, as it was answered."""
        return self.ledger.recorded(self.snapshot, season, round)

    @web.get("/openapi.json", include_in_schema=False)
    def openapi(self) -> dict[str, Any]:
        bento = cast("bentoml.Service[Any]", self.bento_service)  # type: ignore[attr-defined]
        return merge_spec(bento.openapi_spec.asdict(), web.openapi())


bentoml_fixes.fix_media_types(Stage1, Stage2, F1Predictor)
add_middlewares(F1Predictor, settings)
