"""The FastAPI application: ``POST /predict``, ``GET /health``, ``GET /model``, ``GET /metrics``, OpenAPI docs.

- ``POST /predict``: one trip (object) or a list of trips; answers ``{"predictions": [...], "model": {...}}``
- ``GET /health``: ``{"status": "ok", ...}`` (503 while no production model can be loaded)
- ``GET /model``: name, version, metrics, trained months of the serving model
- ``GET /metrics``: Prometheus text format; ``GET /docs`` (Swagger UI), ``GET /redoc`` and ``GET /openapi.json``:
  the API's description; the pages' scripts and styles are served by the service itself (fastapi-offline), so
  they work without internet access

Invalid input gets a 4xx answer ``{"error", "field", "index"}`` naming the field and the problem; an unexpected
error a 500 JSON answer, never a crash. ``/predict`` reads the raw body (already size- and time-checked by
:class:`~tripduration.service.guards.RequestGuard`) and hands it to the :class:`~.batching.PredictBatcher`,
whose predict thread parses, validates (see :mod:`.schemas`) and predicts it together with the requests that
arrived at the same time; the request schema is still declared, so ``/docs`` shows it. The event loop never
parses or predicts: it stays free to accept connections and enforce the body deadlines.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi_offline import FastAPIOffline
from pydantic import TypeAdapter
from starlette.exceptions import HTTPException as StarletteHTTPException

from tripduration.io import open_spec
from tripduration.registry.store import ModelRegistry
from tripduration.service.batching import PredictBatcher
from tripduration.service.guards import RequestGuard, json_bytes
from tripduration.service.holder import Loaded, ModelHolder, model_info
from tripduration.service.metrics import Metrics
from tripduration.service.schemas import (
    MAX_BODY_BYTES,
    ErrorResponse,
    HealthResponse,
    InputError,
    ModelInfo,
    PredictRequest,
    PredictResponse,
)

BODY_TIMEOUT = 10.0  # seconds to receive a whole request body (a 1 MB body on a slow link takes far less)
ENDPOINTS_HELP = "use POST /predict, GET /health, GET /model, GET /metrics (API description: GET /docs)"
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "invalid JSON or an invalid trip (the answer names the field, the value and the trip's index)",
        408: "the body was not received in time",
        411: "no Content-Length",
        413: "body over the size limit, or too many trips",
        503: "no production model can be loaded",
    }.items()
}


def json_response(status: int, body: dict[str, Any]) -> Response:
    return Response(json_bytes(body), status_code=status, media_type="application/json")


def _request_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON schema of a predict request, and the definitions it refers to (for OpenAPI components)."""
    adapter: TypeAdapter[Any] = TypeAdapter(cast(Any, PredictRequest))
    schema = adapter.json_schema(ref_template="#/components/schemas/{model}")
    return schema, schema.pop("$defs", {})


def _health(holder: ModelHolder) -> Response:
    loaded: Loaded | None = holder.get()
    return json_response(
        200 if loaded else 503,
        {
            "status": "ok" if loaded else "no production model",
            "version": loaded.metadata.get("version") if loaded else None,
            "last_error": holder.last_error,
        },
    )


def _model(holder: ModelHolder) -> Response:
    loaded = holder.get()
    if loaded is None:
        raise InputError("no production model is registered yet", status=503)
    return json_response(200, model_info(loaded.metadata))


def add_routes(app: FastAPI, holder: ModelHolder, metrics: Metrics, batcher: PredictBatcher) -> None:
    request_schema, _ = _request_schema()

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses=ERRORS,
        summary="predict trip durations (minutes) for one trip or a list",
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": request_schema}}}},
    )
    async def predict(request: Request) -> Response:
        reply = await batcher.submit(await request.body())
        return Response(reply.body, status_code=reply.status, media_type="application/json")

    @app.get("/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
    def health() -> Response:
        return _health(holder)

    @app.get("/model", response_model=ModelInfo, responses={503: {"model": ErrorResponse}})
    def model() -> Response:
        return _model(holder)

    @app.get("/metrics", summary="Prometheus metrics (text format)", response_class=Response)
    def metrics_text() -> Response:
        data, content_type = metrics.exposition()
        return Response(data, media_type=content_type)


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InputError)
    async def input_error(_: Request, exc: InputError) -> Response:
        return json_response(exc.status, exc.as_dict())

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        what = f"no such endpoint {request.method} {request.url.path!r}"
        if exc.status_code == 405:
            what = f"method {request.method} is not allowed on {request.url.path!r}"
        elif exc.status_code != 404:
            what = str(exc.detail)
        return json_response(exc.status_code, {"error": f"{what}; {ENDPOINTS_HELP}", "field": None, "index": None})

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": str(exc)}
        loc = [str(p) for p in first.get("loc", ())]
        field = loc[-1] if loc else None
        return json_response(400, {"error": f"{'.'.join(loc)}: {first.get('msg')}", "field": field, "index": None})

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> Response:  # never crash the service on a request
        return json_response(500, {"error": f"internal error: {type(exc).__name__}", "field": None, "index": None})


def create_app(
    registry: ModelRegistry, *, max_body: int = MAX_BODY_BYTES, body_timeout: float = BODY_TIMEOUT
) -> FastAPI:
    """The ASGI application: FastAPI routes wrapped in the request guard (size, deadline, metrics)."""
    metrics = Metrics()
    holder = ModelHolder(registry, on_loaded=metrics.model_loaded, on_failed=metrics.reload_failed)
    batcher = PredictBatcher(holder, metrics)
    batcher.warm()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        batcher.close()
        metrics.worker_exit()

    app = FastAPIOffline(  # /docs and /redoc load Swagger UI and ReDoc from this package, not from a CDN
        title="NYC green taxi trip duration",
        version="1",
        description="Predicts trip durations with the registry's production model (hot-swapped on promotion).",
        lifespan=lifespan,
    )
    add_routes(app, holder, metrics, batcher)
    add_error_handlers(app)
    _, definitions = _request_schema()
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:  # the trip schema's definitions, referred to by /predict's request body
        if app.openapi_schema is None:
            schema = default_openapi()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(definitions)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(RequestGuard, metrics=metrics, max_body=max_body, body_timeout=body_timeout)
    app.state.holder, app.state.metrics, app.state.batcher = holder, metrics, batcher
    return app


ENV_REGISTRY = "TRIPDURATION_REGISTRY_DIR"
ENV_NAME = "TRIPDURATION_MODEL_NAME"
ENV_BODY_TIMEOUT = "TRIPDURATION_BODY_TIMEOUT"


def app_from_env() -> FastAPI:
    """Factory for uvicorn's worker processes (``--workers N``): the registry comes from the environment that
    ``pipeline.py serve`` set before starting them."""
    root = open_spec(json.loads(os.environ[ENV_REGISTRY]))  # the registry as the parent process opened it
    registry = ModelRegistry(root, os.environ[ENV_NAME])
    return create_app(registry, body_timeout=float(os.environ.get(ENV_BODY_TIMEOUT, BODY_TIMEOUT)))
