"""The one OpenAPI document (BentoML's POST APIs + the FastAPI GET routes, the project's
identity, examples and error responses)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from pipelines import __version__
from pipelines.serving.schemas import EXAMPLES, ErrorResponse, QualiRequest, RaceRequest

API_INFO: dict[str, Any] = {
    "title": "F1 Prediction API",
    "version": __version__,
    "description": "Two-stage Formula 1 predictions (qualifying pace, race winner), "
    "trained on F1DB (CC-BY-4.0).",
    "contact": {"name": "F1 Predictor maintainers"},
    "license": {"name": "MIT", "url": "https://opensource.org/licenses/MIT"},
}

ERROR_RESPONSES = {
    "400": "Malformed body or a field that fails validation (detail names it)",
    "401": "F1_API_KEY is set and the bearer key is missing or wrong",
    "413": "Body larger than F1_MAX_BODY_BYTES",
    "415": "Body sent with a Content-Type other than application/json",
    "422": "Well-formed but unanswerable: unknown event, duplicated driver, no entry list",
    "503": "Overloaded or a model service is restarting: retry after Retry-After seconds",
}

GET_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "A query or path parameter is invalid"},
    404: {"model": ErrorResponse, "description": "No such season or event in the data"},
}
"""The error responses of the GET routes that take parameters."""
LEDGER_ERRORS: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "The prediction log's database is unavailable"},
}
"""The routes that read the prediction log."""
REQUESTS: dict[str, type[BaseModel]] = {
    "/predict_quali": QualiRequest,
    "/predict_full": QualiRequest,
    "/predict_race": RaceRequest,
}
"""The request model each prediction endpoint validates its body with."""
_REF = "#/components/schemas/{model}"


def _add_model(schemas: dict[str, Any], model: type[BaseModel]) -> dict[str, str]:
    """Put a model's JSON schema (and those it refers to) in the components: a $ref."""
    schema = model.model_json_schema(ref_template=_REF)
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    return {"$ref": _REF.format(model=model.__name__)}


def merge_spec(bento_spec: dict[str, Any], get_routes: dict[str, Any]) -> dict[str, Any]:
    """BentoML's spec of the POST APIs with the GET routes merged in, our identity, the
    request examples and the error responses every prediction endpoint may give."""
    spec = dict(bento_spec)
    spec["info"] = dict(API_INFO)
    paths = spec.setdefault("paths", {})
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for path, item in get_routes.get("paths", {}).items():
        for op in item.values():  # FastAPI's own 422 body is not ours: bad parameters are 400
            op.get("responses", {}).pop("422", None)
        paths[path] = item
    for name, schema in get_routes.get("components", {}).get("schemas", {}).items():
        if name not in ("HTTPValidationError", "ValidationError"):
            schemas.setdefault(name, schema)
    error_ref = _add_model(schemas, ErrorResponse)
    for path, model in sorted(REQUESTS.items()):
        op = paths.get(path, {}).get("post")
        if not op:
            continue
        race = path == "/predict_race"
        content = op.setdefault("requestBody", {}).setdefault("content", {})
        body = content.setdefault("application/json", {})
        # the model as the server validates it: BentoML's copy drops the top-level
        # fields' "or null" (its first anyOf branch only), a schema stricter than the API
        schemas.pop(f"{model.__name__}IODescriptor", None)
        body["schema"] = _add_model(schemas, model)
        body["examples"] = {
            name: {"value": ex}
            for name, ex in EXAMPLES.items()
            if (name == "race_with_grid") == race
        }
        ok = op["responses"].get(200) or op["responses"]["200"]
        op["responses"] = {"200": ok} | {
            code: {
                "description": why,
                "content": {"application/json": {"schema": error_ref}},
            }
            for code, why in ERROR_RESPONSES.items()
        }
    return spec
