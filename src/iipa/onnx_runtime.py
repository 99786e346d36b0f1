"""Score through onnxruntime: :class:`OnnxScorer` has the :class:`~iipa.scoring.Scorer`
interface (``score``, ``iter_scores``, ``score_batch``) for files written by :mod:`iipa.export`.

Decoding, resizing and error rows are the Scorer's own (same DataLoader, same profile); only
the network call differs. Useful where PyTorch is heavy to deploy or where onnxruntime is
faster on the CPU at hand.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from iipa.errors import IIPAError
from iipa.export import INPUT_NAME, read_onnx_metadata
from iipa.images import DEFAULT_MAX_PIXELS
from iipa.profiles import Profile
from iipa.scoring import Scorer, default_workers


@dataclass
class OnnxModel:
    """An exported model: an onnxruntime session plus the metadata a PopularityNet carries."""

    session: Any
    arch: str | None
    profile: Profile
    reference: dict[str, Any] | None
    info: dict[str, Any] = field(default_factory=dict)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """uint8 N x 3 x S x S -> float32 N scores."""
        return self.session.run(None, {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.uint8)})[0]


def load_onnx_model(path: str | os.PathLike, *, device: str | None = "cpu", threads: int | None = None) -> OnnxModel:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise IIPAError(f"--runtime onnx needs onnxruntime: pip install 'iipa[onnx]' ({exc})") from None

    meta = read_onnx_metadata(path)
    providers = ["CPUExecutionProvider"]
    if device and device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise IIPAError("--device cuda with --runtime onnx needs onnxruntime-gpu (CUDAExecutionProvider)")
        providers.insert(0, "CUDAExecutionProvider")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(os.fspath(path), sess_options=options, providers=providers)
    info = dict(meta["info"] or {})
    info.setdefault("source", os.fspath(path))
    return OnnxModel(session, meta["arch"], meta["profile"], meta["reference"], info)


class OnnxScorer(Scorer):
    """Like :class:`Scorer`, with an ONNX file instead of a PyTorch model (fp32 only)."""

    def __init__(
        self,
        model: str | os.PathLike | OnnxModel,
        *,
        device: str | None = "cpu",
        batch_size: int = 32,
        num_workers: int | None = None,
        fast_decode: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        threads: int | None = None,
    ) -> None:
        # Deliberately not Scorer.__init__: that loads a PyTorch model. iter_scores and score
        # only need the attributes set here.
        self.model = model if isinstance(model, OnnxModel) else load_onnx_model(model, device=device, threads=threads)
        self.profile = self.model.profile
        self.device = torch.device("cpu")  # batches stay on the host; onnxruntime moves them
        self.autocast_dtype = None
        self.batch_size = batch_size
        self.num_workers = default_workers() if num_workers is None else num_workers
        self.fast_decode = fast_decode
        self.max_pixels = max_pixels

    def score_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 N x 3 x H x W (already resized and cropped) -> N float scores."""
        return torch.from_numpy(np.asarray(self.model(batch.numpy()), dtype=np.float32).reshape(-1))
