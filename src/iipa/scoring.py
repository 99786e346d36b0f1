"""The one inference path: batched, streaming scoring of files, lists or in-memory images.

Every input goes through its model's profile (:meth:`Profile.prepare_views`: decoding,
resizing, cropping, multi-crop views), decoded by a pool of threads (Pillow's decoders and
resizers release the GIL); the model runs in the calling thread, channels_last, at the
precision :mod:`iipa.runtime` resolves. On the CPU decoding and the model alternate, each
on every core; on a GPU the next batch decodes while the model runs. Results come out in
input order, one :class:`ScoreResult` per input, failures included; memory stays bounded
by two batches whatever the number of inputs.

This module does not import torch: :class:`Scorer` decides its route (:func:`onnx_route`)
first, and an :class:`~iipa.onnx_runtime.OnnxScorer` decodes into numpy arrays and scores
with onnxruntime, so ``iipa score`` with the default model on the CPU never loads torch
(seconds of a fresh process's start-up). The PyTorch methods import it when called.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from iipa import levels
from iipa.errors import IIPAError, ImageError
from iipa.images import DEFAULT_MAX_PIXELS, ImageInput, describe
from iipa.profiles import CROPS, Profile
from iipa.runtime import (
    decode_threads,
    device_type,
    precision_name,
    resolve_device,
    resolve_scoring_precision,
    runs_on_cpu,
)
from iipa.weights import load_model, onnx_companion

if TYPE_CHECKING:
    import torch

    from iipa.models import PopularityNet

# (uint8 V x 3 x S x S views, error): a torch tensor for PyTorch, a numpy array for onnxruntime.
Prepared = tuple[Any, str | None]
RUNTIMES = ("auto", "torch", "onnx")


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


def is_onnx_file(model: Any) -> bool:
    return isinstance(model, (str, os.PathLike)) and os.fspath(model).lower().endswith(".onnx")


def onnx_route(model: Any = None, *, runtime: str = "auto", device: str | None = None,
               precision: str = "auto", optimize: str = "none", **_: Any) -> str | os.PathLike | None:
    """The ONNX file that scores ``model``, or None for PyTorch.

    ``auto``: an ``.onnx`` file, or named weights with a shipped ONNX export (the default
    model has one) when scoring runs on the CPU in fp32 with onnxruntime installed: the
    export gives the same scores (|delta| <= 1e-4, tested) several times faster than
    PyTorch's CPU depthwise convolutions. ``torch`` and ``onnx`` force one runtime.
    """
    if runtime not in RUNTIMES:
        raise IIPAError(f"unknown runtime {runtime!r}; use {', '.join(RUNTIMES)}")
    if is_onnx_file(model):
        if runtime == "torch":
            raise IIPAError(f"{os.fspath(model)} is an ONNX file; score it with --runtime onnx or auto")
        return model
    if runtime == "torch":
        return None
    companion = onnx_companion(model)
    if runtime == "onnx":
        if companion is None:
            raise IIPAError("--runtime onnx needs an .onnx file or named weights that ship an ONNX export "
                            f"(make one with `iipa export --model {model or 'MODEL'} --output model.onnx`)")
        return companion
    if companion is None or precision not in ("auto", "fp32") or optimize != "none":
        return None
    # Decided without importing torch where no GPU can be present (see runtime.runs_on_cpu).
    if not runs_on_cpu(device) or importlib.util.find_spec("onnxruntime") is None:
        return None
    return companion


def prepare_item(profile: Profile, item: ImageInput, crops: int, max_pixels: int, *, array: bool = False) -> Prepared:
    """The profile's views of one input (:meth:`Profile.prepare_views`; with ``array``, the
    V x S x S x 3 numpy array of :meth:`Profile.view_array`), or the error that stops it
    (never raises)."""
    views = profile.view_array if array else profile.prepare_views
    try:
        return views(item, crops, max_pixels=max_pixels), None
    except ImageError as exc:
        return None, exc.reason + (f": {exc.detail}" if exc.detail else "")
    except Exception as exc:  # noqa: BLE001 - one odd file must not stop a batch
        return None, f"corrupt: {exc.__class__.__name__}: {exc}"


class Scorer:
    """Score images with a popularity model.

    >>> scorer = Scorer(load_model("run/best.pt"))          # doctest: +SKIP
    >>> scorer.score(["a.jpg", "b.jpg"])                    # doctest: +SKIP
    [3.12, 1.87]

    ``crops``: 1 (the profile's centre crop), 5 (four corners + centre) or 10 (the same
    and their mirror images); an image's score is the mean over its views.
    ``precision``: ``auto`` (= fp32, see :mod:`iipa.runtime`), ``fp32``, ``bf16`` or ``fp16``.
    ``num_workers``: decoding threads (default :func:`iipa.runtime.decode_threads`).
    An ``.onnx`` file (from ``iipa export``, fp32 or int8) gives an
    :class:`~iipa.onnx_runtime.OnnxScorer`: the same decoding, onnxruntime for the network;
    so do named weights with a shipped ONNX export on the CPU in fp32 (``runtime``: ``auto``,
    ``torch`` or ``onnx``, see :func:`onnx_route`).
    """

    runtime = "torch"

    def __new__(cls, model: Any = None, **kwargs: Any) -> Scorer:
        if cls is Scorer and onnx_route(model, **kwargs) is not None:
            from iipa.onnx_runtime import OnnxScorer

            return super().__new__(OnnxScorer)
        return super().__new__(cls)

    def __init__(
        self,
        model: PopularityNet | str | os.PathLike | None = None,
        *,
        device: str | None = None,
        precision: str = "auto",
        batch_size: int = 32,
        num_workers: int | None = None,
        crops: int = 1,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        channels_last: bool = True,
        optimize: str = "none",
        runtime: str = "auto",
    ) -> None:
        self.device = resolve_device(device)
        self.model = load_model(model).to(self.device).eval()
        self.profile = self.model.profile
        self.autocast_dtype = resolve_scoring_precision(precision, self.device)
        self._set_loading(batch_size, num_workers, crops, max_pixels)
        import torch

        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=self.memory_format)
        self.optimize = optimize
        self._forward = self._optimized_forward(optimize)

    def _set_loading(self, batch_size: int, num_workers: int | None, crops: int, max_pixels: int) -> None:
        if crops not in CROPS:
            raise IIPAError(f"crops must be one of {', '.join(map(str, CROPS))}, not {crops}")
        if batch_size < 1:
            raise IIPAError(f"batch size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.num_workers = decode_threads(self.device) if num_workers is None else max(0, num_workers)
        self.crops = crops
        self.max_pixels = max_pixels

    def _optimized_forward(self, how: str) -> Any:
        """``jit``: trace + freeze (oneDNN fuses conv/bn/relu; ResNet-50 bf16 on 2 cores: ~30 -> ~37
        img/s, a few seconds to build). ``compile``: torch.compile (similar speed, ~50 s to build)."""
        import torch

        if how == "none":
            return self.model
        if how == "compile":
            return torch.compile(self.model)
        if how != "jit":
            raise IIPAError(f"unknown --optimize {how!r}; use none, jit or compile")
        size = self.profile.input_size
        example = torch.zeros(2, 3, size, size, device=self.device).contiguous(memory_format=self.memory_format)
        with torch.inference_mode(), self._autocast(cache_enabled=False), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript deprecation notices
            return torch.jit.freeze(torch.jit.trace(self.model, example, check_trace=False))

    @property
    def precision(self) -> str:
        return precision_name(self.autocast_dtype)

    def _autocast(self, **kwargs: Any) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        import torch

        return torch.autocast(self.device.type, dtype=self.autocast_dtype, **kwargs)

    def score_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 N x 3 x H x W (already resized and cropped) -> N float scores on the CPU."""
        import torch

        with torch.inference_mode():
            x = self.profile.normalize(batch).to(self.device, non_blocking=True)
            x = x.contiguous(memory_format=self.memory_format)
            with self._autocast():
                out = self._forward(x)
            return out.float().cpu()

    def score_views(self, views: Sequence[torch.Tensor]) -> list[float]:
        """One score per image from its uint8 V x 3 x S x S views (mean over the views)."""
        counts = [len(v) for v in views]
        scores = self.score_batch(self._stack(views))
        if all(c == 1 for c in counts):  # one view each: no per-image tensor work
            return scores.tolist()
        return [float(s.mean()) for s in scores.split(counts)]

    def _stack(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """Concatenate in the views' own N x H x W x C layout (a plain copy), viewed as NCHW:
        the batch is channels_last with no transposing copy. numpy, not torch.cat: torch 2.x
        took ~1 s for 32 uint8 views, numpy a few ms."""
        import torch

        nhwc = np.concatenate([v.permute(0, 2, 3, 1).numpy() for v in views])
        return torch.from_numpy(nhwc).permute(0, 3, 1, 2)

    def prepare(self, item: ImageInput) -> Prepared:
        """One input -> (its views, None) or (None, error): what :meth:`iter_scores` decodes."""
        return prepare_item(self.profile, item, self.crops, self.max_pixels)

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
        meaning = levels.describe(score, self.model.reference)
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
