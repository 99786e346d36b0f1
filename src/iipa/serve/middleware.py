"""ASGI middleware: API key and body limits before anything reads the body, the limits on
multipart bodies while they arrive (:mod:`iipa.serve.bodies`), and metrics.

Pure ASGI, so the checks run on the headers, before FastAPI parses (and spools) a
multipart body: a request without the right key is refused without reading one byte
of it (and a client address that keeps sending wrong keys gets 429, with backoff), a body
over the limit is refused from its Content-Length, or as soon as the streamed count passes
the limit; a body arriving too slowly gets 408. Nothing is buffered here.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Any

from iipa.asgi import BodyLimit, declared_length, send_json
from iipa.clientlimits import FailureBackoff, client_address
from iipa.serve.bodies import BodyGate, UploadLedger
from iipa.serve.memory import MemoryBudget, release_memory
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
# Wrong API keys one client address may send before it is blocked (then 10 s, doubling).
KEY_FAILURES_FREE = 20
# After a request with a body this large, freed memory is handed back to the OS.
TRIM_AFTER_BODY_BYTES = 1024 * 1024


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

    def __init__(self, app: Any, *, metrics: Metrics, settings: ServeSettings, budget: MemoryBudget,
                 uploads: UploadLedger) -> None:
        gated = BodyGate(app, budget=budget, uploads=uploads, settings=settings)
        self.app = BodyLimit(gated, max_body_bytes=settings.max_body_bytes, body_timeout_s=settings.body_timeout_s,
                             min_body_rate=settings.min_body_rate, rate_window_s=settings.body_rate_window_s,
                             error_format="error")
        self.metrics = metrics
        self.settings = settings
        self.budget = budget
        self.api_key = settings.api_key.encode() if settings.api_key is not None else None
        self.key_guesses = FailureBackoff(free=KEY_FAILURES_FREE)
        self._last_trim = 0.0

    def _trim_after(self, scope: Scope) -> None:
        """After a large body, once nothing holds the budget, hand freed memory back to
        the OS (at most once a second; malloc_trim walks the heap)."""
        declared = declared_length(scope) or 0
        now = time.monotonic()
        if declared >= TRIM_AFTER_BODY_BYTES and self.budget.in_use == 0 and now - self._last_trim >= 1.0:
            self._last_trim = now
            asyncio.get_running_loop().run_in_executor(None, release_memory)

    def _authorised(self, scope: Scope) -> bool:
        if self.api_key is None or scope.get("path", "") in OPEN_PATHS:
            return True
        given = _header(scope, b"x-api-key")
        return given is not None and hmac.compare_digest(given, self.api_key)

    async def _key_checked(self, scope: Scope, send: Any) -> bool:
        """True when the request may go on; else 401 (wrong key) or 429 (too many wrong keys)
        has been sent."""
        client = client_address(scope)
        needs_key = self.api_key is not None and scope.get("path", "") not in OPEN_PATHS
        wait = self.key_guesses.retry_after(client) if needs_key else 0
        if wait:
            await send_json(send, 429, {"error": "too many requests",
                                        "detail": f"too many wrong API keys from this address; retry in {wait} s"},
                            headers=[(b"retry-after", str(wait).encode())])
            return False
        if not self._authorised(scope):
            self.key_guesses.failed(client)
            await send_json(send, 401, {"error": "unauthorized", "detail": "missing or wrong X-API-Key header"})
            return False
        return True

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
            if not await self._key_checked(scope, send_wrapper):
                return
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                self._trim_after(scope)
        finally:
            self.metrics.add_in_flight(-1)
            self.metrics.observe_request(method_label(scope.get("method", "?")),
                                         endpoint_label(scope.get("path", "")),
                                         status["code"], time.perf_counter() - start)
