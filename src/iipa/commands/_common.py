"""Argument groups shared by several commands."""

from __future__ import annotations

import argparse
import sys

from iipa.images import DEFAULT_MAX_PIXELS
from iipa.weights import DEFAULT_MODEL


def add_model_arguments(parser: argparse.ArgumentParser, *, default: str | None = DEFAULT_MODEL) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--model", "-m", default=default,
                   help=f"checkpoint path or named weights (default: {default or 'none'}; see `iipa models`)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (default: auto)")
    g.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto: bf16 autocast where the CPU/GPU supports it, else fp32")


def add_loader_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("loading")
    g.add_argument("--batch-size", type=int, default=32, help="images per model call (default: 32)")
    g.add_argument("--workers", type=int, default=None, help="decoding processes (default: half the CPUs, 1-4)")
    g.add_argument("--exact-decode", action="store_true",
                   help="decode JPEGs at full size (default: DCT draft scaling, several times faster)")
    g.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help=f"refuse larger images as decompression bombs (default: {DEFAULT_MAX_PIXELS})")


def progress_bar(total: int, *, enabled: bool | None, desc: str):
    """A tqdm bar on stderr when it is a TTY (or when forced)."""
    from tqdm import tqdm

    show = sys.stderr.isatty() if enabled is None else enabled
    return tqdm(total=total, desc=desc, unit="img", disable=not show, file=sys.stderr, dynamic_ncols=True)
