"""The PyTorch backend of :mod:`iipa.scoring`: the one place scoring imports torch.

Views arrive as uint8 N x H x W x 3 numpy arrays and are viewed as NCHW without a copy, so
the batch is channels_last as it enters the model; the model runs at the precision
:mod:`iipa.backends.device` resolves (autocast), and the scores leave as float32 numpy.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import numpy as np
import torch

from iipa.backends.device import precision_name, resolve_device, resolve_scoring_precision
from iipa.errors import IIPAError
from iipa.model.record import ModelRecord


class TorchBackend:
    """A record's PyTorch model on ``device`` (default: a GPU when there is one).

    ``optimize``: ``jit`` traces and freezes the model (oneDNN fuses conv/bn/relu; ResNet-50
    bf16 on 2 cores: ~30 -> ~37 img/s, a few seconds to build); ``compile``: torch.compile
    (similar speed, ~50 s to build).
    """

    name = "torch"

    def __init__(self, record: ModelRecord, *, device: str | None = None, precision: str = "auto",
                 optimize: str = "none", channels_last: bool = True) -> None:
        self.torch_device = resolve_device(device)
        self.autocast_dtype = resolve_scoring_precision(precision, self.torch_device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = record.load_torch(self.torch_device).to(memory_format=self.memory_format)
        self.profile = record.profile
        self.forward = self._optimized(optimize)

    @property
    def device(self) -> str:
        return str(self.torch_device)

    @property
    def precision(self) -> str:
        return precision_name(self.autocast_dtype)

    def __call__(self, views: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(views).permute(0, 3, 1, 2)  # NHWC memory viewed as NCHW: no copy
            x = self.profile.normalize(x).to(self.torch_device, non_blocking=True)
            with self._autocast():
                out = self.forward(x.contiguous(memory_format=self.memory_format))
            return out.float().cpu().numpy().reshape(-1)

    def _autocast(self, **kwargs: Any) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.torch_device.type, dtype=self.autocast_dtype, **kwargs)

    def _optimized(self, how: str) -> Any:
        if how == "none":
            return self.model
        if how == "compile":
            return torch.compile(self.model)
        if how != "jit":
            raise IIPAError(f"unknown --optimize {how!r}; use none, jit or compile")
        size = self.profile.input_size
        example = torch.zeros(2, 3, size, size, device=self.torch_device).contiguous(memory_format=self.memory_format)
        with torch.inference_mode(), self._autocast(cache_enabled=False), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript deprecation notices
            return torch.jit.freeze(torch.jit.trace(self.model, example, check_trace=False))
