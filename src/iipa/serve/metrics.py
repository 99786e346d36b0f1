"""Prometheus metrics in the text exposition format (version 0.0.4), written by hand.

Four families are enough to run the service: requests by endpoint and status, request
latency, images scored and model batch sizes. The endpoint label is the route template
(or ``other``), never the raw path, so a client cannot grow the label set.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        sep = "," if labels else ""
        out, cumulative = [], 0
        for bound, n in zip((*self.buckets, float("inf")), self.counts, strict=True):
            cumulative += n
            le = "+Inf" if bound == float("inf") else _num(bound)
            out.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {cumulative}')
        braces = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{braces} {_num(self.sum)}")
        out.append(f"{name}_count{braces} {self.count}")
        return out


def _num(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Thread-safe counters and histograms; ``render()`` gives the exposition text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency: dict[str, _Histogram] = {}
        self.images_scored = 0
        self.image_errors = 0
        self.batches = _Histogram(BATCH_BUCKETS)
        self.in_flight = 0

    def observe_request(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, endpoint, status)] += 1
            self.latency.setdefault(endpoint, _Histogram(LATENCY_BUCKETS)).observe(seconds)

    def observe_batch(self, n_images: int) -> None:
        with self._lock:
            self.batches.observe(n_images)
            self.images_scored += n_images

    def observe_image_error(self) -> None:
        with self._lock:
            self.image_errors += 1

    def add_in_flight(self, delta: int) -> None:
        with self._lock:
            self.in_flight += delta

    def render(self) -> str:
        with self._lock:
            lines = ["# HELP iipa_http_requests_total HTTP requests by method, endpoint and status.",
                     "# TYPE iipa_http_requests_total counter"]
            for (method, endpoint, status), n in sorted(self.requests.items()):
                lines.append(f'iipa_http_requests_total{{method="{method}",endpoint="{_escape(endpoint)}",'
                             f'status="{status}"}} {n}')
            lines += ["# HELP iipa_http_request_duration_seconds Time from request start to response end.",
                      "# TYPE iipa_http_request_duration_seconds histogram"]
            for endpoint, hist in sorted(self.latency.items()):
                lines += hist.lines("iipa_http_request_duration_seconds", f'endpoint="{_escape(endpoint)}"')
            lines += ["# HELP iipa_images_scored_total Images that went through the model.",
                      "# TYPE iipa_images_scored_total counter",
                      f"iipa_images_scored_total {self.images_scored}",
                      "# HELP iipa_image_errors_total Uploaded images refused (undecodable, too large, format).",
                      "# TYPE iipa_image_errors_total counter",
                      f"iipa_image_errors_total {self.image_errors}",
                      "# HELP iipa_batch_size Images per model call (micro-batching gathers requests).",
                      "# TYPE iipa_batch_size histogram"]
            lines += self.batches.lines("iipa_batch_size")
            lines += ["# HELP iipa_requests_in_flight Requests being processed now.",
                      "# TYPE iipa_requests_in_flight gauge",
                      f"iipa_requests_in_flight {self.in_flight}"]
        return "\n".join(lines) + "\n"
