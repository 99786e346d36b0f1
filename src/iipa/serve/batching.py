"""One model thread for the whole service, fed by a queue: micro-batching lives here.

Both backends (onnxruntime, PyTorch) already spread one model call over every core, so
two calls at once only fight for them; and per call, a batch of 16 costs far less than 16
batches of 1 (weights are read once, kernels stay busy). So every request hands each
image's prepared uint8 views (V x S x S x 3 numpy, as ``iipa score`` prepares them) to this
queue and awaits a future; the single worker thread takes the first job, then keeps taking
jobs for up to ``max_wait_ms`` or until ``max_batch_size`` views are gathered, and scores
them as one :meth:`Scorer.score_views` call (one backend call; an image's score is the mean
of its views). With batching off, it runs one request's images per call, in arrival order.
Other model work (Grad-CAM for /v1/explain) runs on the same thread between batches, so
nothing touches a model concurrently.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from iipa.scoring import Scorer


@dataclass
class _Job:
    views: list[np.ndarray] | None  # one uint8 V x S x S x 3 array per image; None: ``call`` is run instead
    future: Future
    call: Callable[[], Any] | None = None
    queued_at: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Score the views of images from many concurrent requests on one worker thread.

    ``on_batch(n_images)`` is called after every model call (for metrics).
    """

    def __init__(self, scorer: Scorer, *, enabled: bool = True, max_batch_size: int = 16,
                 max_wait_ms: float = 10.0, on_batch: Callable[[int], None] | None = None) -> None:
        self.scorer = scorer
        self.enabled = enabled
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.on_batch = on_batch
        self._queue: queue.Queue[_Job] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="iipa-model", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish every job already queued, then end the worker thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- submitting ------------------------------------------------------------------------
    async def score(self, views: list[np.ndarray]) -> list[float]:
        """One score per image from its views (all of the profile's input size), in order."""
        if not views:
            return []
        future: Future = Future()
        self._submit(_Job(list(views), future))
        return await asyncio.wrap_future(future)

    async def run(self, call: Callable[[], Any]) -> Any:
        """Run ``call()`` on the model thread (e.g. Grad-CAM) and return its result."""
        future: Future = Future()
        self._submit(_Job(None, future, call=call))
        return await asyncio.wrap_future(future)

    def _submit(self, job: _Job) -> None:
        # Started on first use too, so an app driven without its lifespan (a bare test
        # client) still works; the lifespan stops it after the last request.
        self.start()
        self._queue.put(job)

    # -- the worker thread -----------------------------------------------------------------
    def _run(self) -> None:
        pending: _Job | None = None
        while True:
            job = pending if pending is not None else self._queue.get()
            pending = None
            if job is _STOP:
                return
            if job.call is not None:
                self._run_call(job)
                continue
            jobs = [job]
            if self.enabled:
                jobs, pending = self._gather(jobs)
            self._score(jobs)

    def _gather(self, jobs: list[_Job]) -> tuple[list[_Job], _Job | None]:
        """Add queued score jobs until the batch is full or ``max_wait_s`` has passed.

        Returns the gathered jobs and at most one job that did not fit (or a stop/call
        job), which the loop runs next so nothing is reordered past it.
        """
        size = _size(jobs[0])
        deadline = time.perf_counter() + self.max_wait_s
        while size < self.max_batch_size:
            remaining = deadline - time.perf_counter()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP or job.call is not None or size + _size(job) > self.max_batch_size:
                return jobs, job
            jobs.append(job)
            size += _size(job)
        return jobs, None

    def _score(self, jobs: list[_Job]) -> None:
        live = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        if not live:
            return
        views = [v for j in live for v in j.views or []]
        try:
            scores = self.scorer.score_views(views)
        except BaseException as exc:  # noqa: BLE001 - reported to every waiting request
            for j in live:
                j.future.set_exception(exc)
            return
        if self.on_batch is not None:
            self.on_batch(len(views))
        start = 0
        for j in live:
            n = len(j.views or [])
            j.future.set_result([float(s) for s in scores[start:start + n]])
            start += n

    def _run_call(self, job: _Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            job.future.set_result(job.call())  # type: ignore[misc]
        except BaseException as exc:  # noqa: BLE001
            job.future.set_exception(exc)


def _size(job: _Job) -> int:
    """Model inputs of a job: its images' views."""
    return sum(len(v) for v in job.views or [])


# Queued by ``stop()``: the worker ends when it reaches it, after everything queued before.
_STOP = _Job(None, Future())
