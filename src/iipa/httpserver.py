"""How every iipa web app is served: uvicorn with connection limits slow clients cannot exhaust.

uvicorn's ``limit_concurrency`` counts every open connection, so 200 clients that each send
one header line and reconnect when dropped made every request, ``/healthz`` included, get
503. Here connections are tracked by phase instead:

- *pending*: still sending a request head (or idle between keep-alive requests), or still
  sending a body. At most ``max_pending`` of them; one more connection closes a pending one
  (:meth:`ConnectionLedger.victim`): the oldest of those in their head phase (idle or slow:
  a real client sends its head within milliseconds), else the slowest body arriving below
  ``min_body_rate``; never a body arriving at a normal rate. Connections pending for less
  than ``EVICT_MIN_AGE_S`` are spared, so a burst of newcomers may overshoot the cap up to
  twice; beyond that, with nothing to evict, the newcomer itself is closed. A head must be
  complete within ``header_timeout_s`` of the phase starting; a body within
  ``body_timeout_s`` (the app's own 408 comes first, this is the backstop).
- *admitted*: the whole request has arrived and the app is working on it. At most
  ``max_requests`` at once (503 beyond): this is the limit ``limit_concurrency`` was meant to
  be, and pending connections do not count toward it.

A response that starts before the request body was fully received (a 408, 413, 401...)
carries ``Connection: close``, so a client trickling the rest of a body cannot keep its
connection. Request heads over 16 KiB are refused with 431.

Proxy headers (``X-Forwarded-For``/``-Proto``) are ignored unless the operator names the
proxies that may set them (``forwarded_allow_ips``, ``--forwarded-allow-ips``): uvicorn's own
default trusts them from loopback, which let any local client choose the address every
per-address limit counts against.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from iipa.asgi import send_json
from iipa.clientlimits import MIN_BODY_RATE
from iipa.errors import IIPAError

MAX_HEAD_BYTES = 16 * 1024
# A pending connection younger than this is never evicted (see ConnectionLedger.enter).
EVICT_MIN_AGE_S = 0.25
# A body's rate is judged only after it has been arriving this long (evictions).
BODY_RATE_GRACE_S = 2.0
# Past the app's own body deadline (its 408), a pending body is cut without an answer.
BODY_BACKSTOP_S = 5.0


@dataclass
class ConnectionLedger:
    """One server's connections by phase, shared by all its protocol instances."""

    max_pending: int = 512
    max_requests: int = 256
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    min_body_rate: float = MIN_BODY_RATE
    pending: OrderedDict = field(default_factory=OrderedDict, repr=False)  # protocol -> phase, oldest first
    working: set = field(default_factory=set, repr=False)  # protocols whose app call is running
    evicted: int = 0
    timed_out: int = 0
    overloaded: int = 0  # requests answered 503 (max_requests admitted)

    def enter(self, proto: GuardedH11Protocol, phase: str | None) -> None:
        """``proto`` is now in ``phase`` ("head", "body" or None: not pending)."""
        self.pending.pop(proto, None)
        if phase is None:
            return
        now = time.monotonic()
        proto._phase_since, proto._body_bytes = now, 0
        while len(self.pending) >= self.max_pending:
            # A burst of connections accepted in one loop turn must not evict each other
            # before any of them could send its head: below twice the cap, only connections
            # older than EVICT_MIN_AGE_S go.
            victim = self.victim(now, spare_young=len(self.pending) < 2 * self.max_pending)
            if victim is None:
                if len(self.pending) < 2 * self.max_pending:
                    break
                victim = proto  # nothing may go for it: the newcomer goes
            self.pending.pop(victim, None)
            self.evicted += 1
            victim.drop()
            if victim is proto:
                return
        self.pending[proto] = phase

    def victim(self, now: float, *, spare_young: bool = True) -> GuardedH11Protocol | None:
        """The pending connection to close for a newcomer: the oldest in its head phase, else
        the slowest body below ``min_body_rate`` (not one whose reading the server paused),
        else None. With ``spare_young``, none pending for less than ``EVICT_MIN_AGE_S``."""
        slowest, slowest_rate = None, self.min_body_rate
        for proto, phase in self.pending.items():
            age = now - proto._phase_since
            if spare_young and age < EVICT_MIN_AGE_S:
                continue
            if phase == "head":
                return proto
            if age >= BODY_RATE_GRACE_S and not proto.reading_paused():
                rate = proto._body_bytes / age
                if rate < slowest_rate:
                    slowest, slowest_rate = proto, rate
        return slowest

    @property
    def admitted(self) -> int:
        """App calls running on a fully received request (a body still arriving is pending)."""
        done = (h11.DONE, h11.MUST_CLOSE)
        return sum(1 for proto in self.working if proto._phase is None and proto.conn.their_state in done)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol that reports its phase to a :class:`ConnectionLedger`."""

    ledger: ConnectionLedger  # set per server by :func:`server_config`

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._inner_app = self.app
        self.app = self._guarded_app
        self._phase: str | None = None
        self._phase_since = 0.0
        self._body_bytes = 0  # received in the current body phase
        self._timer: asyncio.TimerHandle | None = None

    # -- phases ---------------------------------------------------------------------------
    def _observed_phase(self) -> str | None:
        if self.transport is None or self.transport.is_closing():
            return None
        state = self.conn.their_state
        return "head" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None

    def _update_phase(self) -> None:
        if self._phase == "closed":
            return
        phase = self._observed_phase()
        if phase == self._phase:
            return
        self._phase = phase
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.ledger.enter(self, phase)
        if phase is not None:
            limit = (self.ledger.header_timeout_s if phase == "head"
                     else self.ledger.body_timeout_s + BODY_BACKSTOP_S)
            self._timer = self.loop.call_later(limit, self._expired, phase)

    def reading_paused(self) -> bool:
        """Whether the server stopped reading this connection (the app is not reading the
        body yet): its slowness is then the server's, not the client's."""
        flow = getattr(self, "flow", None)
        return bool(flow is not None and flow.read_paused)

    def _expired(self, phase: str) -> None:
        self._timer = None
        if self._phase == phase:
            self.ledger.timed_out += 1
            self.drop()

    def drop(self) -> None:
        """Close this connection (evicted or timed out); no answer is owed mid-head."""
        self.ledger.pending.pop(self, None)
        self._phase = "closed"
        if self.transport is not None:
            self.transport.close()

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._update_phase()

    def data_received(self, data: bytes) -> None:
        if self._phase == "body":
            self._body_bytes += len(data)
        super().data_received(data)
        self._update_phase()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._update_phase()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.ledger.pending.pop(self, None)
        self._phase = "closed"
        super().connection_lost(exc)

    # -- the app, behind the admission limit ------------------------------------------------
    async def _guarded_app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._inner_app(scope, receive, send)
            return

        async def closing_send(message: dict[str, Any]) -> None:
            # Answered before the body arrived (408, 413, 401...): the rest of the body is
            # never read, so the connection cannot be reused; say so, and uvicorn closes it.
            if message["type"] == "http.response.start" and self.conn.their_state is h11.SEND_BODY:
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        if head_bytes(scope) > MAX_HEAD_BYTES:
            await send_json(send, 431, {"error": "request header fields too large",
                                        "detail": f"the request head exceeds {MAX_HEAD_BYTES} bytes"})
            return
        if self.ledger.admitted >= self.ledger.max_requests:
            self.ledger.overloaded += 1
            await send_json(send, 503, {"error": "overloaded",
                                        "detail": f"{self.ledger.admitted} requests in progress; retry later"})
            return
        self.ledger.working.add(self)
        try:
            await self._inner_app(scope, receive, closing_send)
        finally:
            self.ledger.working.discard(self)

def head_bytes(scope: dict[str, Any]) -> int:
    """The size of a request head as sent: request line plus header lines."""
    line = len(scope.get("method", "")) + len(scope.get("raw_path") or b"") + len(scope.get("query_string", b"")) + 12
    return line + sum(len(k) + len(v) + 4 for k, v in scope.get("headers", []))


def server_config(app: Any, *, host: str, port: int, header_timeout_s: float = 10.0, body_timeout_s: float = 60.0,
                  max_pending: int = 512, max_requests: int = 256, min_body_rate: float = MIN_BODY_RATE,
                  forwarded_allow_ips: str | None = None, **kwargs: Any) -> Any:
    """A uvicorn Config with the connection limits above; ``config.ledger`` is its ledger.

    ``forwarded_allow_ips``: comma-separated addresses or networks of the proxies whose
    ``X-Forwarded-For`` names the client (``*``: any); None (the default) ignores the header."""
    import uvicorn

    ledger = ConnectionLedger(max_pending=min(max_pending, _fd_room()), max_requests=max_requests,
                              header_timeout_s=header_timeout_s, body_timeout_s=body_timeout_s,
                              min_body_rate=min_body_rate)
    protocol = type("IipaH11Protocol", (GuardedH11Protocol,), {"ledger": ledger})
    proxies = {"proxy_headers": False} if not forwarded_allow_ips else {
        "proxy_headers": True, "forwarded_allow_ips": forwarded_allow_ips}
    # timeout_keep_alive: idle connections go after 5 s; h11's limit: 16 KiB of incomplete head.
    config = uvicorn.Config(app, host=host, port=port, http=protocol, timeout_keep_alive=5,
                            h11_max_incomplete_event_size=MAX_HEAD_BYTES, **proxies, **kwargs)
    config.ledger = ledger  # type: ignore[attr-defined]
    return config


def _fd_room() -> int:
    """Half the file descriptors this process may open, after raising the soft limit to the
    hard one: pending connections must never starve the listening socket of descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        wanted = hard if hard != resource.RLIM_INFINITY else 65536
        if wanted > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    return max(16, soft // 2)


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before any other work: a bad port or one in use is one
    line (:class:`IIPAError`), not uvicorn's traceback and log lines."""
    if not 0 <= port <= 65535:
        raise IIPAError(f"--port {port}: a port is a number from 0 to 65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise IIPAError(f"--host {host}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise IIPAError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def run_server(config: Any, sock: socket.socket) -> None:
    """Serve ``config`` on the already bound ``sock`` until SIGINT/SIGTERM."""
    import uvicorn

    uvicorn.Server(config).run(sockets=[sock])
