"""The onnxruntime backend of :mod:`iipa.scoring`, for files written by :mod:`iipa.model.export`
(fp32, or int8 from ``--quantize int8``) and named weights that ship such an export.

Nothing here imports torch: the views arrive as uint8 N x H x W x 3 numpy arrays, are made
NCHW (what the graph takes; normalisation is inside it) and leave as float32 numpy, so a
process that scores through onnxruntime (``iipa score`` with the default model on the CPU)
starts in a fraction of a second instead of ~3 s.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from iipa.backends.device import cpu_count
from iipa.errors import IIPAError
from iipa.model.onnx_format import INPUT_NAME
from iipa.model.record import ModelRecord


def open_session(path: str | os.PathLike, *, device: str | None = "cpu", threads: int | None = None) -> Any:
    """An onnxruntime session for ``path`` on the CPU (or CUDA with onnxruntime-gpu)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise IIPAError(f"scoring an ONNX model needs onnxruntime: pip install onnxruntime ({exc})") from None

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
        return ort.InferenceSession(os.fspath(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime's InvalidProtobuf / Fail
        raise IIPAError(f"{path}: not a readable ONNX file ({exc.__class__.__name__}: {exc})") from None


class OnnxBackend:
    """A record's ONNX export in an onnxruntime session. The file fixes the precision (fp32
    or int8): ``precision`` may only be ``auto`` or ``fp32``."""

    name = "onnx"

    def __init__(self, record: ModelRecord, *, device: str | None = None, precision: str = "auto",
                 threads: int | None = None) -> None:
        if precision not in ("auto", "fp32"):
            raise IIPAError(f"--precision {precision} does not apply to an ONNX model (its precision is fixed "
                            "at export: fp32, or int8 with `iipa export --quantize int8`)")
        if device not in (None, "auto", "cpu") and not str(device).startswith("cuda"):
            raise IIPAError(f"unknown device {device!r} for onnxruntime; use cpu or cuda")
        if record.onnx_file is None:
            raise IIPAError(f"{record.name} has no ONNX export (make one with `iipa export`)")
        device = None if device == "auto" else device
        self.session = open_session(record.onnx_file, device=device, threads=threads)
        self.device = "cuda" if "CUDAExecutionProvider" in self.session.get_providers() else "cpu"
        self.precision = record.onnx_precision

    def __call__(self, views: np.ndarray) -> np.ndarray:
        nchw = np.ascontiguousarray(views.transpose(0, 3, 1, 2))
        return np.asarray(self.session.run(None, {INPUT_NAME: nchw})[0], dtype=np.float32).reshape(-1)
