"""Argument groups shared by several commands."""

from __future__ import annotations

import argparse

from iipa.images import DEFAULT_MAX_PIXELS
from iipa.profiles import CROPS
from iipa.weights import DEFAULT_MODEL


def add_model_arguments(parser: argparse.ArgumentParser, *, default: str | None = DEFAULT_MODEL) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--model", "-m", default=default,
                   help=f"checkpoint path or named weights (default: {default or 'none'}; see `iipa models`)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (default: auto)")
    g.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto: fp32 (bf16 moved EfficientNet scores by up to 8 points of 100; "
                        "pass bf16 for speed where that is acceptable); default: auto")


def add_loader_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("loading")
    g.add_argument("--batch-size", type=int, default=32, help="images per model call (default: 32)")
    g.add_argument("--workers", type=int, default=None, help="decoding threads (default: one per CPU)")
    g.add_argument("--crops", type=int, default=1, choices=CROPS,
                   help="1: the profile's centre crop; 5: corners + centre; 10: the same + mirror images "
                        "(an image's score is the mean over its views; default 1)")
    g.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help=f"refuse larger images as decompression bombs (default: {DEFAULT_MAX_PIXELS})")


def progress_bar(total: int, *, enabled: bool | None, desc: str):
    """A tqdm bar on stderr when it is a TTY (or when forced); see :func:`iipa.runtime.progress_bar`."""
    from iipa.runtime import progress_bar as bar

    return bar(total, enabled=enabled, desc=desc)
