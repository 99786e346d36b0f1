"""iipa: intrinsic image popularity assessment (Ding, Ma & Wang, ACM MM 2019).

The public API is imported lazily, so ``import iipa.simulate`` or ``iipa --help`` does not
pay for torch (~0.8 GB RSS and seconds of start-up) unless a model is actually used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "IIPAError": "iipa.errors", "ImageError": "iipa.errors", "WeightsError": "iipa.errors",
    "PopularityNet": "iipa.models", "get_backbone": "iipa.models", "list_backbones": "iipa.models",
    "register_backbone": "iipa.models",
    "Profile": "iipa.profiles", "get_profile": "iipa.profiles", "list_profiles": "iipa.profiles",
    "load_checkpoint": "iipa.checkpoint", "save_checkpoint": "iipa.checkpoint",
    "list_weights": "iipa.weights", "load_model": "iipa.weights", "register_weights": "iipa.weights",
    "Scorer": "iipa.scoring", "ScoreResult": "iipa.scoring",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'iipa' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
