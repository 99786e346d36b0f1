"""The documented public path of named weights (the code lives in :mod:`iipa.model.weights`)."""

from __future__ import annotations

from iipa.model.weights import (
    NamedWeights,
    get_weights,
    list_weights,
    register_weights,
    resolve_weights,
    weights_path,
)

__all__ = ["NamedWeights", "get_weights", "list_weights", "register_weights", "resolve_weights", "weights_path"]
