"""Checkpoints: weights + architecture + preprocessing + reference scores + how they were made.

Our format is a plain dict (loads with ``torch.load(weights_only=True)``)::

    {"iipa_checkpoint": 1, "arch": str, "profile": {...}, "reference": {...} | None,
     "info": {"config": {...}, "metrics": {...}, ...}, "state_dict": {...}}

``state_dict`` holds the backbone's own keys (``PopularityNet.net``), so a ResNet-50
checkpoint has the same tensors, under the same names, as the authors' release. The
authors' plain state dict (torchvision ResNet-50, fc = Linear(2048, 1)) loads too, as the
registered ``authors-resnet50`` weights say: the ``authors`` profile and the paper's
reference distribution (Fig. 5).
Which file holds which kind of weights is decided by :mod:`iipa.model.record`; this module only
reads and writes the files and builds a model from tensors.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from iipa import __version__
from iipa.backbones.popularity_net import PopularityNet
from iipa.errors import WeightsError
from iipa.fileio import atomic_open, plain
from iipa.model.cardschema import check_card_facts

FORMAT_VERSION = 1


def checkpoint_dict(model: PopularityNet) -> dict[str, Any]:
    check_card_facts(model.info, "checkpoint info")  # a card that breaks the schema is never written
    return {
        "iipa_checkpoint": FORMAT_VERSION,
        "iipa_version": __version__,
        "arch": model.arch,
        "profile": model.profile.to_dict(),
        "reference": dict(model.reference) if model.reference else None,
        "info": plain(model.info),
        "state_dict": {k: v.detach().cpu() for k, v in model.net.state_dict().items()},
    }


def save_checkpoint(model: PopularityNet, path: str | os.PathLike) -> Path:
    """Write ``model`` atomically (temp file + rename)."""
    payload = checkpoint_dict(model)
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


def is_iipa(obj: Any) -> bool:
    return isinstance(obj, Mapping) and "iipa_checkpoint" in obj


def check_version(obj: Mapping[str, Any], source: str) -> None:
    version = obj["iipa_checkpoint"]
    if version > FORMAT_VERSION:
        raise WeightsError(f"{source}: checkpoint format {version} is newer than this iipa ({FORMAT_VERSION}); upgrade iipa")


def plain_state(obj: Any, source: str) -> dict[str, Any]:
    """The tensors of a plain state dict (or of our checkpoint), without DataParallel's ``module.``."""
    if is_iipa(obj):
        return dict(obj["state_dict"])
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{source}: expected a state dict, found {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def looks_like_authors(obj: Any) -> bool:
    """A torchvision ResNet-50 state dict with fc = Linear(2048, 1): the authors' release format."""
    if not isinstance(obj, Mapping) or is_iipa(obj):
        return False
    state = plain_state(obj, "")
    fc = state.get("fc.weight")
    return "conv1.weight" in state and isinstance(fc, torch.Tensor) and tuple(fc.shape) == (1, 2048)


def build_model(arch: str, profile: Any, reference: Mapping[str, Any] | None, info: Mapping[str, Any],
                state: Mapping[str, Any], source: str) -> PopularityNet:
    """A PopularityNet of ``arch`` filled with ``state`` (strict: every key and shape must fit)."""
    model = PopularityNet(arch, profile=profile, reference=dict(reference) if reference else None, info=dict(info))
    try:
        model.net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise WeightsError(f"{source}: weights do not fit architecture {arch}: {' '.join(first)}") from None
    return model.eval()
