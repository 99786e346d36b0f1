"""Limits on what one client may do, shared by every iipa web app, in plain Python (no web
framework imported, so ``iipa --help`` can read the defaults).

The client address is ``scope["client"]``: the peer of the TCP connection, unless the
operator named trusted proxies (``--forwarded-allow-ips``), in which case uvicorn has
replaced it with the address the proxy reported. A header alone never changes it, so a
per-address limit counts the address a request really came from.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

# A body must arrive at this many bytes a second, averaged over each RATE_WINDOW_S spent
# waiting for it (a phone on a poor mobile link sends tens of KB/s; a client holding a
# connection open by trickling sends a byte every few seconds).
MIN_BODY_RATE = 1024
RATE_WINDOW_S = 10.0
FORWARDED_ALLOW_IPS_HELP = (
    "comma-separated addresses or networks of reverse proxies whose X-Forwarded-For header names "
    "the client (e.g. 127.0.0.1 for a proxy on this machine; '*' trusts anyone). Default: none, "
    "the header is ignored and every per-address limit counts the connection's own address")


def client_address(scope: dict[str, Any]) -> str:
    """The address per-client limits count against (see the module docstring)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class FailureBackoff:
    """Wrong credentials (API keys, admin tokens) counted per client address, with backoff:
    the ``free``-th failure blocks the address for ``first_block_s``, and every further one
    for twice as long as the one before, up to ``max_block_s``. While an address is blocked,
    its requests needing the credential get 429 without the credential being checked
    (checking it would tell a guesser when it had found the key). An address with no failure
    for ``max_block_s`` starts over. Failures count against the address they came from,
    never against a key, so failures sent in someone else's name (a forged X-Forwarded-For)
    cannot lock that someone out; clients that really share an address share its count.
    At most ``max_clients`` addresses are remembered (the least recently failed are
    forgotten first). Thread-safe."""

    def __init__(self, *, free: int, first_block_s: float = 10.0, max_block_s: float = 600.0,
                 max_clients: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        if free < 1 or first_block_s <= 0 or max_block_s < first_block_s:
            raise ValueError("free >= 1 and 0 < first_block_s <= max_block_s are required")
        self.free, self.first_block_s, self.max_block_s, self.max_clients = free, first_block_s, max_block_s, max_clients
        self._state: OrderedDict[str, tuple[int, float, float]] = OrderedDict()  # -> failures, blocked until, last
        self._lock = threading.Lock()
        self.clock = clock

    def retry_after(self, client: str) -> int:
        """Whole seconds the client must wait before its credential is checked again (0: now)."""
        with self._lock:
            _, until, _ = self._state.get(client, (0, 0.0, 0.0))
            left = until - self.clock()
            return math.ceil(left) if left > 0 else 0

    def failed(self, client: str) -> int:
        """Count one failure; returns the seconds the client is now blocked for (0: not blocked)."""
        now = self.clock()
        with self._lock:
            count, until, last = self._state.pop(client, (0, 0.0, 0.0))
            if now - last >= self.max_block_s and now >= until:
                count = 0
            count += 1
            block = 0.0
            if count >= self.free:
                block = min(self.max_block_s, self.first_block_s * 2.0 ** min(64, count - self.free))
                until = now + block
            self._state[client] = (count, until, now)
            while len(self._state) > self.max_clients:
                self._state.popitem(last=False)
            return math.ceil(block)
