"""Checkpoints: weights + architecture + preprocessing + reference scores + how they were made.

Our format is a plain dict (loads with ``torch.load(weights_only=True)``)::

    {"iipa_checkpoint": 1, "arch": str, "profile": {...}, "reference": {...} | None,
     "info": {"config": {...}, "metrics": {...}, ...}, "state_dict": {...}}

``state_dict`` holds the backbone's own keys (``PopularityNet.net``), so a ResNet-50
checkpoint has the same tensors, under the same names, as the authors' release. The
authors' plain state dict (torchvision ResNet-50, fc = Linear(2048, 1)) loads too, as the
registered ``authors-resnet50`` weights say: the ``authors`` profile and the paper's
reference distribution (Fig. 5). Registered weights are built from their entry
(:func:`model_from_entry`); a format adapter (:data:`FORMATS`) only finds and renames keys.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from iipa import __version__
from iipa.errors import WeightsError
from iipa.fileio import atomic_open, plain
from iipa.levels import AUTHORS_REFERENCE  # noqa: F401 - re-exported: the authors' reference
from iipa.models import PopularityNet

FORMAT_VERSION = 1


def checkpoint_dict(model: PopularityNet) -> dict[str, Any]:
    return {
        "iipa_checkpoint": FORMAT_VERSION,
        "iipa_version": __version__,
        "arch": model.arch,
        "profile": model.profile.to_dict(),
        "reference": dict(model.reference) if model.reference else None,
        "info": plain(model.info),
        "state_dict": {k: v.detach().cpu() for k, v in model.net.state_dict().items()},
    }


def save_checkpoint(model: PopularityNet, path: str | os.PathLike, **extra: Any) -> Path:
    """Write ``model`` atomically (temp file + rename). ``extra`` goes into the dict too."""
    payload = checkpoint_dict(model)
    payload.update(plain(extra))
    return atomic_torch_save(payload, path)


def atomic_torch_save(payload: Any, path: str | os.PathLike) -> Path:
    with atomic_open(path, "wb", fsync=True) as fh:
        torch.save(payload, fh)
    return Path(path)


def read_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> Any:
    """The object stored in a weights file, loaded with ``weights_only=True``."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such checkpoint file") from None
    except Exception as exc:  # pickle errors, truncated zip, unsafe globals
        raise WeightsError(f"{path}: not a loadable checkpoint ({exc.__class__.__name__}: {exc})") from None


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> PopularityNet:
    """Load a weights file that is not registered by name: our checkpoint (which says its
    arch, profile and reference), or a plain state dict, read as the authors' release."""
    return model_from_object(read_checkpoint(path, map_location=map_location), source=str(path))


def model_from_object(obj: Any, *, source: str = "<memory>") -> PopularityNet:
    if _is_iipa(obj):
        return _from_iipa(obj, source)
    if isinstance(obj, Mapping) and _looks_like_authors(obj):
        from iipa.weights import PLAIN_STATE_DICT_WEIGHTS, get_weights

        # Read as the registered authors' release says, but it is a file, not those weights.
        return model_from_entry(get_weights(PLAIN_STATE_DICT_WEIGHTS), obj, source=source, named=False)
    keys = list(obj)[:6] if isinstance(obj, Mapping) else type(obj).__name__
    raise WeightsError(
        f"{source}: unrecognised checkpoint; expected an iipa checkpoint or a torchvision "
        f"ResNet-50 state dict with fc = Linear(2048, 1) (found {keys})"
    )


def model_from_entry(entry: Any, obj: Any, *, source: str, named: bool = True) -> PopularityNet:
    """Build the model a registered weights entry describes (arch, profile, reference) and
    fill it with the tensors of ``obj``; the entry's ``format`` names the adapter.

    An iipa checkpoint must agree with its entry on the arch and the profile name; its own
    copy of the profile is used (it records exactly how the weights were trained, decode mode
    included), so a file scores the same by name and by path. ``named``: record the entry's
    name as the model's weights (False for a file read as if it were those weights).
    """
    state = FORMATS[entry.format](obj, source)
    info: dict[str, Any] = {}
    profile: Any = entry.profile
    reference = entry.reference or None
    if _is_iipa(obj):
        _check_version(obj, source)
        _check_agrees(entry, obj, source)
        info, profile = dict(obj.get("info") or {}), obj["profile"]
        reference = reference or obj.get("reference")
    info["source"] = source
    if entry.domain:
        info.setdefault("domain", entry.domain)
    if named:
        info["weights"] = entry.name
    if entry.format == "state_dict":
        info.setdefault("format", f"plain torchvision {entry.arch} state dict")
    model = PopularityNet(entry.arch, profile=profile, reference=dict(reference) if reference else None, info=info)
    _load_state(model, state, source)
    return model


def _check_agrees(entry: Any, obj: Mapping[str, Any], source: str) -> None:
    trained = (obj["arch"], dict(obj["profile"]).get("name"))
    if trained != (entry.arch, entry.profile):
        raise WeightsError(f"{source}: holds a {trained[0]} model with profile {trained[1]} but weights "
                           f"{entry.name!r} are registered as {entry.arch} with profile {entry.profile}")


def _is_iipa(obj: Any) -> bool:
    return isinstance(obj, Mapping) and "iipa_checkpoint" in obj


def _check_version(obj: Mapping[str, Any], source: str) -> None:
    version = obj["iipa_checkpoint"]
    if version > FORMAT_VERSION:
        raise WeightsError(f"{source}: checkpoint format {version} is newer than this iipa ({FORMAT_VERSION}); upgrade iipa")


def _from_iipa(obj: Mapping[str, Any], source: str) -> PopularityNet:
    _check_version(obj, source)
    info = dict(obj.get("info") or {})
    info.setdefault("source", source)
    model = PopularityNet(obj["arch"], profile=obj["profile"], reference=obj.get("reference"), info=info)
    _load_state(model, _iipa_state(obj, source), source)
    return model


# Format adapters: they only find the tensors and rename keys; the entry or our
# checkpoint's own fields decide the architecture and the preprocessing.
def _iipa_state(obj: Any, source: str) -> Mapping[str, Any]:
    if not _is_iipa(obj):
        raise WeightsError(f"{source}: expected an iipa checkpoint (a dict with 'iipa_checkpoint')")
    return obj["state_dict"]


def _plain_state(obj: Any, source: str) -> dict[str, Any]:
    if _is_iipa(obj):
        return dict(obj["state_dict"])
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{source}: expected a state dict, found {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items()}  # saved from DataParallel


FORMATS = {"iipa": _iipa_state, "state_dict": _plain_state}


def _looks_like_authors(obj: Mapping[str, Any]) -> bool:
    state = _plain_state(obj, "")
    fc = state.get("fc.weight")
    return "conv1.weight" in state and isinstance(fc, torch.Tensor) and tuple(fc.shape) == (1, 2048)


def _load_state(model: PopularityNet, state: Mapping[str, Any], source: str) -> None:
    try:
        model.net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise WeightsError(f"{source}: weights do not fit architecture {model.arch}: {' '.join(first)}") from None
    model.eval()
