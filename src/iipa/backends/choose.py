"""The ``runtime`` rule of :mod:`iipa.scoring` (:func:`choose_runtime`), the same for the CLI's
``--runtime``, the service and the API: ``onnx`` and ``torch`` force a backend; ``auto`` takes the only one a
model has weights for, and when it has both (the default model ships an ONNX export beside
its ``.pt``), onnxruntime when scoring runs on the CPU in fp32 without ``optimize`` and
onnxruntime is installed (the same scores, |delta| <= 1e-4 tested, several times faster
than PyTorch's CPU depthwise convolutions), else PyTorch (GPUs, bf16/fp16, jit/compile).
"""

from __future__ import annotations

import importlib.util

from iipa.backends.device import runs_on_cpu
from iipa.constants import OPTIMIZE, RUNTIMES
from iipa.errors import IIPAError
from iipa.model.record import ModelRecord


def choose_runtime(record: ModelRecord, runtime: str = "auto", *, device: str | None = None,
                   precision: str = "auto", optimize: str = "none") -> str:
    """``onnx`` or ``torch``: the backend that scores ``record`` (the rule in the module docstring)."""
    if runtime not in RUNTIMES:
        raise IIPAError(f"unknown runtime {runtime!r}; use {', '.join(RUNTIMES)}")
    if optimize not in OPTIMIZE:
        raise IIPAError(f"unknown --optimize {optimize!r}; use {', '.join(OPTIMIZE)}")
    no_torch = record.torch_unavailable()
    if runtime == "onnx" or (runtime == "auto" and no_torch and record.onnx_file is not None):
        if record.onnx_file is None:
            raise IIPAError("--runtime onnx needs an .onnx file or named weights that ship an ONNX export "
                            f"(make one with `iipa export --model {record.name} --output model.onnx`)")
        return "onnx"
    if no_torch:
        raise IIPAError(f"--runtime torch: {no_torch}" if runtime == "torch" else no_torch)
    if runtime == "torch" or record.onnx_file is None or precision not in ("auto", "fp32") or optimize != "none":
        return "torch"
    # Decided without importing torch where no GPU can be present (see device.runs_on_cpu).
    if not runs_on_cpu(device) or importlib.util.find_spec("onnxruntime") is None:
        return "torch"
    return "onnx"
