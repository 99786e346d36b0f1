"""What a multipart body may take while it arrives, so slow uploads cannot starve others.

- *Parse memory* is held from the service's :class:`~iipa.serve.memory.MemoryBudget` as the
  body's bytes arrive (:func:`parse_reserve`), not from its declared length: a client
  trickling a body holds a few KiB, not the ~2 MiB its parser could need at most. The hold
  ends with the body (the request's decodes must not wait behind it).
- *Uploads per address*: one client address may have ``max_uploads_per_address`` bodies
  arriving at once; one more gets 429 before its body is read, after ``REFUSAL_DELAY_S``: a
  client that reconnects at once when refused would otherwise make the server answer
  hundreds of refusals a second (the refused connection holds no memory while it waits).
- *Spool disk*: parts past the spooling threshold go to temporary files. Every byte of a
  multipart body in flight counts against ``upload_disk_bytes`` until its request ends
  (a body past it gets 503), and a temporary folder that is really full is answered 507
  (:func:`iipa.serve.app` maps the parser's ENOSPC).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from starlette.exceptions import HTTPException

from iipa.asgi import send_json
from iipa.clientlimits import client_address
from iipa.serve.memory import GrowingHold, MemoryBudget
from iipa.serve.settings import ServeSettings

Scope = dict[str, Any]
# Multipart parts up to this size stay in RAM while parsed (Starlette's spool_max_size,
# set by create_app); larger ones go to temporary files.
SPOOL_MAX_BYTES = 64 * 1024
# The parser's own buffers and the server's read buffer, per request, on top of the parts.
PARSE_OVERHEAD_BYTES = 256 * 1024
# Parse memory is held in steps of this size (fewer waits on the budget's lock).
RESERVE_STEP_BYTES = 16 * 1024
REFUSAL_DELAY_S = 2.0


class UploadStorageFull(HTTPException):
    error = "upload storage full"

    def __init__(self, budget: int) -> None:
        super().__init__(503, f"uploads in progress fill the server's upload storage ({budget} bytes); "
                              "retry later", headers={"Retry-After": "5"})


class NoParseMemory(HTTPException):
    error = "overloaded"

    def __init__(self) -> None:
        super().__init__(503, "no memory to parse the upload; retry later", headers={"Retry-After": "5"})


def is_multipart_post(scope: Scope) -> bool:
    if scope.get("method") != "POST":
        return False
    return any(k == b"content-type" and v.lower().startswith(b"multipart/") for k, v in scope.get("headers", []))


def parse_reserve(received: int, max_files: int) -> int:
    """Bytes a multipart parser may hold in RAM once ``received`` body bytes have arrived:
    what arrived, up to the parts under the spooling threshold (at most ``max_files`` of
    them; Starlette refuses more while parsing), plus the read buffers, which hold at most
    ``PARSE_OVERHEAD_BYTES`` of it; rounded up to a step."""
    need = min(received, max_files * SPOOL_MAX_BYTES) + min(received, PARSE_OVERHEAD_BYTES)
    cap = max_files * SPOOL_MAX_BYTES + PARSE_OVERHEAD_BYTES
    return min(cap, math.ceil(need / RESERVE_STEP_BYTES) * RESERVE_STEP_BYTES)


class UploadLedger:
    """One service's multipart bodies: how many are arriving per client address, and how
    many of their bytes may sit in the temporary folder."""

    def __init__(self, *, max_per_address: int, disk_bytes: int, refusal_delay_s: float = REFUSAL_DELAY_S) -> None:
        self.max_per_address, self.disk_bytes, self.refusal_delay_s = max_per_address, disk_bytes, refusal_delay_s
        self.arriving: dict[str, int] = {}
        self.spooled = self.spool_peak = 0
        self.refused_busy = self.refused_disk = 0

    def enter(self, client: str) -> bool:
        n = self.arriving.get(client, 0)
        if n >= self.max_per_address:
            self.refused_busy += 1
            return False
        self.arriving[client] = n + 1
        return True

    def leave(self, client: str) -> None:
        n = self.arriving.get(client, 0) - 1
        if n > 0:
            self.arriving[client] = n
        else:
            self.arriving.pop(client, None)

    def spool(self, nbytes: int) -> bool:
        if self.spooled + nbytes > self.disk_bytes:
            self.refused_disk += 1
            return False
        self.spooled += nbytes
        self.spool_peak = max(self.spool_peak, self.spooled)
        return True

    def unspool(self, nbytes: int) -> None:
        self.spooled -= nbytes


class BodyGate:
    """ASGI: the limits above for each multipart POST. Sits inside
    :class:`~iipa.asgi.BodyLimit`, so the time spent here waiting for parse memory never
    counts against the client's body rate."""

    def __init__(self, app: Any, *, budget: MemoryBudget, uploads: UploadLedger, settings: ServeSettings) -> None:
        self.app, self.budget, self.uploads, self.settings = app, budget, uploads, settings

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not is_multipart_post(scope):
            await self.app(scope, receive, send)
            return
        client = client_address(scope)
        if not self.uploads.enter(client):
            await asyncio.sleep(self.uploads.refusal_delay_s)
            await send_json(send, 429, {"error": "too many uploads",
                                        "detail": f"{self.uploads.max_per_address} uploads from this address are "
                                                  "still arriving; send the next when one has finished"},
                            headers=[(b"retry-after", b"5")])
            return
        hold = GrowingHold(self.budget)
        received = spooled = 0
        arriving = True

        def body_arrived() -> None:
            nonlocal arriving
            if arriving:
                arriving = False
                self.uploads.leave(client)
                hold.release()

        async def gated_receive() -> dict[str, Any]:
            nonlocal received, spooled
            message = await receive()
            if message["type"] != "http.request":
                body_arrived()
                return message
            n = len(message.get("body", b""))
            received += n
            if not self.uploads.spool(n):
                raise UploadStorageFull(self.uploads.disk_bytes)
            spooled += n
            want = min(parse_reserve(received, self.settings.max_files), self.budget.parse_limit)
            try:
                await asyncio.wait_for(hold.grow_to(want), self.settings.request_timeout_s)
            except asyncio.TimeoutError:
                raise NoParseMemory() from None
            if not message.get("more_body", False):
                body_arrived()
            return message

        started = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, gated_receive, tracking_send)
        except (UploadStorageFull, NoParseMemory) as exc:  # an app that did not answer them itself
            if started:
                raise
            await send_json(send, exc.status_code, {"error": exc.error, "detail": exc.detail},
                            headers=[(b"retry-after", b"5")])
        finally:
            body_arrived()
            self.uploads.unspool(spooled)
