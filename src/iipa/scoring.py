"""The one inference path: :func:`make_scorer` composes a model's profile with a backend.

A :class:`Scorer` turns every input into its profile's uint8 views (:meth:`Profile.view_array`:
decoding, resizing, cropping, multi-crop; numpy, in a pool of threads: Pillow's decoders and
resizers release the GIL) and hands them to a *backend*, one small interface: uint8 views
N x H x W x 3 in, float32 numpy scores out. Two backends exist: onnxruntime
(:class:`iipa.backends.onnxrt.OnnxBackend`) and PyTorch (:class:`iipa.backends.pytorch.TorchBackend`,
the only place scoring imports torch). Results come out in input order, one
:class:`ScoreResult` per input, failures included; memory stays bounded by two batches.

Which backend scores a model is decided by :func:`iipa.backends.choose.choose_runtime`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from iipa import levels
from iipa.backends.choose import choose_runtime
from iipa.backends.device import decode_threads, device_type
from iipa.errors import IIPAError
from iipa.images import ImageInput, describe
from iipa.inputpolicy import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, InputPolicy
from iipa.model.record import ModelRecord, resolve_model
from iipa.profiles import CROPS, Prepared, prepare_item


class Backend(Protocol):
    """What runs a model: prepared uint8 views N x H x W x 3 in, float32 scores (N,) out."""

    name: str  # "onnx" or "torch"
    device: str  # where it runs: "cpu", "cuda:0", ...
    precision: str  # "fp32", "bf16", "fp16" or "int8"

    def __call__(self, views: np.ndarray) -> np.ndarray: ...


@dataclass
class ScoreResult:
    """One input's result: ``scaled`` (0-100) and ``level`` need the model's reference
    distribution (see :mod:`iipa.levels`) and are None without one."""

    source: str
    score: float | None = None
    error: str | None = None
    scaled: float | None = None
    level: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.source, "score": self.score, "scaled": self.scaled,
                "level": self.level, "error": self.error}


def make_scorer(model: Any = None, *, runtime: str = "auto", device: str | None = None, precision: str = "auto",
                crops: int | None = None, batch_size: int = 32, num_workers: int | None = None,
                threads: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES,
                optimize: str = "none", channels_last: bool = True, offline: bool = False) -> Scorer:
    """A :class:`Scorer` for ``model`` (a :class:`~iipa.model.record.ModelRecord` or anything
    :func:`~iipa.model.record.resolve_model` takes; None: the default model). A :class:`Scorer` is
    returned as it is, with its own settings, as ``resolve_model`` returns a record: every entry
    point can take either.

    ``crops``: views per image, 1, 5 or 10 (None: the model's default, ``record.crops``).
    ``precision``: ``auto`` (= fp32, see :mod:`iipa.backends.device`), ``fp32``, ``bf16``, ``fp16``
    (PyTorch only; an ONNX file's precision is fixed at export). ``num_workers``: decoding
    threads (default :func:`iipa.backends.device.decode_threads`); ``threads``: onnxruntime's
    compute threads (default: one per CPU). ``optimize``/``channels_last``: PyTorch only.
    ``max_pixels``/``max_bytes``: an input beyond either is an error row
    (:class:`~iipa.inputpolicy.InputPolicy`, whose aspect-ratio limit applies too).
    """
    if isinstance(model, Scorer):
        return model
    record = resolve_model(model, offline=offline)
    which = choose_runtime(record, runtime, device=device, precision=precision, optimize=optimize)
    backend: Backend
    if which == "onnx":
        from iipa.backends.onnxrt import OnnxBackend

        backend = OnnxBackend(record, device=device, precision=precision, threads=threads)
    else:
        from iipa.backends.pytorch import TorchBackend

        backend = TorchBackend(record, device=device, precision=precision, optimize=optimize,
                               channels_last=channels_last)
    return Scorer(record, backend, crops=crops, batch_size=batch_size, num_workers=num_workers,
                  max_pixels=max_pixels, max_bytes=max_bytes)


class Scorer:
    """Score images with a model record's profile and a backend (build one with :func:`make_scorer`).

    >>> scorer = make_scorer("run/best.pt")                 # doctest: +SKIP
    >>> scorer.score(["a.jpg", "b.jpg"])                    # doctest: +SKIP
    [3.12, 1.87]

    An image's score is the mean over its ``crops`` views: 1 (the profile's centre crop), 5
    (four corners + centre) or 10 (the same and their mirror images).
    """

    def __init__(self, record: ModelRecord, backend: Backend, *, crops: int | None = None, batch_size: int = 32,
                 num_workers: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        crops = record.crops if crops is None else crops
        if crops not in CROPS:
            raise IIPAError(f"crops must be one of {', '.join(map(str, CROPS))}, not {crops}")
        if batch_size < 1:
            raise IIPAError(f"batch size must be at least 1, got {batch_size}")
        self.record = record
        self.backend = backend
        self.profile = record.profile
        self.crops = crops
        self.batch_size = batch_size
        self.num_workers = decode_threads(backend.device) if num_workers is None else max(0, num_workers)
        self.policy = InputPolicy(max_bytes=max_bytes, max_pixels=max_pixels)
        self.max_pixels = max_pixels
        self._torch_model: Any = None

    @property
    def runtime(self) -> str:
        return self.backend.name

    @property
    def device(self) -> str:
        return self.backend.device

    @property
    def precision(self) -> str:
        return self.backend.precision

    @property
    def reference(self) -> Any:
        return self.record.reference

    def torch_model(self) -> Any:
        """The model's PyTorch weights as a PopularityNet (for Grad-CAM heatmaps): the torch
        backend's own model, else loaded on the CPU on first use. Raises IIPAError saying why
        when they cannot be had (:meth:`ModelRecord.heatmaps_unavailable`)."""
        if self._torch_model is None:
            if self.backend.name == "torch":
                self._torch_model = self.backend.model  # type: ignore[attr-defined]
            else:
                reason = self.record.torch_unavailable()
                if reason:
                    raise IIPAError(reason)
                self._torch_model = self.record.load_torch("cpu")
        return self._torch_model

    def score_array(self, views: np.ndarray) -> np.ndarray:
        """uint8 N x S x S x 3 views (already resized and cropped) -> N float32 scores."""
        return np.asarray(self.backend(np.ascontiguousarray(views, dtype=np.uint8)), dtype=np.float32).reshape(-1)

    def score_views(self, views: Sequence[np.ndarray]) -> list[float]:
        """One score per image from its uint8 V x S x S x 3 views (mean over the views, in float64)."""
        if not views:
            return []
        counts = [len(v) for v in views]
        scores = self.score_array(np.concatenate(views))
        if all(c == 1 for c in counts):
            return scores.tolist()
        return [float(s.mean(dtype=np.float64)) for s in np.split(scores, np.cumsum(counts)[:-1])]

    def prepare(self, item: ImageInput) -> Prepared:
        """One input -> (its uint8 views, None) or (None, error): what :meth:`iter_scores` decodes."""
        return prepare_item(self.profile, item, self.crops, self.policy)

    def _batches(self, items: Sequence[ImageInput], pool: ThreadPoolExecutor | None) -> Iterator[list[Prepared]]:
        """Decoded batches in order. On the CPU the next batch is only submitted once the
        caller comes back for it (after the model ran); on a GPU it decodes meanwhile."""
        per_batch = max(1, self.batch_size // (self.crops if self.profile.crop else min(self.crops, 2)))
        starts = range(0, len(items), per_batch)
        overlap = device_type(self.device) != "cpu"

        def submit(start: int) -> list[Future] | list[Prepared]:
            chunk = items[start:start + per_batch]
            if pool is None:
                return [self.prepare(it) for it in chunk]
            return [pool.submit(self.prepare, it) for it in chunk]

        def done(pending: list) -> list[Prepared]:
            return [p.result() if isinstance(p, Future) else p for p in pending]

        pending = submit(starts[0]) if starts else []
        for k in range(len(starts)):
            batch = done(pending)
            if overlap and k + 1 < len(starts):
                pending = submit(starts[k + 1])
            yield batch
            if not overlap and k + 1 < len(starts):
                pending = submit(starts[k + 1])

    def iter_scores(self, inputs: Iterable[ImageInput], *, progress: Any = None) -> Iterator[ScoreResult]:
        """One ScoreResult per input, in input order; unreadable inputs carry an error."""
        items = inputs if isinstance(inputs, Sequence) and not isinstance(inputs, (str, bytes)) else list(inputs)
        threads = min(self.num_workers, len(items))
        pool = ThreadPoolExecutor(threads, thread_name_prefix="iipa-decode") if threads > 1 else None
        try:
            done = 0
            for batch in self._batches(items, pool):
                good = [(i, views) for i, (views, _) in enumerate(batch, done) if views is not None]
                scores = dict(zip([i for i, _ in good], self.score_views([v for _, v in good]), strict=True)) if good else {}
                for i, (_, error) in enumerate(batch, done):
                    yield self._result(items[i], scores.get(i), error)
                done += len(batch)
                if progress is not None:
                    progress.update(len(batch))
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def _result(self, item: ImageInput, score: float | None, error: str | None) -> ScoreResult:
        if score is None:
            return ScoreResult(describe(item), None, error)
        meaning = levels.describe(score, self.record.reference)
        return ScoreResult(describe(item), score, scaled=meaning["scaled"], level=meaning["level"])

    def score(self, inputs: ImageInput | Iterable[ImageInput], *, on_error: str = "raise") -> list[float]:
        """Scores as floats. ``on_error="nan"`` gives NaN for unreadable inputs instead of raising."""
        if isinstance(inputs, (str, os.PathLike, bytes, bytearray, np.ndarray)) or not isinstance(inputs, Iterable):
            inputs = [inputs]
        out, failed = [], []
        for r in self.iter_scores(list(inputs)):
            out.append(r.score if r.ok else float("nan"))
            if not r.ok:
                failed.append(f"{r.source}: {r.error}")
        if failed and on_error == "raise":
            raise IIPAError(f"{len(failed)} of {len(out)} inputs could not be scored: " + "; ".join(failed[:10]))
        return out
