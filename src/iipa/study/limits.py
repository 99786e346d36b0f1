"""Per-client rate limits of the study app (sign-ups, admin-token guesses): token buckets
keyed by client address, in memory, bounded in size."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimit:
    """``burst`` events at once per key, refilled at ``per_hour`` events an hour.

    ``hit(key)`` takes one event and returns 0.0, or, when the key has none left, the
    seconds until it has one (nothing is taken then). At most ``max_keys`` keys are
    remembered; the least recently seen are forgotten first.
    """

    def __init__(self, *, per_hour: float, burst: int, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if per_hour <= 0 or burst < 1:
            raise ValueError("per_hour must be > 0 and burst >= 1")
        self.rate, self.burst, self.max_keys, self.clock = per_hour / 3600.0, burst, max_keys, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._lock = threading.Lock()

    def _tokens(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) * self.rate)

    def hit(self, key: str) -> float:
        with self._lock:
            now = self.clock()
            tokens = self._tokens(key, now)
            if tokens < 1.0:
                return math.ceil((1.0 - tokens) / self.rate)
            self._buckets[key] = (tokens - 1.0, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return 0.0

    def blocked(self, key: str) -> float:
        """Like :meth:`hit` without taking an event: 0.0, or the seconds to wait."""
        with self._lock:
            tokens = self._tokens(key, self.clock())
            return 0.0 if tokens >= 1.0 else math.ceil((1.0 - tokens) / self.rate)
