"""ASGI middleware: request body limit (before any multipart parsing) and metrics.

The limit is enforced here, on the raw byte stream, because by the time FastAPI hands an
``UploadFile`` to an endpoint the whole body has already been parsed and spooled.
"""

from __future__ import annotations

import json
import time
from typing import Any

from iipa.serve.metrics import Metrics

Scope = dict[str, Any]
KNOWN_ENDPOINTS = frozenset({
    "/", "/healthz", "/metrics", "/openapi.json", "/v1/score", "/v1/compare",
    "/v1/explain", "/v1/model", "/static/app.js", "/static/style.css",
})


def endpoint_label(path: str) -> str:
    return path if path in KNOWN_ENDPOINTS else "other"


async def _send_json(send: Any, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class ServiceMiddleware:
    """Count and time every HTTP request; refuse bodies over ``max_body_bytes`` with 413."""

    def __init__(self, app: Any, *, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

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
            receive = await self._limited_receive(scope, receive)
            if receive is None:
                status["code"] = 413
                await _send_json(send, 413, {"error": "request too large",
                                             "detail": f"request body exceeds {self.max_body_bytes} bytes"})
                return
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.add_in_flight(-1)
            self.metrics.observe_request(scope.get("method", "?"), endpoint_label(scope.get("path", "")),
                                         status["code"], time.perf_counter() - start)

    async def _limited_receive(self, scope: Scope, receive: Any) -> Any:
        """A receive callable replaying the buffered body, or None when it is too large."""
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            return receive
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    if int(value) > self.max_body_bytes:
                        return None
                except ValueError:
                    pass
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay
