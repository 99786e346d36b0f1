"""ASGI middleware: API key and body limits before anything reads the body, and metrics.

Pure ASGI, so the checks run on the headers, before FastAPI parses (and spools) a
multipart body: a request without the right key is refused without reading one byte
of it, and a body over the limit is refused from its Content-Length, or as soon as the
streamed count passes the limit. Nothing is buffered here.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from iipa.asgi import BodyLimit, send_json
from iipa.serve.metrics import Metrics
from iipa.serve.settings import ServeSettings

Scope = dict[str, Any]
KNOWN_ENDPOINTS = frozenset({
    "/", "/healthz", "/metrics", "/openapi.json", "/v1/score", "/v1/compare",
    "/v1/explain", "/v1/model", "/static/app.js", "/static/style.css",
})
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Open without a key: the page, its assets and the liveness probe. Everything else needs it.
OPEN_PATHS = frozenset({"/", "/healthz", "/static/app.js", "/static/style.css"})


def endpoint_label(path: str) -> str:
    return path if path in KNOWN_ENDPOINTS else "other"


def method_label(method: str) -> str:
    """A client can send any token as a method: only known ones become metric labels."""
    return method if method in KNOWN_METHODS else "other"


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value
    return None


class ServiceMiddleware:
    """Count and time every HTTP request; refuse a missing/wrong API key with 401 and a body
    over ``settings.max_body_bytes`` with 413, both before the body is read."""

    def __init__(self, app: Any, *, metrics: Metrics, settings: ServeSettings) -> None:
        self.app = BodyLimit(app, max_body_bytes=settings.max_body_bytes, body_timeout_s=settings.body_timeout_s,
                             error_format="error")
        self.metrics = metrics
        self.api_key = settings.api_key.encode() if settings.api_key is not None else None

    def _authorised(self, scope: Scope) -> bool:
        if self.api_key is None or scope.get("path", "") in OPEN_PATHS:
            return True
        given = _header(scope, b"x-api-key")
        return given is not None and hmac.compare_digest(given, self.api_key)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        self.metrics.add_in_flight(1)
        try:
            if not self._authorised(scope):
                await send_json(send_wrapper, 401, {"error": "unauthorized",
                                                    "detail": "missing or wrong X-API-Key header"})
                return
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.add_in_flight(-1)
            self.metrics.observe_request(method_label(scope.get("method", "?")),
                                         endpoint_label(scope.get("path", "")),
                                         status["code"], time.perf_counter() - start)
