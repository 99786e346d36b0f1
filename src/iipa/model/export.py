"""Export a popularity model to ONNX, with its preprocessing and reference inside the file.

The exported graph takes what :meth:`Profile.to_uint8` produces, a **uint8** batch
N x 3 x S x S (RGB, already resized and cropped by the profile), and does the
normalisation itself, so a consumer only has to resize and crop; it outputs ``score``
(float32, N). The batch axis is dynamic. The file's metadata (``metadata_props``) holds,
under the keys of :mod:`iipa.model.onnx_format`'s table:

* ``iipa.arch``, ``iipa.version``, ``iipa.input`` (a sentence saying the above);
* ``iipa.profile``: the profile as JSON (:meth:`Profile.to_dict`);
* ``iipa.reference``: ``{"mean", "std", "source"}`` JSON or ``null`` (levels, 0-100 scale);
* ``iipa.info``: training config / metrics / source JSON (temperature calibration facts, when
  any, inside; an int8 file adds ``quantization``: settings, calibration photos, agreement);
* ``iipa.parameters``: the number of learned weights (for the model card).

We use PyTorch's TorchScript-based exporter (``dynamo=False``): the torch.export one needs
``onnxscript``, which iipa does not depend on, and gives the same graph for these CNNs.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from iipa import __version__
from iipa.backbones.popularity_net import PopularityNet
from iipa.errors import IIPAError
from iipa.fileio import atomic_path, plain
from iipa.model.onnx_format import INPUT_DOC, INPUT_NAME, OUTPUT_NAME, metadata_props


class _FromUint8(nn.Module):
    """uint8 batch -> the profile's normalisation -> model, as one traceable module."""

    def __init__(self, model: PopularityNet) -> None:
        super().__init__()
        self.model = model
        profile = model.profile
        mean = torch.tensor(profile.mean or (0.0, 0.0, 0.0)).view(1, 3, 1, 1)
        std = torch.tensor(profile.std or (1.0, 1.0, 1.0)).view(1, 3, 1, 1)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x.float() / 255.0 - self.mean) / self.std)


def onnx_metadata(model: PopularityNet) -> dict[str, str]:
    """The file's ``metadata_props`` (keys from :mod:`iipa.model.onnx_format`'s table)."""
    return metadata_props({
        "arch": model.arch, "version": __version__, "input": INPUT_DOC,
        "profile": model.profile.to_dict(), "reference": dict(model.reference) if model.reference else None,
        "info": plain(model.info), "parameters": sum(p.numel() for p in model.parameters()),
    })


def _import_onnx():
    try:
        import onnx
    except ImportError as exc:
        raise IIPAError(f"ONNX export needs the onnx package: pip install 'iipa[onnx]' ({exc})") from None
    return onnx


def export_onnx(model: PopularityNet, path: str | os.PathLike, *, opset: int = 17) -> Path:
    """Write ``model`` as ONNX to ``path`` (atomically) with a dynamic batch axis and metadata."""
    onnx = _import_onnx()

    path = Path(path)
    model = model.float().cpu().eval()
    size = model.profile.input_size
    example = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".onnx-export-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer chatter
            torch.onnx.export(
                _FromUint8(model), (example,), str(raw), dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
        proto = onnx.load(str(raw))
        onnx.checker.check_model(proto)
        for key, value in onnx_metadata(model).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto.doc_string = f"iipa {model.arch} popularity model: {INPUT_DOC}"
        with atomic_path(path) as final:
            onnx.save(proto, str(final))
    return path


def onnx_parity(model: PopularityNet, path: str | os.PathLike, *, batch: int = 3, seed: int = 0) -> float:
    """Max |score difference| between onnxruntime on ``path`` and ``model`` in fp32 on random
    uint8 inputs (batch size ``batch``, so the dynamic axis is exercised too)."""
    import onnxruntime as ort

    size = model.profile.input_size
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=gen)
    model = model.float().cpu().eval()
    with torch.no_grad():
        expected = model(model.profile.normalize(x)).reshape(-1).numpy()
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {INPUT_NAME: x.numpy()})[0].reshape(-1)
    return float(abs(got - expected).max())
