"""The documented public path of :func:`export_int8` (the code lives in :mod:`iipa.model.quantize`)."""

from __future__ import annotations

from iipa.model.quantize import export_int8

__all__ = ["export_int8"]
