"""Limits every iipa web app applies before its framework sees a request (pure ASGI, so
nothing is buffered or parsed first): a streamed body limit, a body read deadline, and a
uvicorn protocol that drops clients which never finish sending their headers.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import h11
from starlette.exceptions import HTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

Scope = dict[str, Any]


class BodyTooLarge(HTTPException):
    error = "request too large"

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes")


class BodyTooSlow(HTTPException):
    error = "request timeout"

    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"request body not received within {seconds:g} s")


def declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def send_json(send: Any, status: int, payload: dict[str, Any]) -> None:
    """A complete JSON response that also closes the connection (the body stays unread)."""
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuse a body over ``max_body_bytes`` with 413 — from Content-Length before reading
    anything, else as soon as the streamed count passes it — and a body that takes longer
    than ``body_timeout_s`` with 408. Nothing is buffered here."""

    def __init__(self, app: Any, *, max_body_bytes: int, body_timeout_s: float = 30.0,
                 error_format: str = "detail") -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
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
        started = body_done = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal received, body_done
            if body_done:  # after the body, receive() only waits for a disconnect: no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.001, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise BodyTooSlow(self.body_timeout_s) from None
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
        except (BodyTooLarge, BodyTooSlow) as exc:
            if not started:
                await send_json(send, exc.status_code, self._payload(exc))


class HeaderDeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus: a connection that has not sent a complete request
    head within ``HEADER_TIMEOUT_S`` of connecting (or of its first byte of a new request)
    is closed. uvicorn itself only times out idle keep-alive connections, so a client
    sending one header byte a second could hold a connection forever."""

    HEADER_TIMEOUT_S = 10.0

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.HEADER_TIMEOUT_S, self._headers_too_slow)

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE:  # no complete request head yet
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            self._arm_header_timer()
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE and self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)


def server_config(app: Any, *, host: str, port: int, header_timeout_s: float = 10.0, **kwargs: Any) -> Any:
    """A uvicorn Config with the slow-client limits every iipa server uses."""
    import uvicorn

    protocol = type("IipaH11Protocol", (HeaderDeadlineH11Protocol,), {"HEADER_TIMEOUT_S": header_timeout_s})
    # timeout_keep_alive: idle connections go after 5 s; h11's head limit: 16 KiB of headers.
    return uvicorn.Config(app, host=host, port=port, http=protocol, timeout_keep_alive=5,
                          h11_max_incomplete_event_size=16 * 1024, **kwargs)
