"""``create_app(model, settings)``: the FastAPI scoring service and its web page.

Endpoints: ``POST /v1/score``, ``POST /v1/compare``, ``POST /v1/explain``, ``GET /v1/model``,
``GET /healthz``, ``GET /metrics``, ``GET /`` (web page), ``GET /openapi.json``.
With an API key, only ``/``, ``/static/*`` and ``/healthz`` are open.
Every error is JSON ``{"error": ..., "detail": ...}``.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartParser

from iipa import __version__
from iipa.scoring import make_scorer
from iipa.serve import metrics as prom
from iipa.serve.bodies import SPOOL_MAX_BYTES
from iipa.serve.middleware import ServiceMiddleware
from iipa.serve.routes import build_router, require_key
from iipa.serve.schemas import Health
from iipa.serve.service import Service
from iipa.serve.settings import ServeSettings
from iipa.serve.uploads import ApiError

# The page's assets, read once from the package: requests name one of these keys, never a path.
_STATIC = {"app.js": "application/javascript", "style.css": "text/css"}


def _asset(name: str) -> str:
    return resources.files("iipa.serve").joinpath("static", name).read_text(encoding="utf-8")


def create_app(model: Any = None, settings: ServeSettings | None = None, **scorer_options: Any) -> FastAPI:
    """Build the service around ``model``: a Scorer, or anything :func:`iipa.make_scorer` takes
    (a record, weights name, checkpoint, .onnx file, PopularityNet; None: the default model)
    with ``scorer_options`` (``runtime``, ``device``, ``precision``, ``optimize``, ``crops``)."""
    settings = settings or ServeSettings()
    # Uploads past 64 KiB go to the parser's temporary files on disk, not 1 MB each in
    # memory: bodies are read before a request is admitted, so many concurrent uploads of
    # up to max_request_bytes must not sit in RAM. (A class attribute: process-wide.)
    MultiPartParser.spool_max_size = SPOOL_MAX_BYTES
    scorer = make_scorer(model, num_workers=0, **scorer_options)
    service = Service(scorer, settings)
    assets = {name: _asset(name) for name in (*_STATIC, "index.html")}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            # Runs after the server has finished in-flight requests (uvicorn's graceful shutdown).
            service.stop()

    # No /docs or /redoc: FastAPI's Swagger and ReDoc pages load their scripts from a CDN,
    # and this service must work offline; /openapi.json is the document itself, behind the
    # API key like everything but the page, its assets and /healthz (the middleware checks).
    # max_files is enforced while parsing (the 33rd part is never read), so a body of
    # thousands of small parts cannot pile up in RAM; the endpoints take no other fields.
    app = FastAPI(title="iipa scoring service", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  form_limits={"max_files": settings.max_files, "max_fields": 0, "max_part_size": 64 * 1024},
                  description="Intrinsic image popularity (Ding, Ma & Wang, ACM MM 2019): score, compare "
                              "and explain images. Errors are JSON {\"error\", \"detail\"}.")
    app.state.service = service
    app.add_middleware(ServiceMiddleware, metrics=service.metrics, settings=settings, budget=service.budget,
                       uploads=service.uploads)
    _add_error_handlers(app)
    app.include_router(build_router(service))

    @app.get("/healthz", response_model=Health, tags=["operations"])
    async def healthz() -> Any:
        """Liveness: the process answers and its model worker is alive (or not started yet)."""
        return {"status": "ok", "model_worker": service.batcher.running}

    @app.get("/metrics", response_class=PlainTextResponse, tags=["operations"],
             dependencies=[Depends(require_key(service))])
    async def metrics() -> Response:
        """Prometheus text exposition: requests, latency, images scored, batch sizes."""
        return Response(service.metrics.render(), media_type=prom.CONTENT_TYPE)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(assets["index.html"])

    def serve_asset(name: str, media_type: str) -> None:
        @app.get(f"/static/{name}", include_in_schema=False)
        async def asset() -> Response:
            return Response(assets[name], media_type=media_type, headers={"Cache-Control": "no-cache"})

    for name, media_type in _STATIC.items():
        serve_asset(name, media_type)
    return app


def _disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` was caused by a full disk or quota (ENOSPC/EDQUOT) somewhere down its chain."""
    seen = 0
    cause: BaseException | None = exc
    while cause is not None and seen < 10:
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return False


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        from http import HTTPStatus

        if exc.status_code == 400 and _disk_full(exc):
            # FastAPI turns any parser failure into 400 "error parsing the body"; a full
            # temporary folder is the server's problem, not the client's.
            return JSONResponse({"error": "insufficient storage",
                                 "detail": "the server's temporary folder is full; the upload was not stored, "
                                           "retry later"}, status_code=507, headers={"Retry-After": "30"})
        if exc.status_code == 400 and str(exc.detail).startswith("Too many files"):
            # Starlette's parser stopped at max_files + 1: the same 413 as counting them after.
            return JSONResponse({"error": "too many files", "detail": exc.detail}, status_code=413)
        try:
            phrase = HTTPStatus(exc.status_code).phrase.lower()
        except ValueError:
            phrase = "error"
        return JSONResponse({"error": getattr(exc, "error", phrase), "detail": exc.detail}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Only location, message and type: echoing the input back could mean echoing raw bytes.
        detail = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in exc.errors()]
        return JSONResponse({"error": "validation error", "detail": detail}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        if _disk_full(exc):
            return JSONResponse({"error": "insufficient storage", "detail": "the server's disk is full; retry later"},
                                status_code=507, headers={"Retry-After": "30"})
        return JSONResponse({"error": "internal error", "detail": exc.__class__.__name__}, status_code=500)
