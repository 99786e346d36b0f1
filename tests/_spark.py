"""The Spark tests' common guard: Java and pyspark, or a skip (a failure under CI=true)."""

from __future__ import annotations

import os

import pytest


def require_spark(module: str):
    """``module`` imported, when Java and pyspark are here; else skip (fail under CI=true)."""
    import importlib
    import shutil

    if shutil.which("java") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("java is missing: the Spark engine cannot be tested (CI=true)")
        pytest.skip("java is not installed")
    try:
        return importlib.import_module(module)
    except ImportError:  # pragma: no cover - pyspark is part of the dev environment
        if os.environ.get("CI") == "true":
            pytest.fail("pyspark is missing (CI=true)")
        pytest.skip("pyspark is not installed")
