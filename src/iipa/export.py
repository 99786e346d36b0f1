"""The documented public path of :func:`export_onnx` (the code lives in :mod:`iipa.model.export`)."""

from __future__ import annotations

from iipa.model.export import export_onnx

__all__ = ["export_onnx"]
