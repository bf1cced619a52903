"""What the two baseline servers share with the Bento: the same stored models, request
resolution, two-stage flow and response builders, so their JSON equals the Bento's
except ``metadata.inference_ms``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipelines.features.snapshot import FeatureSnapshot
from pipelines.models import store
from pipelines.models.stage1 import Stage1Model
from pipelines.models.stage2 import Stage2Model
from pipelines.serving import responses
from pipelines.serving.heap import freeze_startup_heap
from pipelines.serving.orchestrator import Forecast, TwoStage
from pipelines.serving.resolve import FittedOn, Resolved, resolve_request
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
    fitted: FittedOn | None = None


def load_models() -> Loaded:
    """The three models named by the ``F1_*_MODEL`` settings, from the active store."""
    s = get_settings()
    feat, m1, m2 = (
        store.get_model(tag) for tag in (s.features_model, s.stage1_model, s.stage2_model)
    )
    tags = {"features": str(feat.tag), "stage1": str(m1.tag), "stage2": str(m2.tag)}
    return Loaded(
        snapshot=store.open_snapshot(Path(feat.path), tags["features"]),
        stage1=store.open_stage1(Path(m1.path), tags["stage1"]),
        stage2=store.open_stage2(Path(m2.path), tags["stage2"]),
        tags=tags,
        fitted=FittedOn.of(m1.info.metadata, m2.info.metadata),
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
    lean = loaded.stage2.config if race else None
    first = loaded.stage1.config.practice_model
    return resolve_request(loaded.snapshot, req.event, req.drivers, lean, first, loaded.fitted)


def warn_header(res: Resolved) -> dict[str, str]:
    return warnings_header(res.warnings)


def local_flow(loaded: Loaded) -> TwoStage:
    return TwoStage.local(loaded.snapshot, loaded.stage1, loaded.stage2)


def quali_json(fc: Forecast) -> list[dict[str, Any]]:
    return [p.model_dump() for p in responses.quali_predictions(fc)]


def full_response(loaded: Loaded, res: Resolved, fc: Forecast, t0: float) -> FullResponse:
    return responses.full_response(res, fc, loaded.tags, t0)


def serve(create_app: Callable[[], Any], port: int, access_log: bool, freeze: bool) -> None:
    """Serve ``create_app()`` (``--host``, ``--port``) from one uvicorn worker on asyncio's own
    loop: a single saturated process on uvloop starves some connections (bench/analysis.md).
    ``freeze``: freeze the start-up heap, as the Bento's processes do."""
    import uvicorn

    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=port)
    args = ap.parse_args()
    app = create_app()
    if freeze:
        freeze_startup_heap()
    level = "info" if access_log else "warning"
    uvicorn.run(
        app, host=args.host, port=args.port, loop="asyncio", access_log=access_log, log_level=level
    )
