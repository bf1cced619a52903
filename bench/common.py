"""What the two baseline servers share with each other and with the Bento.

Both load the same stored models (``pipelines.models.store``, tags from the same ``F1_*``
settings the Bento reads), resolve requests with ``pipelines.serving.resolve``, run the
same two-stage flow (``pipelines.serving.orchestrator.TwoStage``) with the models
called in-process, and build the answers with ``pipelines.serving.responses``, so their
JSON equals the Bento's except ``metadata.inference_ms``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from pipelines.features.snapshot import FeatureSnapshot
from pipelines.models import store
from pipelines.models.stage1 import Stage1Model
from pipelines.models.stage2 import Stage2Model
from pipelines.serving import responses
from pipelines.serving.orchestrator import Forecast, TwoStage
from pipelines.serving.resolve import Resolved, ServedModels, resolve_request
from pipelines.serving.schemas import FullResponse, QualiRequest
from pipelines.serving.text import warnings_header
from pipelines.settings import get_settings


@dataclass
class Loaded:
    snapshot: FeatureSnapshot
    stage1: Stage1Model
    stage2: Stage2Model
    tags: dict[str, str]
    """Resolved tags (``name:version``), as the Bento reports them in metadata."""
    served: ServedModels
    """What the answers' warnings say of the models (as the Bento reads it)."""


def load_models() -> Loaded:
    """The three models named by the ``F1_*_MODEL`` settings, from the active store (each
    looked up once: its tag, files and metadata)."""
    s = get_settings()
    feat, m1, m2 = (
        store.get_model(tag) for tag in (s.features_model, s.stage1_model, s.stage2_model)
    )
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
    return {
        "error": "; ".join(
            f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg', '')}" for e in errors
        ),
        "detail": [{"loc": ["body", *e.get("loc", [])], "msg": e.get("msg", "")} for e in errors],
    }


def resolve(loaded: Loaded, req: QualiRequest, race: bool = False) -> Resolved:
    """As the Bento resolves it (``race``: for a win forecast, with its warnings)."""
    return resolve_request(loaded.snapshot, req.event, req.drivers, loaded.served, race=race)


def warn_header(res: Resolved) -> dict[str, str]:
    return warnings_header(res.warnings)


def local_flow(loaded: Loaded) -> TwoStage:
    return TwoStage.local(loaded.snapshot, loaded.stage1, loaded.stage2)


def quali_json(fc: Forecast) -> list[dict[str, Any]]:
    return [p.model_dump() for p in responses.quali_predictions(fc)]


def full_response(loaded: Loaded, res: Resolved, fc: Forecast, t0: float) -> FullResponse:
    return responses.full_response(res, fc, loaded.tags, t0)


def serve(app: Any, host: str, port: int, access_log: bool) -> None:
    """One uvicorn worker (``workers=1``), loopback by default, on asyncio's own loop.

    Not uvloop (which uvicorn would pick, being installed): a single saturated process on
    uvloop starves some connections, p99 0.41 s and max 1.9 s at c=64 with jittered
    bodies against 0.25 s / 0.26 s on asyncio, for the same throughput (measured
    2026-12-02, bench/analysis.md). The comparison servers get their better loop."""
    import uvicorn

    uvicorn.run(
        app,
        host=host,
        port=port,
        workers=1,
        loop="asyncio",
        access_log=access_log,
        log_level="info" if access_log else "warning",
    )
