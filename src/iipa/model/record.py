"""What ``--model`` is: one resolver turns a name, a file or an in-memory model into a record.

:func:`resolve_model` accepts a registered weights name (default :data:`DEFAULT_MODEL`), an
iipa checkpoint (``.pt``), the authors' plain ResNet-50 state dict, an ``.onnx`` file from
``iipa export``, or a ``PopularityNet``, and returns one frozen :class:`ModelRecord`: what it
is, where its torch and ONNX weights are, its profile (preprocessing, decoding and default
view count ``crops``), reference distribution, calibration facts, card facts, and which
backends can run it. Every command, the service, the Python API and the model card read
the record; nothing else decides what a model spec means.

Reading the record of an ONNX file, or of named weights that ship an ONNX export (the
default model), reads the export's metadata only and imports no torch; a ``.pt`` file's
record is read with ``torch.load(weights_only=True)``. :meth:`ModelRecord.load_torch` builds
the PyTorch model (training, Grad-CAM, the torch backend).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iipa.errors import IIPAError, WeightsError
from iipa.extras import pip_line
from iipa.model.onnx_format import read_onnx_metadata
from iipa.model.weights import (
    DEFAULT_MODEL,
    PLAIN_STATE_DICT_WEIGHTS,
    NamedWeights,
    get_weights,
    is_registered,
    list_weights,
    package_root,
    resolve_weights,
    weights_path,
)
from iipa.profiles import Profile, get_profile

if TYPE_CHECKING:  # torch is imported by load_torch only
    from iipa.backbones.popularity_net import PopularityNet

# What a record can be: registered weights, our checkpoint file, a plain state dict file
# (the authors' release format), an exported ONNX file, or a model already in memory.
KINDS = ("named", "checkpoint", "state_dict", "onnx", "memory")
TORCH_EXTRA = pip_line("torch")  # the one spelling of the pip line (iipa.extras)
MODEL_SUFFIXES = (".pt", ".pth", ".onnx", ".ckpt")
# File headers of the weights files torch.load reads: torch.save's zip, a legacy pickle.
_ZIP_MAGIC, _PICKLE_PROTOCOL = b"PK\x03\x04", 0x80


@dataclass(frozen=True)
class ModelRecord:
    """Everything known about a model without running it.

    ``torch_file``: the PyTorch weights (for downloadable named weights, where they will be
    cached); ``onnx_file``: an ONNX export (the file itself, or named weights' companion).
    ``info``: what the weights carry besides tensors (training config, metrics, domain,
    card facts); ``calibration``: ``{"T", "fitted_on", "n"}`` when the weights record one.
    """

    kind: str
    name: str
    arch: str | None
    profile: Profile
    reference: Mapping[str, Any] | None = None
    calibration: Mapping[str, Any] | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    torch_file: Path | None = None
    onnx_file: Path | None = None
    weights_format: str = "iipa"
    entry: NamedWeights | None = None
    offline: bool = False
    parameters: int | None = None  # learned weights, when the file says (not BatchNorm statistics)
    model: Any = field(default=None, compare=False, repr=False)  # the PopularityNet of kind "memory"

    @property
    def crops(self) -> int:
        """The default number of test-time views (the profile's)."""
        return self.profile.crops

    @property
    def domain(self) -> str:
        """``real`` (photos), ``simulated`` (the demo's renders) or ``unknown``."""
        info = self.info
        return str(info.get("domain") or (info.get("config") or {}).get("domain") or "unknown")

    @property
    def has_torch_weights(self) -> bool:
        if self.model is not None:
            return True
        if self.torch_file is None:
            return False
        return self.torch_file.is_file() or (self.entry is not None and not self.entry.packaged)

    @property
    def backends(self) -> tuple[str, ...]:
        """The backends whose weights this model has: ``onnx`` (onnxruntime) and/or ``torch``."""
        return (("onnx",) if self.onnx_file is not None else ()) + (("torch",) if self.has_torch_weights else ())

    @property
    def onnx_precision(self) -> str:
        """The precision an ONNX export was written in: fp32, or int8 (``iipa export --quantize``)."""
        return str((self.info.get("quantization") or {}).get("precision", "fp32"))

    def torch_unavailable(self) -> str | None:
        """Why the PyTorch model cannot be had here (None when it can): what heatmaps and
        ``--runtime torch`` need."""
        if not self.has_torch_weights:
            return f"{self.name} has no PyTorch weights (an ONNX export); give the checkpoint it was exported from"
        if importlib.util.find_spec("torch") is None:
            return f"PyTorch is not installed; this needs the torch extra: {TORCH_EXTRA}"
        return None

    def heatmaps_unavailable(self) -> str | None:
        """Why Grad-CAM heatmaps cannot be had (None when they can): they need the torch weights."""
        reason = self.torch_unavailable()
        if reason is None and importlib.util.find_spec("pytorch_grad_cam") is None:
            reason = f"the grad-cam package is not installed; this needs the torch extra: {TORCH_EXTRA}"
        return None if reason is None else f"heatmaps need the model's PyTorch weights (Grad-CAM): {reason}"

    def load_torch(self, device: str | None = None) -> PopularityNet:
        """The PopularityNet in eval mode (named weights are downloaded unless offline)."""
        reason = self.torch_unavailable()
        if reason:
            raise IIPAError(reason)
        if self.model is not None:
            model = self.model
        else:
            model = _build(self)
        model.eval()
        return model.to(device) if device else model


def resolve_model(spec: Any = None, *, offline: bool = False) -> ModelRecord:
    """The record of ``spec``: a record (returned as is), None (the default model), a weights
    name, a model file (``.pt``/``.pth``/``.onnx``) or a PopularityNet. ``offline``: the record
    never downloads (also ``IIPA_OFFLINE=1``)."""
    if isinstance(spec, ModelRecord):
        return spec
    spec = DEFAULT_MODEL if spec is None else spec
    if not isinstance(spec, (str, os.PathLike)):
        return _from_memory(spec)
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.is_dir():
        raise IIPAError(f"--model {text}: is a folder; give a checkpoint file (e.g. {path / 'best.pt'})")
    if path.is_file():
        return _from_onnx(path) if path.suffix.lower() == ".onnx" else _from_file(path)
    if is_registered(text):
        return _from_entry(get_weights(text), offline=offline)
    if os.sep in text or "/" in text or path.suffix.lower() in MODEL_SUFFIXES:
        raise IIPAError(f"--model {text}: no such file")
    raise IIPAError(f"--model {text}: neither a file nor named weights (known: {', '.join(list_weights())})")


def load_model(spec: Any = None, *, device: str | None = None, download: bool = True) -> PopularityNet:
    """The PyTorch model of ``spec`` (see :func:`resolve_model`), in eval mode."""
    return resolve_model(spec, offline=not download).load_torch(device)


# --- one reader per kind -----------------------------------------------------------------

def _info(info: Mapping[str, Any] | None, **defaults: Any) -> dict[str, Any]:
    out = dict(info or {})
    for key, value in defaults.items():
        if value:
            out.setdefault(key, value)
    return out


def _from_memory(model: Any) -> ModelRecord:
    from iipa.backbones.popularity_net import PopularityNet

    if not isinstance(model, PopularityNet):
        raise IIPAError(f"--model: expected a weights name, a model file or a PopularityNet, not {type(model).__name__}")
    info = dict(model.info)
    name = str(info.get("weights") or info.get("source") or model.arch)
    return ModelRecord("memory", name, model.arch, model.profile, model.reference, info.get("calibration"),
                       info, parameters=sum(p.numel() for p in model.parameters()), model=model)


def _from_onnx(path: Path) -> ModelRecord:
    meta = read_onnx_metadata(path)
    info = _info(meta["info"], source=str(path))
    return ModelRecord("onnx", str(path), meta["arch"], meta["profile"], meta["reference"],
                       info.get("calibration"), info, onnx_file=path, parameters=meta["parameters"])


def _read_torch_file(path: Path) -> Any:
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head.startswith(_ZIP_MAGIC) and not (head and head[0] == _PICKLE_PROTOCOL):
        raise WeightsError(f"--model {path}: not a model file (expected a PyTorch checkpoint .pt/.pth "
                        "or an exported .onnx file)")
    if importlib.util.find_spec("torch") is None:
        onnx = path.with_suffix(".onnx")
        other = (f"or score the ONNX export beside it, which needs no torch: --model {onnx}" if onnx.is_file()
                 else "or score its ONNX export, made by `iipa export` where torch is installed")
        raise IIPAError(f"--model {path}: reading a PyTorch checkpoint needs the torch extra: {TORCH_EXTRA} "
                        f"({other})")
    from iipa.model.checkpoint import read_checkpoint

    return read_checkpoint(path)


def _from_file(path: Path) -> ModelRecord:
    obj = _read_torch_file(path)  # first: "not a model file" needs no torch to say
    from iipa.model.checkpoint import check_version, is_iipa, looks_like_authors

    source = str(path)
    if is_iipa(obj):
        check_version(obj, source)
        info = _info(obj.get("info"), source=source)
        return ModelRecord("checkpoint", source, obj["arch"], get_profile(obj["profile"]), obj.get("reference"),
                           info.get("calibration"), info, torch_file=path, parameters=_count(obj["state_dict"]))
    if looks_like_authors(obj):
        # Read as the registered authors' release says; it is a file, not those named weights.
        entry = get_weights(PLAIN_STATE_DICT_WEIGHTS)
        info = _info({}, source=source, domain=entry.domain, format=f"plain torchvision {entry.arch} state dict")
        return ModelRecord("state_dict", source, entry.arch, get_profile(entry.profile), entry.reference or None,
                           None, info, torch_file=path, weights_format="state_dict", parameters=_count(obj))
    keys = list(obj)[:6] if isinstance(obj, Mapping) else type(obj).__name__
    raise WeightsError(f"{source}: unrecognised checkpoint; expected an iipa checkpoint or a torchvision "
                       f"ResNet-50 state dict with fc = Linear(2048, 1) (found {keys})")


def _from_entry(entry: NamedWeights, *, offline: bool) -> ModelRecord:
    """Named weights: the entry decides arch and format; the weights' own copy of the profile
    (decode mode and views included) wins over the registered profile name, so a file scores
    the same by name and by path. Read from the ONNX companion when one ships (no torch)."""
    torch_file = weights_path(entry)
    onnx_file = package_root() / entry.onnx_file if entry.onnx_file else None
    onnx_file = onnx_file if onnx_file is not None and onnx_file.is_file() else None
    profile: Profile = get_profile(entry.profile)
    carried: Mapping[str, Any] = {}
    if onnx_file is not None:
        carried = read_onnx_metadata(onnx_file)
        _check_agrees(entry, carried["arch"], carried["profile"].name, str(onnx_file))
    elif torch_file.is_file():
        from iipa.model.checkpoint import check_version, is_iipa

        obj = _read_torch_file(torch_file)
        if is_iipa(obj):
            check_version(obj, str(torch_file))
            _check_agrees(entry, obj["arch"], dict(obj["profile"]).get("name"), str(torch_file))
            carried = {"profile": get_profile(obj["profile"]), "parameters": _count(obj["state_dict"]),
                       **{k: obj.get(k) for k in ("reference", "info")}}
    if carried:
        profile = carried["profile"]
    fmt = f"plain torchvision {entry.arch} state dict" if entry.format == "state_dict" else None
    info = _info(carried.get("info"), domain=entry.domain, format=fmt)
    info.update(source=str(torch_file), weights=entry.name)
    reference = entry.reference or carried.get("reference") or None
    return ModelRecord("named", entry.name, entry.arch, profile, reference, info.get("calibration"), info,
                       torch_file=torch_file, onnx_file=onnx_file, weights_format=entry.format, entry=entry,
                       offline=offline, parameters=carried.get("parameters"))


_BN_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


def _count(state: Mapping[str, Any]) -> int:
    """Learned weights in a state dict: every tensor but BatchNorm's running statistics."""
    return sum(int(v.numel()) for k, v in state.items()
               if hasattr(v, "numel") and not k.endswith(_BN_STATISTICS))


def _check_agrees(entry: NamedWeights, arch: str | None, profile: str | None, source: str) -> None:
    if (arch, profile) != (entry.arch, entry.profile):
        raise WeightsError(f"{source}: holds a {arch} model with profile {profile} but weights "
                           f"{entry.name!r} are registered as {entry.arch} with profile {entry.profile}")


def _build(record: ModelRecord) -> PopularityNet:
    from iipa.model.checkpoint import build_model, check_version, is_iipa, plain_state, read_checkpoint

    path = record.torch_file
    if record.entry is not None:
        path = resolve_weights(record.entry.name, download=not record.offline)
    assert path is not None  # torch_unavailable() said so
    source = str(path)
    obj = read_checkpoint(path)
    if record.weights_format == "state_dict":
        state = plain_state(obj, source)
    elif is_iipa(obj):
        check_version(obj, source)
        state = obj["state_dict"]
        if record.entry is not None:
            _check_agrees(record.entry, obj["arch"], dict(obj["profile"]).get("name"), source)
            # the weights file's own facts: the record may have read them from an ONNX companion
            # that lags behind a re-shipped .pt (and `iipa export` would copy the stale ones)
            info = {**dict(obj.get("info") or {}), "source": source, "weights": record.name}
            return build_model(record.arch or "", get_profile(obj["profile"]),
                               record.entry.reference or obj.get("reference"), info, state, source)
    else:
        raise WeightsError(f"{source}: expected an iipa checkpoint (a dict with 'iipa_checkpoint')")
    return build_model(record.arch or "", record.profile, record.reference, record.info, state, source)
