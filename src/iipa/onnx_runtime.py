"""Score through onnxruntime: :class:`OnnxScorer` is a :class:`~iipa.scoring.Scorer` for
files written by :mod:`iipa.export` (fp32, or int8 from ``--quantize int8``).

Decoding, resizing, multi-crop and error rows are the Scorer's own (the profile stored in
the file); only the network call differs. ``Scorer("model.onnx")`` returns one.

Nothing here imports torch: views are decoded into numpy arrays (:meth:`Profile.view_array`)
and scored as numpy, so a process that only scores through onnxruntime (``iipa score`` with
the default model on the CPU) starts in a fraction of a second instead of ~3 s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from iipa.errors import IIPAError
from iipa.images import DEFAULT_MAX_PIXELS, ImageInput
from iipa.onnx_format import INPUT_NAME, parse_onnx_metadata
from iipa.profiles import Profile
from iipa.runtime import cpu_count
from iipa.scoring import Prepared, Scorer, onnx_route, prepare_item


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

    @property
    def precision(self) -> str:
        return str(self.info.get("quantization", {}).get("precision", "fp32"))


def load_onnx_model(path: str | os.PathLike, *, device: str | None = "cpu", threads: int | None = None) -> OnnxModel:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise IIPAError(f"--runtime onnx needs onnxruntime: pip install onnxruntime ({exc})") from None

    if not os.path.isfile(path):
        raise IIPAError(f"{path}: no such ONNX file")
    providers = ["CPUExecutionProvider"]
    if device and device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise IIPAError("--device cuda with --runtime onnx needs onnxruntime-gpu (CUDAExecutionProvider)")
        providers.insert(0, "CUDAExecutionProvider")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or cpu_count()
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # The scorer decodes on every core between model calls: threads spinning after a call
    # would take those cores from the decoders.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(os.fspath(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime's InvalidProtobuf / Fail
        raise IIPAError(f"{path}: not a readable ONNX file ({exc.__class__.__name__}: {exc})") from None
    # Metadata from onnxruntime itself: scoring needs no `onnx` package (export does).
    meta = parse_onnx_metadata(session.get_modelmeta().custom_metadata_map, path)
    info = dict(meta["info"] or {})
    info.setdefault("source", os.fspath(path))
    return OnnxModel(session, meta["arch"], meta["profile"], meta["reference"], info)


class OnnxScorer(Scorer):
    """Like :class:`Scorer`, with an ONNX file instead of a PyTorch model. The file fixes
    the precision (fp32 or int8): ``precision`` may only be ``auto`` or ``fp32``."""

    runtime = "onnx"

    def __init__(
        self,
        model: str | os.PathLike | OnnxModel | None = None,
        *,
        device: str | None = "cpu",
        precision: str = "auto",
        batch_size: int = 32,
        num_workers: int | None = None,
        crops: int = 1,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        threads: int | None = None,
        **_ignored: Any,  # channels_last / optimize / runtime: PyTorch-only knobs or already resolved
    ) -> None:
        # Deliberately not Scorer.__init__: that loads a PyTorch model.
        if precision not in ("auto", "fp32"):
            raise IIPAError(f"--precision {precision} does not apply to an ONNX file (its precision is fixed "
                            "at export: fp32, or int8 with `iipa export --quantize int8`)")
        if device not in (None, "auto", "cpu") and not str(device).startswith("cuda"):
            raise IIPAError(f"unknown device {device!r} for onnxruntime; use cpu or cuda")
        device = None if device == "auto" else device
        if not isinstance(model, OnnxModel):  # an .onnx file, or named weights' shipped export
            model = load_onnx_model(onnx_route(model, runtime="onnx"), device=device, threads=threads)
        self.model = model
        self.profile = self.model.profile
        self.device = "cpu"  # batches stay on the host (numpy); onnxruntime moves them
        self.autocast_dtype = None
        self._set_loading(batch_size, num_workers, crops, max_pixels)

    @property
    def precision(self) -> str:
        return self.model.precision

    def prepare(self, item: ImageInput) -> Prepared:
        """The profile's views as a numpy array, made NCHW-contiguous here, in the decoding
        threads: the graph takes NCHW, and transposing the whole batch would happen in the
        model's thread."""
        views, error = prepare_item(self.profile, item, self.crops, self.max_pixels, array=True)
        return (None if views is None else np.ascontiguousarray(views.transpose(0, 3, 1, 2))), error

    def _stack(self, views: Any) -> np.ndarray:
        return np.concatenate([np.asarray(v) for v in views])

    def score_views(self, views: Any) -> list[float]:
        """One score per image from its uint8 V x 3 x S x S views (mean over the views, in float64)."""
        counts = [len(v) for v in views]
        scores = self._scores(self._stack(views))
        if all(c == 1 for c in counts):
            return scores.tolist()
        return [float(s.mean(dtype=np.float64)) for s in np.split(scores, np.cumsum(counts)[:-1])]

    def score_batch(self, batch: Any) -> Any:
        """uint8 N x 3 x H x W (already resized and cropped) -> N float32 scores: a numpy array
        for a numpy batch; for a torch tensor (the PyTorch Scorer's interface) a tensor."""
        scores = self._scores(np.asarray(batch))
        if isinstance(batch, np.ndarray):
            return scores
        import torch  # the caller passed a tensor, so torch is loaded already

        return torch.from_numpy(scores)

    def _scores(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.model(batch), dtype=np.float32).reshape(-1)
