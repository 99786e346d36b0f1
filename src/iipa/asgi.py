"""Limits every iipa web app applies before its framework sees a request (pure ASGI, so
nothing is buffered or parsed first): a streamed body limit, a body read deadline, a
minimum body rate. Per-address limits are in :mod:`iipa.clientlimits`; connection-level
limits (slow heads, pending connections) live in :mod:`iipa.httpserver`.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from starlette.exceptions import HTTPException

from iipa.clientlimits import MIN_BODY_RATE, RATE_WINDOW_S

Scope = dict[str, Any]


class BodyTooLarge(HTTPException):
    error = "request too large"

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes")


class BodyTooSlow(HTTPException):
    error = "request timeout"

    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"request body not received within {seconds:g} s")


class BodyBelowRate(HTTPException):
    error = "request timeout"

    def __init__(self, received: int, window_s: float, min_rate: float) -> None:
        super().__init__(408, f"request body arrived at {received / window_s:.0f} bytes/s over {window_s:g} s, "
                              f"below the minimum of {min_rate:g} bytes/s")


def declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def send_json(send: Any, status: int, payload: dict[str, Any],
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A complete JSON response that also closes the connection (the body stays unread)."""
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuse a body over ``max_body_bytes`` with 413 — from Content-Length before reading
    anything, else as soon as the streamed count passes it — and a body that takes longer
    than ``body_timeout_s``, or arrives below ``min_body_rate`` bytes/s over a window of
    ``rate_window_s`` seconds spent waiting for it, with 408. Only time spent waiting for the
    client counts toward the rate: the app's own pauses between reads (parsing, waiting for
    memory) do not. Nothing is buffered here."""

    def __init__(self, app: Any, *, max_body_bytes: int, body_timeout_s: float = 30.0,
                 min_body_rate: float = MIN_BODY_RATE, rate_window_s: float = RATE_WINDOW_S,
                 error_format: str = "detail") -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.min_body_rate = min_body_rate
        self.rate_window_s = rate_window_s
        self.error_format = error_format

    def _payload(self, exc: HTTPException) -> dict[str, Any]:
        if self.error_format == "error":
            return {"error": getattr(exc, "error", "error"), "detail": exc.detail}
        return {"detail": exc.detail}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await send_json(send, 413, self._payload(BodyTooLarge(self.max_body_bytes)))
            return
        received = 0
        deadline = time.monotonic() + self.body_timeout_s
        window = self.rate_window_s
        waited = window_bytes = 0.0  # seconds spent waiting for the client, bytes, this window
        started = body_done = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal received, body_done, waited, window_bytes
            if body_done:  # after the body, receive() only waits for a disconnect: no deadline
                return await receive()
            limit = deadline - time.monotonic()
            rate_limited = self.min_body_rate > 0
            if rate_limited:
                limit = min(limit, window - waited)
            t0 = time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), max(0.001, limit))
            except asyncio.TimeoutError:
                if time.monotonic() >= deadline:
                    raise BodyTooSlow(self.body_timeout_s) from None
                message = None
            waited += time.monotonic() - t0
            if message is not None and message["type"] == "http.request":
                window_bytes += len(message.get("body", b""))
            if rate_limited and waited >= window:
                # Judged while the body is still owed: not on its last chunk, nor on a disconnect.
                owed = message is None or (message["type"] == "http.request" and message.get("more_body", False))
                if owed and window_bytes < self.min_body_rate * window:
                    raise BodyBelowRate(int(window_bytes), window, self.min_body_rate)
                waited = window_bytes = 0.0
            if message is None:  # the window ended without a message but the rate held
                return await limited_receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except (BodyTooLarge, BodyTooSlow, BodyBelowRate) as exc:
            if not started:
                await send_json(send, exc.status_code, self._payload(exc))

