"""Checkpoints: weights + architecture + preprocessing + reference scores + how they were made.

Our format is a plain dict (loads with ``torch.load(weights_only=True)``)::

    {"iipa_checkpoint": 1, "arch": str, "profile": {...}, "reference": {...} | None,
     "info": {"config": {...}, "metrics": {...}, ...}, "state_dict": {...}}

``state_dict`` holds the backbone's own keys (``PopularityNet.net``), so a ResNet-50
checkpoint has the same tensors, under the same names, as the authors' release. The
authors' plain state dict (torchvision ResNet-50, fc = Linear(2048, 1)) loads too and
gets the ``authors`` profile and the paper's reference distribution (Fig. 5).
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
from iipa.levels import AUTHORS_REFERENCE  # noqa: F401 - re-exported
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


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> PopularityNet:
    """Load our checkpoint or the authors' plain ResNet-50 state dict (``weights_only=True``)."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such checkpoint file") from None
    except Exception as exc:  # pickle errors, truncated zip, unsafe globals
        raise WeightsError(f"{path}: not a loadable checkpoint ({exc.__class__.__name__}: {exc})") from None
    return model_from_object(obj, source=str(path))


def model_from_object(obj: Any, *, source: str = "<memory>") -> PopularityNet:
    if isinstance(obj, Mapping) and "iipa_checkpoint" in obj:
        return _from_iipa(obj, source)
    if isinstance(obj, Mapping) and _looks_like_authors(obj):
        return _from_authors(obj, source)
    keys = list(obj)[:6] if isinstance(obj, Mapping) else type(obj).__name__
    raise WeightsError(
        f"{source}: unrecognised checkpoint; expected an iipa checkpoint or a torchvision "
        f"ResNet-50 state dict with fc = Linear(2048, 1) (found {keys})"
    )


def _from_iipa(obj: Mapping[str, Any], source: str) -> PopularityNet:
    version = obj["iipa_checkpoint"]
    if version > FORMAT_VERSION:
        raise WeightsError(f"{source}: checkpoint format {version} is newer than this iipa ({FORMAT_VERSION}); upgrade iipa")
    info = dict(obj.get("info") or {})
    info.setdefault("source", source)
    model = PopularityNet(obj["arch"], profile=obj["profile"], reference=obj.get("reference"), info=info)
    _load_state(model, obj["state_dict"], source)
    return model


def _strip_module(state: Mapping[str, Any]) -> dict[str, Any]:
    return {k.removeprefix("module."): v for k, v in state.items()}


def _looks_like_authors(obj: Mapping[str, Any]) -> bool:
    state = _strip_module(obj)
    fc = state.get("fc.weight")
    return "conv1.weight" in state and isinstance(fc, torch.Tensor) and tuple(fc.shape) == (1, 2048)


def _from_authors(obj: Mapping[str, Any], source: str) -> PopularityNet:
    info = {"source": source, "format": "authors (plain torchvision ResNet-50 state dict)"}
    model = PopularityNet("resnet50", profile="authors", reference=dict(AUTHORS_REFERENCE), info=info)
    _load_state(model, _strip_module(obj), source)
    return model


def _load_state(model: PopularityNet, state: Mapping[str, Any], source: str) -> None:
    try:
        model.net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise WeightsError(f"{source}: weights do not fit architecture {model.arch}: {' '.join(first)}") from None
    model.eval()

