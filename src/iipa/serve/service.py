"""The service's working parts, shared by the routes: scorer, batcher, limits, metrics.

The service scores through the same :class:`~iipa.scoring.Scorer` (record + backend) as
``iipa score``: uploads are decoded within the pixel budget, turned into the profile's
numpy views (:meth:`Profile.image_views`, multi-crop included) and handed to the
micro-batcher, which calls the scorer's backend. With an ONNX backend nothing imports torch;
Grad-CAM heatmaps load the model's PyTorch weights on first use (see :meth:`Service.heatmaps_unavailable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from iipa import levels
from iipa.errors import IIPAError
from iipa.modelcard import public_card
from iipa.profiles import CROPS
from iipa.scoring import Scorer
from iipa.serve.batching import MicroBatcher
from iipa.serve.bodies import UploadLedger
from iipa.serve.memory import MemoryBudget, fix_mmap_threshold, release_memory
from iipa.serve.metrics import Metrics
from iipa.serve.settings import ServeSettings
from iipa.serve.uploads import ApiError, Upload, decode, probe

T = TypeVar("T")
# Decoded bytes after which freed memory is handed back (malloc_trim) once nothing is decoded.
TRIM_AFTER_BYTES = 64 * 2**20


class Service:
    def __init__(self, scorer: Scorer, settings: ServeSettings) -> None:
        self.scorer = scorer
        self.record = scorer.record
        self.profile = scorer.profile
        self.settings = settings
        self.metrics = Metrics()
        self.batcher = MicroBatcher(scorer, enabled=settings.batching, max_batch_size=settings.max_batch_size,
                                    max_wait_ms=settings.max_wait_ms, on_batch=self.metrics.observe_batch)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._semaphore: asyncio.Semaphore | None = None
        self._semaphore_loop: asyncio.AbstractEventLoop | None = None
        self._admitted = 0
        self.budget = MemoryBudget(settings.decode_budget_bytes)
        self.uploads = UploadLedger(max_per_address=settings.max_uploads_per_address,
                                    disk_bytes=settings.upload_disk_bytes)
        self._decoded_since_trim = 0
        fix_mmap_threshold()

    @property
    def model_name(self) -> str:
        """The model's name without server-side paths (a checkpoint's file name)."""
        return str(public_card(self.record)["weights"])

    def crops(self, requested: int | None) -> int:
        """Views per image for a request: its own ``crops``, else the server's (``iipa serve --crops``)."""
        if requested is None:
            return self.scorer.crops
        if requested not in CROPS:
            raise ApiError(422, "bad crops", f"crops must be one of {', '.join(map(str, CROPS))}, not {requested}")
        return requested

    def heatmaps_unavailable(self) -> str | None:
        """Why /v1/explain cannot answer here (None when it can): heatmaps need the model's
        PyTorch weights and the torch extra."""
        return self.record.heatmaps_unavailable()

    def heatmap_model(self) -> Any:
        """The PyTorch model for Grad-CAM, loaded on first use (call it on the model thread)."""
        try:
            return self.scorer.torch_model()
        except IIPAError as exc:
            raise ApiError(501, "not implemented", str(exc)) from None

    @property
    def decode_pool(self) -> ThreadPoolExecutor:
        """Decoding threads (Pillow's C decoders release the GIL, so two keep the model fed).
        Created on demand, so the app can go through several lifespans (test clients do)."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 2)),
                                                thread_name_prefix="iipa-decode")
            return self._pool

    def start(self) -> None:
        self.batcher.start()

    def stop(self) -> None:
        """Called after the server has drained: finish queued model work, end the threads."""
        self.batcher.stop()
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    # -- limits ----------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Admit at most ``max_concurrency`` requests at once and ``max_queue`` waiting."""
        s = self.settings
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._semaphore_loop is not loop:
            # A semaphore belongs to one event loop; test clients run a new loop per session.
            self._semaphore, self._semaphore_loop = asyncio.Semaphore(s.max_concurrency), loop
        if self._admitted >= s.max_concurrency + s.max_queue:
            raise ApiError(503, "overloaded", f"{self._admitted} requests in progress or waiting; retry later")
        self._admitted += 1
        try:
            async with self._semaphore:
                yield
        finally:
            self._admitted -= 1

    async def guarded(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work()`` inside a concurrency slot, within the request timeout."""
        timeout = self.settings.request_timeout_s

        async def admitted() -> T:
            async with self.slot():
                return await work()

        try:
            # On timeout wait_for cancels the work: queued decodes and model jobs of this
            # request are cancelled (their futures), waits for the budget end.
            return await asyncio.wait_for(admitted(), timeout)
        except asyncio.TimeoutError:
            raise ApiError(503, "timeout", f"not finished within {timeout:g} s; retry later") from None
        finally:
            self.after_request()

    # -- work ----------------------------------------------------------------------------
    async def _off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.decode_pool, fn, *args)
        except ApiError:
            self.metrics.observe_image_error()
            raise

    async def probe(self, upload: Upload, *, draft_size: tuple[int, int] | None = None) -> int:
        """Check an upload from its header; returns the bytes its decode will need at its peak."""
        size = draft_size or self.profile.decode_size
        return await self._off_loop(lambda: probe(upload, self.settings, draft_size=size))

    def check_request_pixels(self, costs: list[int]) -> None:
        """413 when the probed images of one request need too much memory in all."""
        total = sum(costs)
        if total > self.settings.max_request_decode_bytes:
            raise ApiError(413, "too many pixels",
                           f"the images of this request need {total} bytes to decode in all "
                           f"> limit {self.settings.max_request_decode_bytes}")

    @contextlib.asynccontextmanager
    async def decoded(self, upload: Upload, *, draft_size: tuple[int, int] | None = None,
                      nbytes: int | None = None) -> AsyncIterator[Image.Image]:
        """The decoded image, alive only inside this block, which holds its probed peak
        bytes of the global memory budget (waiting for them if needed)."""
        size = draft_size or self.profile.decode_size
        if nbytes is None:
            nbytes = await self.probe(upload, draft_size=size)
        async with self.budget.hold(nbytes):
            img = await self._off_loop(lambda: decode(upload, self.settings, draft_size=size))
            try:
                yield img
            finally:
                del img
                self._decoded_since_trim += nbytes

    async def prepare(self, upload: Upload, nbytes: int | None = None, *, crops: int = 1) -> np.ndarray:
        """Upload -> its uint8 V x S x S x 3 views (decoded off the event loop), as
        :meth:`Profile.view_array` makes them for ``iipa score``: decoded as the profile says
        (``decode_size``), then :meth:`Profile.image_views`, so the service's score is every
        other entry point's."""
        async with self.decoded(upload, nbytes=nbytes) as img:
            return await self._off_loop(self.profile.image_views, img, crops)

    def after_request(self) -> None:
        """Once no image is decoded any more, hand the freed memory back to the OS."""
        if self.budget.in_use == 0 and self._decoded_since_trim >= TRIM_AFTER_BYTES:
            self._decoded_since_trim = 0
            asyncio.get_running_loop().run_in_executor(self.decode_pool, release_memory)

    def describe(self, score: float) -> dict[str, Any]:
        return levels.describe(score, self.record.reference)

    def card(self) -> dict[str, Any]:
        """The one model card (:func:`iipa.modelcard.public_card`) plus this server's runtime and limits."""
        s = self.settings
        reason = self.heatmaps_unavailable()
        return {
            **public_card(self.record),
            "crops": self.scorer.crops,
            "runtime": self.scorer.runtime,
            "device": str(self.scorer.device),
            "precision": self.scorer.precision,
            "heatmaps": {"available": reason is None, "reason": reason},
            "limits": {"max_upload_bytes": s.max_upload_bytes, "max_files": s.max_files,
                       "max_pixels": s.max_pixels, "max_request_decode_bytes": s.max_request_decode_bytes,
                       "decode_budget_bytes": s.decode_budget_bytes, "max_request_bytes": s.max_body_bytes, "max_aspect_ratio": s.max_aspect_ratio,
                       "allowed_formats": [f for f in s.allowed_formats if f != "MPO"],
                       "min_body_rate": s.min_body_rate, "max_uploads_per_address": s.max_uploads_per_address,
                       "upload_disk_bytes": s.upload_disk_bytes,
                       "request_timeout_s": s.request_timeout_s, "max_concurrency": s.max_concurrency,
                       "batching": s.batching, "max_batch_size": s.max_batch_size, "max_wait_ms": s.max_wait_ms,
                       "api_key_required": s.api_key is not None},
        }

