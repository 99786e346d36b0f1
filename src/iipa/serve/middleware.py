"""ASGI middleware: API key and body limits before anything reads the body, the memory a
multipart body may take while it is parsed, and metrics.

Pure ASGI, so the checks run on the headers, before FastAPI parses (and spools) a
multipart body: a request without the right key is refused without reading one byte
of it (and a client that keeps guessing keys gets 429), a body over the limit is refused
from its Content-Length, or as soon as the streamed count passes the limit. A multipart
body is parsed only once the memory its parser may keep in RAM (parts under the spooling
threshold stay there) is held from the service's memory budget, until the body has arrived. Nothing is buffered here.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import time
from typing import Any

from iipa.asgi import BodyLimit, declared_length, send_json
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
# Multipart parts up to this size stay in RAM while parsed (Starlette's spool_max_size,
# set by create_app); larger ones go to temporary files.
SPOOL_MAX_BYTES = 64 * 1024
# The parser's own buffers and the server's read buffer, per request, on top of the parts.
PARSE_OVERHEAD_BYTES = 256 * 1024
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


class KeyGuessLimit:
    """Per-client count of wrong API keys: after ``max_failures`` within ``window_s`` the
    client gets 429 (with Retry-After) until its window ends, right key or not, so keys
    cannot be guessed at thousands a second. At most ``max_clients`` are remembered."""

    def __init__(self, max_failures: int = 20, window_s: float = 60.0, max_clients: int = 10_000) -> None:
        self.max_failures, self.window_s, self.max_clients = max_failures, window_s, max_clients
        self._failures: dict[str, tuple[float, int]] = {}  # client -> (window start, count)

    def retry_after(self, client: str) -> int:
        """Seconds the client must wait, or 0 when it may try a key."""
        start, count = self._failures.get(client, (0.0, 0))
        left = start + self.window_s - time.monotonic()
        if left <= 0:
            self._failures.pop(client, None)
            return 0
        return math.ceil(left) if count >= self.max_failures else 0

    def failed(self, client: str) -> None:
        now = time.monotonic()
        start, count = self._failures.get(client, (now, 0))
        if start + self.window_s <= now:
            start, count = now, 0
        if client not in self._failures and len(self._failures) >= self.max_clients:
            self._failures = {c: v for c, v in self._failures.items() if v[0] + self.window_s > now}
            if len(self._failures) >= self.max_clients:  # all fresh: forget the oldest
                self._failures.pop(next(iter(self._failures)))
        self._failures[client] = (start, count + 1)


class ServiceMiddleware:
    """Count and time every HTTP request; refuse a missing/wrong API key with 401 and a body
    over ``settings.max_body_bytes`` with 413, both before the body is read."""

    def __init__(self, app: Any, *, metrics: Metrics, settings: ServeSettings, budget: MemoryBudget) -> None:
        self.app = BodyLimit(app, max_body_bytes=settings.max_body_bytes, body_timeout_s=settings.body_timeout_s,
                             error_format="error")
        self.metrics = metrics
        self.settings = settings
        self.budget = budget
        self.api_key = settings.api_key.encode() if settings.api_key is not None else None
        self.key_guesses = KeyGuessLimit()
        self._last_trim = 0.0

    def _parse_reserve(self, scope: Scope) -> int:
        """Bytes a multipart body's parser may hold in RAM: every part up to the spooling
        threshold, at most ``max_files`` parts (Starlette refuses more while parsing)."""
        content_type = _header(scope, b"content-type") or b""
        if scope.get("method") != "POST" or not content_type.startswith(b"multipart/"):
            return 0
        declared = declared_length(scope)
        body = declared if declared is not None else self.settings.max_body_bytes
        return min(body, self.settings.max_files * SPOOL_MAX_BYTES) + PARSE_OVERHEAD_BYTES

    async def _admitted(self, scope: Scope, receive: Any, send: Any) -> None:
        """The app, once the memory its multipart body may take while it arrives and is
        parsed is held (waiting at most the request timeout). The hold ends with the body:
        the request's own decodes must not wait behind it, and from then on the service's
        admission limits bound it."""
        reserve = self._parse_reserve(scope)
        if not reserve:
            await self.app(scope, receive, send)
            return
        hold = self.budget.hold(min(reserve, self.budget.parse_limit), parsing=True)
        try:
            await asyncio.wait_for(hold.__aenter__(), self.settings.request_timeout_s)
        except asyncio.TimeoutError:
            await send_json(send, 503, {"error": "overloaded", "detail": "no memory to parse the upload; retry later"})
            return
        held = True

        async def release() -> None:
            nonlocal held
            if held:
                held = False
                await hold.__aexit__(None, None, None)

        async def receive_then_release() -> dict[str, Any]:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                await release()
            return message

        try:
            await self.app(scope, receive_then_release, send)
        finally:
            await release()
            self._trim_after(scope)

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
        client = (scope.get("client") or ("?",))[0]
        needs_key = self.api_key is not None and scope.get("path", "") not in OPEN_PATHS
        wait = self.key_guesses.retry_after(client) if needs_key else 0
        if wait:
            await send_json(send, 429, {"error": "too many requests",
                                        "detail": f"too many wrong API keys from this client; retry in {wait} s"},
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
            await self._admitted(scope, receive, send_wrapper)
        finally:
            self.metrics.add_in_flight(-1)
            self.metrics.observe_request(method_label(scope.get("method", "?")),
                                         endpoint_label(scope.get("path", "")),
                                         status["code"], time.perf_counter() - start)
